"""Union semantics, proven: random layer stacks flattened by Rust and by the pure twin give the tree of a plain
dict model of the union; the merged index agrees with it; and, as root, the kernel's overlayfs stacking the
overlay-form layers shows the same tree."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import imgcore
import imgcore.pure
from tests.reshape_helpers import overlay_view
from tests.strategies import Layer, Node, layer_stacks, model_tree, tree_snapshot

ROOT = os.geteuid() == 0


@contextmanager
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="imgcore-union-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write_blobs(d: Path, layers: list[Layer], compressions: list[str]) -> list[Path]:
    paths = []
    for i, (layer, comp) in enumerate(zip(layers, compressions, strict=False)):
        p = d / f"layer{i}.blob"
        p.write_bytes(layer.blob(comp))
        paths.append(p)
    return paths


compressions = st.lists(st.sampled_from(["none", "gzip", "zstd"]), min_size=4, max_size=4)


@given(stack=layer_stacks(), comps=compressions)
def test_flatten_rust_twin_and_model_agree(stack: tuple[list[Layer], dict[str, Node]], comps: list[str]) -> None:
    layers, model = stack
    want = model_tree(model, owners=ROOT)
    with workdir() as d:
        blobs = write_blobs(d, layers, comps)
        trees = {}
        for name, unpack in (("rust", imgcore.unpack_layers), ("pure", imgcore.pure.unpack_layers)):
            dest = d / name
            dest.mkdir()
            stats = unpack(blobs, dest)
            assert len(stats) == len(layers)
            trees[name] = tree_snapshot(dest, owners=ROOT)
        assert trees["rust"] == want
        assert trees["pure"] == want


@given(stack=layer_stacks(), comps=compressions)
def test_layer_by_layer_equals_unpack(stack: tuple[list[Layer], dict[str, Node]], comps: list[str]) -> None:
    layers, model = stack
    with workdir() as d:
        blobs = write_blobs(d, layers, comps)
        dest = d / "one"
        dest.mkdir()
        stats = [imgcore.extract_layer(b, dest) for b in blobs]
        assert tree_snapshot(dest, owners=ROOT) == model_tree(model, owners=ROOT)
        twin = [imgcore.pure.extract_layer(b, d / "twin") for b in blobs if (d / "twin").mkdir(exist_ok=True) is None]
        for a, b in zip(stats, twin, strict=True):
            assert (a.digest, a.diff_id, a.compression, a.entries, a.files, a.dirs, a.symlinks) == (
                b.digest, b.diff_id, b.compression, b.entries, b.files, b.dirs, b.symlinks,
            )  # fmt: skip
            assert (a.hardlinks, a.whiteouts, a.bytes, a.compressed_bytes) == (
                b.hardlinks, b.whiteouts, b.bytes, b.compressed_bytes,
            )  # fmt: skip


@given(stack=layer_stacks(), comps=compressions)
def test_index_matches_model(stack: tuple[list[Layer], dict[str, Node]], comps: list[str]) -> None:
    layers, model = stack
    with workdir() as d:
        blobs = write_blobs(d, layers, comps)
        rows = imgcore.layer_index(blobs)
        assert rows == imgcore.pure.layer_index(blobs)
    got = {r[0]: r for r in rows}
    assert sorted(got) == sorted(model)
    for path, node in model.items():
        _, kind, mode, uid, gid, size, mtime, link, _layer = got[path]
        assert kind == node.kind or (kind == "hardlink" and node.kind == "file")
        assert (mode, uid, gid, mtime) == (node.mode, node.uid, node.gid, node.mtime)
        if node.kind == "file":
            assert size == len(node.data)
        if node.kind == "symlink":
            assert link == node.link


@pytest.mark.root
@given(stack=layer_stacks(), comps=compressions)
def test_kernel_overlayfs_agrees(stack: tuple[list[Layer], dict[str, Node]], comps: list[str]) -> None:
    layers, model = stack
    with workdir() as d:
        blobs = write_blobs(d, layers, comps)
        with overlay_view(d, blobs) as merged:
            got = tree_snapshot(merged, nlink=False)
    assert got == model_tree(model, nlink=False)
