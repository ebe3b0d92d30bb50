"""Pure-Python twins of ``imgcore._core.layer_tables`` (the per-layer file tables, built with tarfile and
hashlib), ``imgcore._core.image_pass`` (the union replay and dive's figures over them; path ids in the paths'
text order, dive's inefficient paths as columns) and ``imgcore._core.file_list_json`` (one layer's ``--json``
file list, each entry as ``json.dumps`` writes it).

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
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np

from imgcore.errors import DigestMismatch, InvalidArchive, UnsafeArchiveEntry
from imgcore.pure.archive import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, StrPath, _clean, _entries, _name, _Stream

__all__ = ["file_list_json", "image_pass", "layer_tables"]

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
        diff_id=digest if stream.compression == "none" else "",  # the table does not hash a compressed stream
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


# -- image_pass: the union replay and dive's figures (the rules: rust/core/src/archive/figures.rs) ----------------

_FILE, _DIR, _SYMLINK, _HARDLINK = 0, 1, 2, 3
_ADDED, _MODIFIED, _DELETED, _OPAQUE_CHANGE, _METADATA, _SAME = 1, 2, 3, 4, 5, 6
_WH = b".wh."
_WHWH = b".wh..wh."


@dataclass
class _Cols:
    path: list[int]
    kind: list[int]
    size: list[int]
    mode: list[int]
    uid: list[int]
    gid: list[int]
    mtime: list[int]
    link: list[int]
    xattr_hash: list[int]
    sha: bytes

    @classmethod
    def of(cls, d: dict[str, Any]) -> _Cols:
        def col(k: str) -> list[int]:
            values: list[int] = np.asarray(d[k]).tolist()
            return values

        return cls(col("path"), col("kind"), col("size"), col("mode"), col("uid"), col("gid"), col("mtime"),
                   col("link"), col("xattr_hash"), np.asarray(d["sha256"]).tobytes())  # fmt: skip


def _names(d: dict[str, Any]) -> list[bytes]:
    raw = np.asarray(d["strings"]).tobytes()
    return raw.split(b"\0")[:-1] if raw else []


def _parent(p: bytes) -> bytes:
    return p.rpartition(b"/")[0] if b"/" in p else b""


def _merge(tables: list[_Cols], names: list[list[bytes]]) -> tuple[list[Any], ...]:
    view: dict[bytes, tuple[int, int]] = {}
    children: dict[bytes, set[bytes]] = {}
    changes = [np.zeros(len(t.kind), dtype=np.uint8) for t in tables]
    shadows = [np.full(len(t.kind), -1, dtype=np.int32) for t in tables]
    prev_layer = [np.full(len(t.kind), -1, dtype=np.int32) for t in tables]
    prev_row = [np.zeros(len(t.kind), dtype=np.uint32) for t in tables]
    path_id = [np.zeros(len(t.kind), dtype=np.uint32) for t in tables]
    ids: dict[bytes, int] = {}  # path -> id in order of appearance, renumbered by text order at the end

    def content(li: int, r: int) -> Any:
        t = tables[li]
        k = t.kind[r]
        if k == _FILE:
            return (k, t.sha[32 * r : 32 * r + 32])
        if k in (_SYMLINK, _HARDLINK):
            return (k, names[li][t.link[r]])
        return (k, None)

    def remove(todo: list[bytes], by: int, keep: set[bytes]) -> None:
        while todo:
            q = todo.pop()
            if q in keep:
                continue
            hit = view.pop(q, None)
            if hit is not None:
                shadows[hit[0]][hit[1]] = by
                s = children.get(_parent(q))
                if s is not None:
                    s.discard(q)
            todo.extend(children.pop(q, ()))

    for li, t in enumerate(tables):
        nm = names[li]
        kept: set[bytes] = set()
        for r, k in enumerate(t.kind):
            p = nm[t.path[r]]
            path_id[li][r] = ids.setdefault(p, len(ids))
            if k == _WHITEOUT:
                changes[li][r] = _DELETED
                remove([p], li, kept)
                continue
            if k == _OPAQUE:
                changes[li][r] = _OPAQUE_CHANGE
                remove(list(children.get(p, ())), li, kept)
                continue
            kept.add(p)
            q = p
            while b"/" in q:
                q = _parent(q)
                if q in kept:
                    break
                kept.add(q)
            old = view.get(p)
            if old is None:
                changes[li][r] = _ADDED
                children.setdefault(_parent(p), set()).add(p)
            else:
                ol, orow = old
                o = tables[ol]
                if content(ol, orow) != content(li, r):
                    changes[li][r] = _MODIFIED
                    if o.kind[orow] == _DIR and k != _DIR:
                        remove(list(children.pop(p, ())), li, set())
                else:
                    same = (o.mode[orow], o.uid[orow], o.gid[orow], o.xattr_hash[orow]) == (
                        t.mode[r], t.uid[r], t.gid[r], t.xattr_hash[r])  # fmt: skip
                    if k != _DIR and o.mtime[orow] != t.mtime[r]:
                        same = False
                    changes[li][r] = _SAME if same else _METADATA
                shadows[ol][orow] = li
                prev_layer[li][r] = ol
                prev_row[li][r] = orow
            view[p] = (li, r)
    by_text = sorted(ids, key=lambda p: p.decode(errors="surrogateescape"))
    rank = np.zeros(len(ids), dtype=np.uint32)
    for new, p in enumerate(by_text):
        rank[ids[p]] = new
    path_id = [rank[a] for a in path_id]
    return changes, shadows, prev_layer, prev_row, path_id


class _Node:
    __slots__ = ("children", "isdir", "size")

    def __init__(self) -> None:
        self.children: dict[bytes, _Node] = {}
        self.size = 0
        self.isdir = False


def _layer_nodes(t: _Cols, names: list[bytes]) -> dict[tuple[bytes, ...], tuple[int, bool] | None]:
    """dive's tree of one layer, flat: node components -> ``(size, is_dir)``, ``None`` for implied parents."""
    nodes: dict[tuple[bytes, ...], tuple[int, bool] | None] = {}
    kinds, sizes, paths = t.kind, t.size, t.path
    for k, size, p in zip(kinds, sizes, paths, strict=True):
        comps = tuple(names[p].split(b"/")) if names[p] else ()
        if any(c.startswith(_WHWH) for c in comps):
            continue  # dive drops such paths (aufs bookkeeping) where it meets them
        if k == _OPAQUE:
            payload: tuple[int, bool] | None = None  # the marker itself is dropped, its parents implied
        elif k == _WHITEOUT:
            comps = (*comps[:-1], _WH + comps[-1])
            payload = (0, False)
        else:
            payload = (size, k == _DIR)
        for i in range(len(comps) - 1, 0, -1):
            if comps[:i] in nodes:
                break
            nodes[comps[:i]] = None
        if payload is not None:
            nodes[comps] = payload
        elif comps and comps not in nodes:
            nodes[comps] = None
    return nodes


def _leaves(nodes: dict[tuple[bytes, ...], Any]) -> list[tuple[bytes, ...]]:
    parents = {c[:-1] for c in nodes}
    return [c for c in nodes if c not in parents]


def _get(root: _Node, comps: tuple[bytes, ...]) -> _Node | None:
    node = root
    for c in comps:
        nxt = node.children.get(c)
        if nxt is None:
            return None
        node = nxt
    return node


def _subtree_size(node: _Node) -> int:
    total, todo = 0, [node]
    while todo:
        n = todo.pop()
        total += n.size
        todo.extend(n.children.values())
    return total


def _add(root: _Node, comps: tuple[bytes, ...], payload: tuple[int, bool] | None) -> None:
    node = root
    for c in comps:
        nxt = node.children.get(c)
        if nxt is None:
            if c.startswith(_WHWH):
                return
            nxt = node.children[c] = _Node()
        node = nxt
    node.size, node.isdir = payload if payload is not None else (0, False)


def _post_order(nodes: dict[tuple[bytes, ...], Any]) -> list[tuple[bytes, ...]]:
    """Nodes deepest first with children sorted by name: sort by components, parents after their subtree."""
    order: list[tuple[bytes, ...]] = []
    stack: list[tuple[bytes, ...]] = []
    for c in sorted(nodes):
        while stack and c[: len(stack[-1])] != stack[-1]:
            order.append(stack.pop())
        stack.append(c)
    order.extend(reversed(stack))
    return order


def _stack(root: _Node, nodes: dict[tuple[bytes, ...], Any]) -> None:
    for comps in _post_order(nodes):
        if comps[-1].startswith(_WH):
            target = (*comps[:-1], comps[-1][len(_WH) :])
            parent = _get(root, target[:-1])
            if parent is not None:
                parent.children.pop(target[-1], None)
        else:
            _add(root, comps, nodes[comps])


def _dive(tables: list[_Cols], names: list[list[bytes]]) -> tuple[int, int, tuple[Any, ...]]:
    layer_nodes = [_layer_nodes(t, n) for t, n in zip(tables, names, strict=True)]
    needs_stack = [any(c[-1].startswith(_WH) for c in _leaves(nodes)) for nodes in layer_nodes]
    cum: dict[tuple[bytes, ...], int] = {}
    low: dict[tuple[bytes, ...], int] = {}
    refs: dict[tuple[bytes, ...], int] = {}
    stacked: _Node | None = None
    stacked_upto = -1  # stacked == copy(L0) + L0 + ... + L(stacked_upto)
    last_needed = max((i for i, need in enumerate(needs_stack) if need), default=-1)
    if last_needed >= 0:
        stacked = _Node()
        for comps, payload in layer_nodes[0].items():
            _add(stacked, comps, payload)
    for i, nodes in enumerate(layer_nodes):
        leaves = _leaves(nodes)
        if needs_stack[i]:
            assert stacked is not None
            while stacked_upto < i - 1:
                stacked_upto += 1
                _stack(stacked, layer_nodes[stacked_upto])
            leaves.sort()
        for comps in leaves:
            name = comps[-1] if comps else b""
            if name.startswith(_WH):
                key = (*comps[:-1], name[len(_WH) :])
                assert stacked is not None
                prev = _get(stacked, key)
                if prev is None:
                    # dive's visitor has already made the path's entry (minimum -1, nothing added), then errors
                    # out: the rest of this layer is not counted.
                    if key not in cum:
                        cum[key], low[key], refs[key] = 0, -1, 0
                    break
                size = _subtree_size(prev) if prev.isdir else 0
            else:
                key = comps
                payload = nodes[comps]
                size = payload[0] if payload is not None else 0
            if key in cum:
                cum[key] += size
                low[key] = size if low[key] < 0 else min(low[key], size)
                refs[key] += 1
            else:
                cum[key], low[key], refs[key] = size, size, 1
    inefficient = [(b"/" + b"/".join(k), refs[k], cum[k]) for k in cum if refs[k] >= 2]
    inefficient.sort(key=lambda r: (-r[2], r[0]))
    strings = b"".join(p + b"\0" for p, _, _ in inefficient)
    offsets = np.cumsum([0] + [len(p) + 1 for p, _, _ in inefficient[:-1]], dtype=np.uint64)[: len(inefficient)]
    columns = (
        np.frombuffer(strings, dtype=np.uint8).copy(),
        offsets,
        np.array([r for _, r, _ in inefficient], dtype=np.uint32),
        np.array([c for _, _, c in inefficient], dtype=np.int64),
    )
    return sum(low.values()), sum(cum.values()), columns


def image_pass(tables: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
    """Twin of ``imgcore._core.image_pass``: ``(changes, shadowed_by, prev_layer, prev_row, (minimum,
    discovered, inefficient), path_id)``, per layer (bottom first); ``inefficient`` as columns ``(NUL-joined
    paths, their offsets, references, cumulative sizes)``, largest first; path ids in the paths' text order."""
    cols = [_Cols.of(d) for d in tables]
    names = [_names(d) for d in tables]
    changes, shadows, prev_layer, prev_row, path_id = _merge(cols, names)
    return changes, shadows, prev_layer, prev_row, _dive(cols, names), path_id


# -- file_list_json: one layer's --json file list (the rules: rust/core/src/archive/figures.rs) ------------------

_KIND_NAMES = ("file", "dir", "symlink", "hardlink", "char", "block", "fifo", "whiteout", "opaque", "other")
_CHANGE_NAMES = {_ADDED: "added", _MODIFIED: "modified", _DELETED: "deleted", _OPAQUE_CHANGE: "opaque",
                 _METADATA: "metadata", _SAME: "same"}  # fmt: skip


def file_list_json(table: dict[str, Any], changes: Any, shadowed_by: Any, start: int, stop: int) -> str:
    """Twin of ``imgcore._core.file_list_json``: rows ``start..stop`` of one layer's ``--json`` file list, each
    entry as ``json.dumps`` writes it, joined by ``", "``."""
    n = len(table["kind"])
    if not 0 <= start <= stop <= n:
        raise ValueError("file_list_json: rows outside the table")
    names = _names(table)
    quote = encode_basestring_ascii
    sl = slice(start, stop)
    sha = np.asarray(table["sha256"]).reshape(-1, 32)[sl].tobytes().hex()
    rows = zip(*(np.asarray(table[k])[sl].tolist() for k in ("path", "kind", "size", "mode", "uid", "gid", "mtime",
                                                             "link", "xattrs")),
               np.asarray(changes)[sl].tolist(), np.asarray(shadowed_by)[sl].tolist(), strict=True)  # fmt: skip
    out = []
    for r, (p, k, size, mode, uid, gid, mtime, link, xa, c, hidden) in enumerate(rows):
        path = quote("/" + names[p].decode(errors="surrogateescape"))
        text = (f'{{"path": {path}, "kind": "{_KIND_NAMES[k]}", "change": "{_CHANGE_NAMES.get(c, "")}", '
                f'"size": {size}, "mode": {mode}, "uid": {uid}, "gid": {gid}, "mtime": {mtime}')  # fmt: skip
        if k == _FILE:
            text += f', "sha256": "sha256:{sha[64 * r : 64 * r + 64]}"'
        if link >= 0:
            text += f', "link": {quote(names[link].decode(errors="surrogateescape"))}'
        if xa:
            text += f', "xattrs": {xa}'
        if hidden != -1:
            text += f', "hidden_by": {hidden}'
        out.append(text + "}")
    return ", ".join(out)
