"""pull --unpack: layers land where containers look for them, matching what umoci unpacks."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

import imgcore
from imgcore._progress import PlainProgress
from imgcore.containers.manager import Containers
from imgcore.image.catalog import resolve as resolve_image
from imgcore.image.model import chain_ids
from imgcore.store import ContentStore
from imgcore.transfer import pull as pulling

from .conftest import OciImage, require_tool, run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(imgcore, "extract_layer"), reason="this build has no layer engine (issue 3)"),
]


def test_pull_unpack_copy_driver_matches_umoci(
    pushed_image: tuple[OciImage, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, ref = pushed_image
    monkeypatch.setenv("IMGCORE_DRIVER", "copy")
    store = ContentStore(tmp_path / "store")
    out = io.StringIO()
    pulling.pull(ref, store=store, unpack=True, progress=PlainProgress(out))
    lid = image.layer_digests[1].split(":")[1][:12]
    seq = [line.split(": ", 1)[1] for line in out.getvalue().splitlines() if line.startswith(lid + ":")]
    assert seq[-2:] == ["Extracting", "Pull complete"]
    rootfs = list((store.root / "imgcore" / "rootfs").glob("*/rootfs"))
    assert len(rootfs) == 1
    umoci = require_tool("umoci")
    run(umoci, "unpack", "--rootless", "--image", f"{image.layout}:{image.tag}", tmp_path / "b")
    diff = subprocess.run(["diff", "-r", "--no-dereference", rootfs[0], tmp_path / "b/rootfs"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_pull_unpack_overlay_layers_are_reused_by_containers(
    pushed_image: tuple[OciImage, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ref = pushed_image
    monkeypatch.setenv("IMGCORE_DRIVER", "overlay")
    store = ContentStore(tmp_path / "store")
    pulling.pull(ref, store=store, unpack=True)
    containers = Containers(store)
    img = resolve_image(store, ref)
    chains = chain_ids(img.config.diff_ids)
    for chain, diff_id in zip(chains, img.config.diff_ids, strict=True):
        info = json.loads((containers.layers.layer_dir(chain) / "info.json").read_text())
        assert info["diff_id"] == diff_id
    assert (containers.layers.layer_dir(chains[0]) / "diff" / "bin" / "blob").is_file()
    assert (containers.layers.layer_dir(chains[1]) / "diff" / "app" / "main.txt").is_file()
    # ensure_layers finds them all done: it returns the same directories without extracting again.
    mtimes = [(containers.layers.layer_dir(c) / "info.json").stat().st_mtime_ns for c in chains]
    dirs = containers.layers.ensure_layers(img).dirs
    assert dirs == [containers.layers.layer_dir(c) / "diff" for c in chains]
    assert mtimes == [(containers.layers.layer_dir(c) / "info.json").stat().st_mtime_ns for c in chains]
