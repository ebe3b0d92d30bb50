"""Per-layer file tables (numpy columns) and their cache in the store (``imgcore/analysis/<algo>-<hex>.npz``).

A :class:`LayerTable` is what ``_core.layer_tables`` read from one layer blob: one row per tar entry in archive
order (kind, size, mode, uid, gid, mtime, content sha256, link, xattr bits), paths as indexes into the layer's
own string table. The Rust arrays are used as they arrive (no copy); the change each row makes against the
layers below is decided later, by :mod:`imgcore.analysis.figures`.

Invariants:
- a table is cached only after the blob it was read from hashed to the layer's digest (the reader checks it),
  under that digest, written atomically; the digest names the content, so a cached table never goes stale;
- the cache is a store file and so outside data: it is loaded without pickles, every column's dtype and length,
  every index and offset is checked, and a file that fails any check is read again from the blob (and
  rewritten), never trusted;
- memory is the table's: about 80 bytes per row plus the path bytes (110 bytes a row on a million-file image),
  never the layer's bytes; a cache file is written straight to a temporary file beside it (never built in
  memory first) and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from imgcore._core import Digest, layer_tables
from imgcore.errors import BlobNotFound
from imgcore.store import ContentStore

__all__ = [
    "ADDED",
    "DELETED",
    "KIND_NAMES",
    "METADATA",
    "MODIFIED",
    "OPAQUE",
    "SAME",
    "LayerTable",
    "cache_path",
    "load_tables",
]

KIND_NAMES = ("file", "dir", "symlink", "hardlink", "char", "block", "fifo", "whiteout", "opaque", "other")
"""Row kinds (the ``kind`` column) by number, as ``rust/core/src/archive/table.rs`` numbers them."""
FILE, DIR, SYMLINK, HARDLINK, WHITEOUT, OPAQUE_KIND = 0, 1, 2, 3, 7, 8

ADDED = 1
"""Change kind (``Merge.changes``): the path did not exist below."""
MODIFIED = 2
"""Change kind: new content (or another kind of entry) over the copy below."""
DELETED = 3
"""Change kind: a whiteout."""
OPAQUE = 4
"""Change kind: an opaque directory marker."""
METADATA = 5
"""Change kind: the same content as the copy below with other metadata (chmod, chown, touch, xattrs)."""
SAME = 6
"""Change kind: an identical copy of the one below (a directory's mtime is not compared)."""

_COLUMNS: dict[str, Any] = {
    "path": np.uint32,
    "kind": np.uint8,
    "size": np.uint64,
    "mode": np.uint32,
    "uid": np.uint32,
    "gid": np.uint32,
    "mtime": np.int64,
    "link": np.int32,
    "xattrs": np.uint8,
    "xattr_hash": np.uint64,
}
_META = ("digest", "diff_id", "compression", "compressed_bytes", "bytes")
_FORMAT = 1
#: Largest cache file read (a table of 4M rows with long paths stays far below).
_MAX_CACHE = 2 << 30

Reader = Callable[..., list[dict[str, Any]]]
"""``_core.layer_tables`` or its pure twin: ``[(blob path, expected digest)] -> [columns]``."""


@dataclass(frozen=True, eq=False)
class LayerTable:
    """The file table of one layer blob (columns of equal length; ``sha256`` has shape ``(rows, 32)``)."""

    digest: str
    diff_id: str
    compression: str
    compressed_bytes: int
    uncompressed_bytes: int  # the tar stream's size (``bytes`` in the reader's dict)
    path: npt.NDArray[np.uint32]
    kind: npt.NDArray[np.uint8]
    size: npt.NDArray[np.uint64]
    mode: npt.NDArray[np.uint32]
    uid: npt.NDArray[np.uint32]
    gid: npt.NDArray[np.uint32]
    mtime: npt.NDArray[np.int64]
    sha256: npt.NDArray[np.uint8]
    link: npt.NDArray[np.int32]
    xattrs: npt.NDArray[np.uint8]
    xattr_hash: npt.NDArray[np.uint64]
    strings: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.uint64]

    def __len__(self) -> int:
        return len(self.path)

    @classmethod
    def from_columns(cls, cols: dict[str, Any], where: str) -> LayerTable:
        """Builds a table from ``layer_tables``' dict (or a cache file's arrays), checking every invariant.

        Raises:
            ValueError: a column is missing, has the wrong dtype or length, or an index points outside the table.
        """
        try:
            meta = {k: cols[k] for k in _META}
            arrays = {k: np.asarray(cols[k]) for k in (*_COLUMNS, "sha256", "strings", "offsets")}
        except KeyError as e:
            raise ValueError(f"{where}: missing column {e}") from None
        for k, dt in _COLUMNS.items():
            if arrays[k].dtype != dt or arrays[k].ndim != 1:
                raise ValueError(f"{where}: column {k} has dtype {arrays[k].dtype}, not {np.dtype(dt)}")
        n = len(arrays["path"])
        if any(len(arrays[k]) != n for k in _COLUMNS):
            raise ValueError(f"{where}: columns of unequal length")
        sha = arrays["sha256"]
        if sha.dtype != np.uint8 or sha.size != 32 * n:
            raise ValueError(f"{where}: sha256 column is not 32 bytes per row")
        strings, offsets = arrays["strings"], arrays["offsets"]
        if strings.dtype != np.uint8 or offsets.dtype != np.uint64 or strings.ndim != 1 or offsets.ndim != 1:
            raise ValueError(f"{where}: bad string table")
        m = len(offsets)
        if m:
            if offsets[0] != 0 or np.any(np.diff(offsets.astype(np.int64)) <= 0) or int(offsets[-1]) >= len(strings):
                raise ValueError(f"{where}: string offsets are not increasing inside the table")
            ends = np.flatnonzero(strings == 0)
            if len(ends) != m or not np.array_equal(ends[:-1] + 1, offsets[1:]) or ends[-1] != len(strings) - 1:
                raise ValueError(f"{where}: strings are not NUL-separated at their offsets")
        elif len(strings):
            raise ValueError(f"{where}: string bytes without offsets")
        if n and (int(arrays["path"].max()) >= m):
            raise ValueError(f"{where}: a path index points outside the string table")
        link = arrays["link"]
        if n and (int(link.min()) < -1 or int(link.max()) >= m):
            raise ValueError(f"{where}: a link index points outside the string table")
        if n and int(arrays["kind"].max()) >= len(KIND_NAMES):
            raise ValueError(f"{where}: unknown row kind")
        try:
            Digest(str(meta["digest"]))
            fields = {
                "digest": str(meta["digest"]),
                "diff_id": str(meta["diff_id"]),
                "compression": str(meta["compression"]),
                "compressed_bytes": int(meta["compressed_bytes"]),
                "uncompressed_bytes": int(meta["bytes"]),
            }
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: bad summary: {e}") from None
        values: dict[str, Any] = {**fields, **{k: arrays[k] for k in _COLUMNS}}
        return cls(**values, sha256=sha.reshape(n, 32), strings=strings, offsets=offsets)

    def names(self) -> list[bytes]:
        """The string table, decoded once: ``names()[table.path[i]]`` is row ``i``'s path (no leading slash)."""
        if not len(self.offsets):
            return []
        return self.strings.tobytes().split(b"\0")[:-1]

    def columns(self) -> dict[str, Any]:
        """The table as the reader returned it (for the cache and for comparing readers)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in (*_META[:4], *_COLUMNS, "strings", "offsets")}
        out["bytes"] = self.uncompressed_bytes
        out["sha256"] = self.sha256.reshape(-1)
        return out


def cache_path(store: ContentStore, digest: str) -> Path:
    """Where the table of layer ``digest`` is cached."""
    d = Digest(digest)
    return store.paths.analysis_table(f"{d.algorithm}:{d.hex}")


def _members_fit(f: Any) -> bool:
    """Whether every array of the ``.npz`` in ``f`` is stored uncompressed with no more data declared than
    its member holds (numpy would allocate a hostile header's shape before it finds the data missing)."""
    with zipfile.ZipFile(f) as z:
        for info in z.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return False
            with z.open(info) as m:
                version = np.lib.format.read_magic(m)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(m)
                elif version in ((2, 0), (3, 0)):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(m)
                else:
                    return False
                if dtype.hasobject or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > info.file_size:
                    return False
    f.seek(0)
    return True


def _read_cache(path: Path, digest: str) -> LayerTable | None:
    try:
        if path.stat().st_size > _MAX_CACHE:
            return None
        with path.open("rb") as f:
            if not _members_fit(f):
                return None
            with np.load(f, allow_pickle=False) as z:
                cols: dict[str, Any] = {k: z[k] for k in z.files}
        if int(cols.pop("format")) != _FORMAT:
            return None
        for k in _META:
            cols[k] = cols[k].item() if k in cols and cols[k].ndim == 0 else None
        table = LayerTable.from_columns(cols, str(path))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, AttributeError, MemoryError):
        return None
    return table if table.digest == digest else None


def _write_cache(path: Path, table: LayerTable) -> None:
    """Writes the table's ``.npz`` to a temporary file in the cache directory, then renames it into place
    (readers see the old file or the new one, never a torn one). Not fsynced: a cache file a crash leaves
    short or zeroed fails its zip CRCs or its checks when read, and the table is read again from the blob."""
    cols = table.columns()
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in cols.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, format=np.int64(_FORMAT), **arrays)
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def load_tables(
    store: ContentStore,
    digests: Sequence[str],
    *,
    reader: Reader = layer_tables,
    cache: bool = True,
) -> list[LayerTable]:
    """The tables of the layer blobs ``digests`` (bottom first): from the cache, else read in parallel once.

    Raises:
        imgcore.errors.BlobNotFound: a layer blob is not in the store.
        imgcore.errors.DigestMismatch: a stored blob does not hash to its digest.
        imgcore.errors.InvalidArchive: a layer is not a readable tar (or tar+gzip/zstd).
    """
    found: dict[str, LayerTable] = {}
    if cache:
        for d in dict.fromkeys(digests):
            t = _read_cache(cache_path(store, d), d)
            if t is not None:
                found[d] = t
    missing = [d for d in dict.fromkeys(digests) if d not in found]
    if missing:
        for d in missing:
            if not store.has_blob(d):
                raise BlobNotFound(f"analyze: layer blob {d} is not in the store", digest=d)
        read = reader([(store.blob_path(d), d) for d in missing])
        for d, cols in zip(missing, read, strict=True):
            t = LayerTable.from_columns(cols, f"layer {d}")
            found[d] = t
            if cache:
                _write_cache(cache_path(store, d), t)
    return [found[d] for d in digests]
