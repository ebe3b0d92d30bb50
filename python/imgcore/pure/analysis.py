"""Pure-Python twin of ``imgcore._core.layer_tables``: the per-layer file tables, built with tarfile and hashlib.

Same columns, dtypes, row order, string table and errors as the Rust core (``rust/core/src/archive/table.rs``):
one row per tar entry in archive order, paths cleaned as extraction cleans them and interned in a NUL-joined
string table, whiteouts naming the path they remove and opaque markers the directory they empty. It reads the
stream through the layer twin's own tar walk (:mod:`imgcore.pure.archive`), so both agree on every header
format. It is the oracle of ``tests/property/test_analysis_tables.py`` and the benchmark's baseline.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from imgcore.errors import DigestMismatch, InvalidArchive, UnsafeArchiveEntry
from imgcore.pure.archive import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, StrPath, _clean, _entries, _name, _Stream

__all__ = ["layer_tables"]

_KINDS = {"file": 0, "dir": 1, "symlink": 2, "hardlink": 3, "char": 4, "block": 5, "fifo": 6}
_WHITEOUT, _OPAQUE, _OTHER = 7, 8, 9
_XATTR_BITS = {
    b"security.capability": 2,
    b"system.posix_acl_access": 4,
    b"system.posix_acl_default": 4,
    b"security.selinux": 8,
}
_CHUNK = 256 * 1024
_U32 = 0xFFFFFFFF


def _xattr_columns(xattrs: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    if not xattrs:
        return 0, 0
    bits = 1
    h = hashlib.sha256()
    for k, v in sorted(xattrs):
        bits |= _XATTR_BITS.get(k, 16)
        h.update(len(k).to_bytes(8, "little") + k + len(v).to_bytes(8, "little") + v)
    return bits, int.from_bytes(h.digest()[:8], "little")


class _Table:
    def __init__(self, ctx: str) -> None:
        self.ctx = ctx
        self.interned: dict[bytes, int] = {}
        self.strings: list[bytes] = []
        self.cols: dict[str, list[Any]] = {
            k: [] for k in ("path", "kind", "size", "mode", "uid", "gid", "mtime", "link", "xattrs", "xattr_hash")
        }
        self.sha: list[bytes] = []

    def intern(self, s: bytes, entry: bytes) -> int:
        i = self.interned.get(s)
        if i is not None:
            return i
        if b"\0" in s:
            raise InvalidArchive(f"{self.ctx}: entry {_name(entry)!r}: a path or link name contains a NUL byte")
        i = len(self.strings)
        self.strings.append(s)
        self.interned[s] = i
        return i

    def push(self, path: int, kind: int, m: Any, size: int, sha: bytes, link: int) -> None:
        bits, xh = _xattr_columns(m.xattrs)
        for k, v in (
            ("path", path), ("kind", kind), ("size", size), ("mode", m.mode), ("uid", min(m.uid, _U32)),
            ("gid", min(m.gid, _U32)), ("mtime", m.mtime), ("link", link), ("xattrs", bits), ("xattr_hash", xh),
        ):  # fmt: skip
            self.cols[k].append(v)
        self.sha.append(sha)

    def arrays(self) -> dict[str, Any]:
        c = self.cols
        offsets, pos = [], 0
        for s in self.strings:
            offsets.append(pos)
            pos += len(s) + 1
        return {
            "path": np.array(c["path"], dtype=np.uint32),
            "kind": np.array(c["kind"], dtype=np.uint8),
            "size": np.array(c["size"], dtype=np.uint64),
            "mode": np.array(c["mode"], dtype=np.uint32),
            "uid": np.array(c["uid"], dtype=np.uint32),
            "gid": np.array(c["gid"], dtype=np.uint32),
            "mtime": np.array(c["mtime"], dtype=np.int64),
            "sha256": np.frombuffer(b"".join(self.sha), dtype=np.uint8).copy(),
            "link": np.array(c["link"], dtype=np.int32),
            "xattrs": np.array(c["xattrs"], dtype=np.uint8),
            "xattr_hash": np.array(c["xattr_hash"], dtype=np.uint64),
            "strings": np.frombuffer(b"".join(s + b"\0" for s in self.strings), dtype=np.uint8).copy(),
            "offsets": np.array(offsets, dtype=np.uint64),
        }


def _unsafe(ctx: str, path: bytes, reason: str) -> UnsafeArchiveEntry:
    return UnsafeArchiveEntry(f"{ctx}: entry {_name(path)!r} {reason}", entry=_name(path))


def _one(src: StrPath, expected: str | None, max_bytes: int, max_entries: int) -> dict[str, Any]:
    ctx = f"analyze layer {os.fspath(src)}"
    t = _Table(ctx)
    zero = bytes(32)
    stream = _Stream(src, max_bytes, ctx)
    try:
        for m, data in _entries(stream, max_entries):
            comps = _clean(m.path)
            if comps is None:
                raise _unsafe(ctx, m.path, 'escapes the root ("..")')
            if not comps:
                if m.kind == "dir":
                    continue
                raise _unsafe(ctx, m.path, "names the root directory itself")
            name, parent = comps[-1], comps[:-1]
            if name.startswith(b".wh."):
                if name == b".wh..wh..opq":
                    t.push(t.intern(b"/".join(parent), m.path), _OPAQUE, m, 0, zero, -1)
                elif not name.startswith(b".wh..wh."):
                    target = name[4:]
                    if target in (b"", b".", b".."):
                        raise _unsafe(ctx, m.path, "whiteout names no entry of its directory")
                    t.push(t.intern(b"/".join([*parent, target]), m.path), _WHITEOUT, m, 0, zero, -1)
                continue
            p = t.intern(b"/".join(comps), m.path)
            kind = _KINDS.get(m.kind, _OTHER)
            link = -1
            if kind == 2:
                link = t.intern(m.link, m.path)
            elif kind == 3:
                tc = _clean(m.link)
                if tc is None:
                    raise _unsafe(ctx, m.path, "hardlink target escapes the root")
                link = t.intern(b"/".join(tc), m.path)
            sha, size = zero, 0
            if kind == 0:
                size = m.size
                h = hashlib.sha256()
                got = 0
                if data is not None:
                    while chunk := data.read(_CHUNK):
                        h.update(chunk)
                        got += len(chunk)
                if got != size:
                    raise InvalidArchive(f"{ctx}: entry {_name(m.path)!r}: truncated: entry data ends early")
                sha = h.digest()
            t.push(p, kind, m, size, sha, link)
        while stream.raw.read(1 << 20):
            pass
    finally:
        stream.close()
    digest = stream.raw.digest()
    if expected is not None and digest != expected:
        raise DigestMismatch(
            f"{ctx}: digest mismatch: expected {expected}, got {digest}", expected=expected, actual=digest
        )
    out = t.arrays()
    out.update(
        digest=digest,
        diff_id=stream.decoded.digest() if stream.compression != "none" else digest,
        compression=stream.compression,
        compressed_bytes=stream.raw.n,
        bytes=stream.decoded.n,
    )
    return out


def layer_tables(
    layers: Sequence[tuple[StrPath, str | None]],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> list[dict[str, Any]]:
    """Twin of ``imgcore._core.layer_tables`` (one layer after another: the twin favours clarity)."""
    return [_one(src, expected, max_bytes, max_entries) for src, expected in layers]
