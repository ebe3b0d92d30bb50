"""flatten and squash, proven on random layer stacks (tests/strategies.py): the flattened layer applied onto an
empty root is the union model of the stack, the tree the kernel's overlayfs mounts from the stack, and the tree
``umoci unpack`` makes of the original image; the squashed layer applied onto the kept base layers is the same
tree. Layers keep whole-second mtimes (docker's rule), so trees are compared to the second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgcore.reshape.squash import flatten, squash
from imgcore.store import ContentStore
from tests.conftest import LONG, require_tool
from tests.reshape_helpers import applied, image_of_blobs, overlay_view, seconds, snap, xattrs
from tests.strategies import Layer, Node, layer_stacks, model_tree
from tests.validate import assert_valid_image

ROOT = os.geteuid() == 0
compressions = st.sampled_from(["none", "gzip", "zstd"])
EXAMPLES = settings(max_examples=300 if LONG else 25)


@contextmanager
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="imgcore-reshape-"))
    try:
        yield d
    finally:
        for m in d.rglob("merged"):
            subprocess.run(["umount", str(m)], capture_output=True, check=False)
        shutil.rmtree(d, ignore_errors=True)


def _image(d: Path, layers: list[Layer], comp: str) -> tuple[ContentStore, object, list[Path]]:
    store = ContentStore(d / "store")
    img = image_of_blobs(store, "stack:1", [layer.blob(comp) for layer in layers])
    return store, img, [store.blob_path(x.digest) for x in img.manifest.layers]


@EXAMPLES
@given(stack=layer_stacks(), comp=compressions, data=st.data())
def test_flatten_and_squash_give_the_union(stack: tuple[list[Layer], dict[str, Node]], comp: str, data: st.DataObject):
    layers, model = stack
    want = seconds(model_tree(model, owners=ROOT))
    with workdir() as d:
        store, img, _ = _image(d, layers, comp)
        flat = flatten(store, img, "flat:1")
        assert_valid_image(store, "flat:1")
        assert len(flat.manifest.layers) == 1
        flat_tree = applied(store, flat, d / "flat")
        assert snap(flat_tree) == want
        # xattrs come through (the strategy writes user.imgcore on some files)
        unpacked = applied(store, img, d / "stack")
        assert xattrs(flat_tree) == xattrs(unpacked)
        last = data.draw(st.integers(1, len(layers)), label="last")
        sq = squash(store, img, "sq:1", last=last)
        assert_valid_image(store, "sq:1")
        assert sq.diff_ids[: len(layers) - last] == img.diff_ids[: len(layers) - last]
        assert snap(applied(store, sq, d / "sq")) == want


@pytest.mark.root
@EXAMPLES
@given(stack=layer_stacks(), comp=compressions)
def test_flatten_equals_kernel_overlayfs(stack: tuple[list[Layer], dict[str, Node]], comp: str) -> None:
    layers, _ = stack
    with workdir() as d:
        store, img, blobs = _image(d, layers, comp)
        flat = flatten(store, img)
        got = snap(applied(store, flat, d / "flat"), nlink=False)
        with overlay_view(d, blobs) as merged:
            kernel = snap(merged, nlink=False)
    assert got == kernel


@pytest.mark.integration
@EXAMPLES
@given(stack=layer_stacks(), comp=st.sampled_from(["none", "gzip"]))  # Debian's umoci 0.4.7 reads no zstd layer
def test_flatten_equals_umoci_unpack(stack: tuple[list[Layer], dict[str, Node]], comp: str) -> None:
    umoci = require_tool("umoci")
    layers, _ = stack
    with workdir() as d:
        store, img, _ = _image(d, layers, comp)
        flat = flatten(store, img)
        got = snap(applied(store, flat, d / "flat"))
        bundle = d / "bundle"
        rootless = [] if ROOT else ["--rootless"]
        subprocess.run(
            [umoci, "unpack", *rootless, "--image", f"{store.root}:docker.io/library/stack:1", str(bundle)],
            check=True,
            capture_output=True,
        )
        theirs = snap(bundle / "rootfs")
    assert got == theirs
