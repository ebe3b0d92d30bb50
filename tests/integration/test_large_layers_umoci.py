"""Interop for files of 8 GiB and more: a layer imgcore writes (PAX ``size`` record, as Go, GNU tar and Python
write it) is unpacked by imgcore (sparse on disk) and by umoci to the same size and content."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import imgcore
from tests.conftest import require_tool
from tests.integration.test_diff_umoci import _add_layer
from tests.unit.test_extract_sparse import HUGE, check_huge, make_huge_tree, sha256_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack keeps owners as root only")
def test_umoci_unpacks_our_8gib_layer_like_we_do(tmp_path: Path) -> None:
    umoci = require_tool("umoci")
    base, target = make_huge_tree(tmp_path)
    blob = tmp_path / "layer.gz"  # umoci 0.4.7 (Debian) reads no zstd layers
    result = imgcore.write_layer(base, target, blob, compression="gzip", level=1)
    ours = tmp_path / "ours"
    ours.mkdir()
    [stats] = imgcore.unpack_layers([blob], ours, expected_diff_ids=[result.diff_id])
    assert stats.skipped == []
    check_huge(ours / "huge")
    want = sha256_file(ours / "huge")
    assert want == sha256_file(target / "huge")

    layout = tmp_path / "oci"
    subprocess.run([umoci, "init", "--layout", str(layout)], check=True)
    subprocess.run([umoci, "new", "--image", f"{layout}:t"], check=True)
    _add_layer(layout, "t", blob, result)
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True)
    theirs = bundle / "rootfs" / "huge"
    try:
        assert theirs.stat().st_size == HUGE
        assert sha256_file(theirs) == want
        assert (bundle / "rootfs" / "small").read_text() == "small"
    finally:
        theirs.unlink()  # umoci writes every zero: give the 8 GiB back at once
