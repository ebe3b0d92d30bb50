"""Interop: layers written by ``imgcore.write_layer`` (multi-member gzip larger than one 1 MiB slice, plain tar,
whiteouts, opaque markers, hardlinks, PAX long names and xattrs) are unpacked by umoci into the same tree."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import imgcore
from tests.conftest import require_tool
from tests.diff_support import snapshot

pytestmark = pytest.mark.integration


def _put(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest, len(data)


def _add_layer(layout: Path, tag: str, blob: Path, result: imgcore.LayerResult) -> None:
    """Appends a layer to the image ``tag`` of an OCI layout (new config, manifest and index entry)."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / desc["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    shutil.copyfile(blob, blobs / result.digest.split(":")[1])
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    config["rootfs"]["diff_ids"] = [*(config["rootfs"].get("diff_ids") or []), result.diff_id]
    cdigest, csize = _put(layout, json.dumps(config).encode())
    manifest["config"] = {**manifest["config"], "digest": cdigest, "size": csize}
    manifest["layers"] = [
        *(manifest.get("layers") or []),
        {"mediaType": result.media_type, "digest": result.digest, "size": result.size},
    ]
    mdigest, msize = _put(layout, json.dumps(manifest).encode())
    desc.update(digest=mdigest, size=msize)
    (layout / "index.json").write_text(json.dumps(index))


@pytest.mark.skipif(os.geteuid() != 0, reason="owners and the overlay mount need root")
@pytest.mark.parametrize("compression", ["gzip", "none"])  # umoci 0.4.7 (Debian) has no zstd layers
def test_umoci_unpacks_our_layers(tmp_path: Path, compression: str) -> None:
    umoci = require_tool("umoci")
    # Layer 1: a tree of ~6 MiB from nothing (several gzip members), with hardlinks, symlinks, long names, xattrs.
    v1, empty = tmp_path / "v1", tmp_path / "empty"
    empty.mkdir()
    (v1 / "usr" / "lib" / ("long-" * 30)).mkdir(parents=True)
    (v1 / "etc" / "conf.d").mkdir(parents=True)
    for i in range(60):
        (v1 / "usr" / "lib" / f"lib{i}.so").write_bytes(hashlib.sha256(str(i).encode()).digest() * 3000)
    (v1 / "usr" / "lib" / ("long-" * 30) / ("name-" * 25)).write_text("pax path")
    os.link(v1 / "usr" / "lib" / "lib1.so", v1 / "usr" / "lib" / "lib1-link.so")
    (v1 / "usr" / "lib" / "lib2-alias.so").symlink_to("lib2.so")
    (v1 / "etc" / "conf.d" / "a.conf").write_text("a")
    (v1 / "etc" / "conf.d" / "b.conf").write_text("b")
    (v1 / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.setxattr(v1 / "etc" / "passwd", "user.origin", b"imgcore")
    os.chown(v1 / "etc" / "passwd", 1000, 1001)
    r1 = imgcore.write_layer(empty, v1, tmp_path / "l1", compression=compression)
    assert r1.uncompressed_size > 3 << 20  # more than one compression slice
    # Layer 2 (overlay mode): deletions, a replaced (opaque) directory, a chmod, an addition.
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={v1},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        (merged / "usr" / "lib" / "lib5.so").unlink()
        shutil.rmtree(merged / "etc" / "conf.d")
        (merged / "etc" / "conf.d").mkdir()
        (merged / "etc" / "conf.d" / "c.conf").write_text("c")
        (merged / "usr" / "lib" / "lib7.so").chmod(0o700)
        (merged / "new.txt").write_text("new")
        expected = snapshot(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    r2 = imgcore.write_layer(v1, upper, tmp_path / "l2", overlay=True, compression=compression)
    assert r2.whiteouts == 2  # usr/lib/.wh.lib5.so and etc/conf.d/.wh..wh..opq

    layout = tmp_path / "oci"
    subprocess.run([umoci, "init", "--layout", str(layout)], check=True)
    subprocess.run([umoci, "new", "--image", f"{layout}:t"], check=True)
    _add_layer(layout, "t", tmp_path / "l1", r1)
    _add_layer(layout, "t", tmp_path / "l2", r2)
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True)
    assert snapshot(bundle / "rootfs") == expected
