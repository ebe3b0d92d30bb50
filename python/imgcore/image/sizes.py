"""Layer and image sizes in docker's terms: a layer's SIZE is its uncompressed tar size; an image's is the sum.

Invariants:
- a size is measured once per blob by the Rust decoder (``_core.inspect_blob``: streaming, bounded memory, the
  format detected from the bytes) and cached under ``imgcore/sizes/``; writers that already know it record it;
- the cache is a hint keyed by blob digest: a missing or unreadable entry is measured again, never trusted blindly
  beyond its own file, and removed with the blob.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from imgcore import _fs
from imgcore._core import Digest, inspect_blob
from imgcore.errors import DigestMismatch
from imgcore.models import DOCKER_LAYER, OCI_LAYER, Descriptor
from imgcore.store import ContentStore

__all__ = ["forget_layer_size", "layer_size", "measure_blob", "record_layer_size"]


# A blob's uncompressed size never changes (the digest names the content), so a process keeps what it read.
_known: dict[str, int] = {}


def _cache(store: ContentStore, digest: str) -> Path:
    return Path(_cache_file(store, digest))


def _cache_file(store: ContentStore, digest: str) -> str:
    # A plain string on the listing's hot path (pathlib costs more than the read).
    d = Digest(digest)
    return f"{store.paths.sizes}/{d.algorithm}-{d.hex}"


def record_layer_size(store: ContentStore, digest: str, size: int) -> None:
    """Remembers a layer blob's uncompressed size (the writer knows it; saves ``images`` a decompression)."""
    path = _cache(store, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    _fs.atomic_write(path, f"{int(size)}\n".encode())
    _known[digest] = int(size)


def forget_layer_size(store: ContentStore, digest: str) -> None:
    """Drops the cached size of a deleted blob."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        _cache(store, digest).unlink()


def measure_blob(store: ContentStore, digest: str) -> tuple[str, str, int]:
    """``(diff_id, compression, uncompressed size)`` of a stored layer blob, decoded once; the size is cached."""
    actual, diff_id, compression, _, size = inspect_blob(store.blob_path(digest))
    if actual != digest:
        raise DigestMismatch(f"layer {digest}: the stored blob hashes to {actual}", expected=digest, actual=actual)
    record_layer_size(store, digest, size)
    return diff_id, compression, size


def layer_size(store: ContentStore, desc: Descriptor) -> int:
    """The layer's uncompressed (tar) size, docker's per-layer SIZE; the blob's size when it is not stored."""
    if desc.media_type in (OCI_LAYER, DOCKER_LAYER):
        return desc.size
    known = _known.get(desc.digest)
    if known is not None:
        return known
    with contextlib.suppress(OSError, ValueError):
        with open(_cache_file(store, desc.digest), "rb") as f:  # noqa: PTH123 (hot in `images`)
            size = int(f.read(32).strip())
        _known[desc.digest] = size
        return size
    if not store.has_blob(desc.digest):
        return desc.size
    return measure_blob(store, desc.digest)[2]
