"""``import``: a root filesystem tarball becomes a one-layer image (``docker import``).

Invariants:
- the tarball is read once into the store's ingest area (bounded by the disk, never by memory), then measured
  by the one decompression path (``_core.inspect_blob``: the format detected from the bytes) and checked to be a
  tar archive by the Rust index before anything is stored;
- gzip and zstd tarballs are stored as they are (the layer digest stays the file's); a plain tar is stored
  gzip-compressed (level 1, no name, mtime 0), so the same tar always gives the same layer digest;
- the image is built by :func:`imgcore.image.builder.append` under a lease: ``SOURCE_DATE_EPOCH`` fixes its
  created time, and a concurrent ``prune`` never sweeps the new blobs.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from imgcore import _fs
from imgcore._core import inspect_blob, layer_index
from imgcore._progress import NullProgress, Progress
from imgcore.errors import InvalidArchive, InvalidReference
from imgcore.image.builder import Addition, append
from imgcore.image.changes import apply_changes
from imgcore.image.model import Image
from imgcore.models import OCI_LAYER_GZIP, OCI_LAYER_ZSTD, Descriptor, Platform
from imgcore.reference import parse
from imgcore.store import ContentStore, Lease

__all__ = ["import_image", "store_layer"]

_CHUNK = 1 << 20


def _spool(store: ContentStore, source: str | os.PathLike[str] | IO[bytes], progress: Progress, label: str) -> Path:
    """A private copy of ``source`` in the store's ingest area (same filesystem as ``blobs/``)."""
    dest = store.temp_path(".import")
    total = Path(source).stat().st_size if isinstance(source, str | os.PathLike) else None
    try:
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(Path(source).open("rb")) if isinstance(source, str | os.PathLike) else source
            out = stack.enter_context(dest.open("xb"))
            done = 0
            while chunk := f.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                progress.layer(label, "Importing", done, total)
    except BaseException:
        dest.unlink(missing_ok=True)  # a full disk (or Ctrl-C) leaves no half-spooled copy behind
        raise
    return dest


def _gzip_file(src: Path, dest: Path) -> None:
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    with src.open("rb") as f, dest.open("xb") as out:
        while chunk := f.read(_CHUNK):
            if z := comp.compress(chunk):
                out.write(z)
        out.write(comp.flush())


def _measure(spooled: Path, where: str, name: str) -> tuple[str, str, str, int]:
    """(digest, diff_id, compression, tar size) of the spooled tarball, or InvalidArchive saying what it is not."""
    with spooled.open("rb") as f:
        head = f.read(6)
    kind = "gzip" if head.startswith(b"\x1f\x8b") else "zstd" if head.startswith(b"\x28\xb5\x2f\xfd") else "tar"
    try:
        digest, diff_id, compression, _, size = inspect_blob(spooled)
    except InvalidArchive as e:
        detail = str(e).replace(str(spooled), name)
        what = "truncated" if "truncated" in detail or "unexpected end" in detail else "corrupt"
        raise InvalidArchive(f"{where}: {what} {kind} stream: {detail}") from None
    if size < 512:
        raise InvalidArchive(f"{where}: not a tar archive ({size} bytes, less than one header)")
    truncated = f"{where}: truncated tar archive ({size} bytes, not a multiple of 512)"
    try:
        layer_index([spooled])
    except InvalidArchive as e:
        detail = str(e).replace(str(spooled), name)
        if size % 512 and "entry #1:" not in detail:
            raise InvalidArchive(f"{truncated}: {detail}") from None
        raise InvalidArchive(f"{where}: not a tar archive: {detail}") from None
    if size % 512:
        raise InvalidArchive(truncated)
    return digest, diff_id, compression, size


def store_layer(
    store: ContentStore,
    lease: Lease,
    source: str | os.PathLike[str] | IO[bytes],
    name: str,
    *,
    progress: Progress | None = None,
    label: str = "-",
) -> tuple[Descriptor, str, int]:
    """Stores a layer tarball (tar, gzip or zstd; a plain tar gzip-compressed) under ``lease``, after checking it
    is a readable tar; returns (descriptor, diff_id, uncompressed size). ``name`` names it in errors."""
    progress = progress if progress is not None else NullProgress()
    where = f"import {name}"
    spooled = _spool(store, source, progress, label)
    gz: Path | None = None
    try:
        digest, diff_id, compression, size = _measure(spooled, where, name)
        if compression in ("gzip", "zstd"):
            lease.hold(digest)
            stored = store.adopt_file(spooled, digest)
            media_type = OCI_LAYER_GZIP if compression == "gzip" else OCI_LAYER_ZSTD
        else:
            gz = store.temp_path(".import.gz")
            _gzip_file(spooled, gz)
            gz_digest = inspect_blob(gz)[0]
            lease.hold(gz_digest)
            stored = store.adopt_file(gz, gz_digest)
            media_type = OCI_LAYER_GZIP
        return Descriptor(media_type, stored.digest, stored.size), diff_id, size
    finally:
        spooled.unlink(missing_ok=True)
        if gz is not None:
            gz.unlink(missing_ok=True)


@_fs.disk_full_is_an_error("import")
def import_image(
    store: ContentStore,
    source: str | os.PathLike[str] | IO[bytes],
    reference: str | None = None,
    *,
    message: str | None = None,
    changes: Iterable[str] = (),
    source_name: str | None = None,
    platform: Platform | None = None,
    progress: Progress | None = None,
) -> Image:
    """``docker import``: ``source`` (a path or a binary stream; tar, gzip or zstd) as a one-layer image.

    The config gets the diff_id, the platform (the host's by default), the ``-c`` changes and a history entry
    whose comment is ``message`` or ``Imported from SOURCE``. Tagged ``reference`` when given, else dangling.
    """
    target = parse(reference) if reference else None
    if target is not None and target.digest is not None:
        raise InvalidReference(f"invalid reference {reference!r}: an import target cannot have a digest")
    name = source_name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "-")
    changes = list(changes)
    apply_changes({}, changes)  # a bad -c is refused before anything is read or stored
    progress = progress if progress is not None else NullProgress()
    label = Path(name).name[:12] or "-"
    with store.lease("import") as lease:
        layer, diff_id, size = store_layer(store, lease, source, name, progress=progress, label=label)
        progress.layer(label, "Imported", size, size)
        comment = message or f"Imported from {name}"
        return append(
            store,
            lease,
            None,
            [Addition(layer, diff_id, size, comment=comment)],
            changes=changes,
            comment=comment,
            platform=platform,
            tag=target,
        )
