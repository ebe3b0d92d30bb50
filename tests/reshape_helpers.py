"""Builders for the reshape tests: images made of arbitrary layer blobs, layers written from real trees, and the
tree a stack of layers gives when applied onto an empty root."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import imgcore
from imgcore.image.builder import Addition, append
from imgcore.image.model import Image
from imgcore.models import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, Descriptor
from imgcore.reference import parse
from imgcore.store import ContentStore
from tests.conftest import can_mount_overlay
from tests.strategies import tree_snapshot

MEDIA = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
EPOCH = 1_700_000_000


def image_of_blobs(store: ContentStore, ref: str | None, blobs: Sequence[bytes], *, base: Image | None = None) -> Image:
    """An image whose layers are exactly ``blobs`` (tar, gzip or zstd), on ``base`` when given, built by the one
    builder with ``created`` fixed at :data:`EPOCH`."""
    with store.lease("test") as lease:
        adds = []
        for i, blob in enumerate(blobs):
            d = store.put_blob(blob)
            lease.hold(d.digest)
            digest, diff_id, comp, _, size = imgcore.inspect_blob(store.blob_path(d.digest))
            adds.append(Addition(Descriptor(MEDIA[comp], digest, d.size), diff_id, size, created_by=f"layer {i}"))
        return append(store, lease, base, adds, tag=parse(ref) if ref else None, source_date_epoch=EPOCH)


def layer_from_trees(store: ContentStore, base: Path, target: Path) -> bytes:
    """The layer ``write_layer`` makes of ``target`` against ``base`` (copy mode), mtimes clamped to EPOCH."""
    out = store.temp_path(".t")
    try:
        imgcore.write_layer(base, target, out, source_date_epoch=EPOCH)
        return out.read_bytes()
    finally:
        out.unlink(missing_ok=True)


def applied(store: ContentStore, image: Image, dest: Path) -> Path:
    """Every layer of ``image`` applied in order onto the empty directory ``dest`` (devices as root)."""
    dest.mkdir(parents=True, exist_ok=True)
    for layer in image.manifest.layers:
        imgcore.extract_layer(store.blob_path(layer.digest), dest, allow_devices=os.geteuid() == 0)
    return dest


def seconds(snapshot: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    """A ``tree_snapshot`` with mtimes cut to whole seconds (layers keep whole seconds, as docker's do)."""
    return {p: (*v[:6], v[6] // 1_000_000_000 if isinstance(v[6], int) else v[6], *v[7:]) for p, v in snapshot.items()}


def xattrs(root: Path) -> dict[str, dict[str, bytes]]:
    """path -> user.* xattrs of everything below ``root`` (symlinks not followed)."""
    out: dict[str, dict[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            names = [n for n in os.listxattr(p, follow_symlinks=False) if n.startswith("user.")]
            if names:
                out[str(p.relative_to(root))] = {n: os.getxattr(p, n, follow_symlinks=False) for n in names}
    return out


def snap(root: Path, *, nlink: bool = True) -> dict[str, tuple[Any, ...]]:
    """``tree_snapshot`` in whole seconds, owners kept when root."""
    return seconds(tree_snapshot(root, nlink=nlink, owners=os.geteuid() == 0))


@contextlib.contextmanager
def overlay_view(d: Path, blobs: Sequence[Path]) -> Iterator[Path]:
    """The kernel's overlayfs view of ``blobs`` (lowest first), each extracted in overlay form under ``d``,
    mounted read-only for the block (skips the test where overlayfs may not be mounted)."""
    reason = can_mount_overlay()
    if reason is not None:
        pytest.skip(reason)
    lowers = []
    for i, blob in enumerate(blobs):
        ld = d / f"l{i}"
        ld.mkdir()
        imgcore.extract_layer(blob, ld, overlay=True, allow_devices=True)
        lowers.append(str(ld))
    if len(lowers) == 1:  # overlay needs two lowers; an empty bottom layer changes nothing
        (d / "empty").mkdir()
        lowers.insert(0, str(d / "empty"))
    merged = d / "merged"
    merged.mkdir()
    # overlayfs lists the uppermost lowerdir first.
    opts = "lowerdir=" + ":".join(reversed(lowers))
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mounting overlayfs is not permitted here: {r.stderr.strip()}")
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)
