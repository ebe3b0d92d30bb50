"""Content-true figures over the layer tables: the change each row makes, what is kept, what is waste, what
duplicates what by content, and what-if savings (squash, drop, fold), all computed without writing anything.

The union rules are extraction's (``ARCHITECTURE.md``, "Whiteouts"): a whiteout or opaque marker removes only
what lower layers (or this layer, before it wrote there) put there; a path written again replaces the copy below
(a directory replaced by something else takes its subtree with it). Paths are taken literally (a symlinked
parent is not resolved, as in dive and container-diff).

Invariants:
- every copy of a file that the final image does not show is waste (``shadowed``), once: the kept copy is never
  counted (unlike dive, issue #684);
- duplicates are found by content (sha256) among the files the final image shows, across paths and layers;
  a hardlink costs nothing (the tar stores a header only) and is never a duplicate;
- a metadata-only rewrite is a file row whose content equals the copy below it (mode, owner, mtime or xattrs
  changed, or nothing at all): its whole size is its cost, and folding it into the layer that wrote the file
  saves exactly that.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from imgcore.analysis.tables import (
    ADDED,
    DELETED,
    DIR,
    FILE,
    HARDLINK,
    METADATA,
    MODIFIED,
    OPAQUE,
    OPAQUE_KIND,
    SAME,
    SYMLINK,
    WHITEOUT,
    LayerTable,
)

__all__ = [
    "Merge",
    "Rewrite",
    "Wasted",
    "drop_savings",
    "duplicate_content",
    "merge",
    "squash_savings",
]

#: ``shadowed_by`` of a row the final image shows.
VISIBLE = -1


@dataclass(frozen=True)
class Merge:
    """The layers replayed in order: per layer, each row's change and the layer that hid it (``VISIBLE``)."""

    changes: tuple[npt.NDArray[np.uint8], ...]
    shadowed_by: tuple[npt.NDArray[np.int32], ...]
    #: final view: path -> (layer, row)
    view: dict[bytes, tuple[int, int]]


@dataclass(frozen=True)
class Wasted:
    """One path whose copies the final image does not all show."""

    path: str
    copies: int
    wasted_bytes: int
    layers: tuple[int, ...]


@dataclass(frozen=True)
class Rewrite:
    """A metadata-only rewrite: a file copied unchanged into a later layer (chmod, chown, touch)."""

    path: str
    layer: int
    size: int
    lower_layer: int
    changed: tuple[str, ...]  # mode, owner, mtime, xattrs (empty: an identical copy)


def merge(tables: Sequence[LayerTable], names: Sequence[list[bytes]]) -> Merge:
    """Replays the layers (bottom first) and decides each row's change and fate."""
    view: dict[bytes, tuple[int, int]] = {}
    children: dict[bytes, set[bytes]] = {}
    changes: list[npt.NDArray[np.uint8]] = []
    shadows: list[npt.NDArray[np.int32]] = []
    cols = [
        (t.kind.tolist(), t.mode.tolist(), t.uid.tolist(), t.gid.tolist(), t.mtime.tolist(),
         t.xattr_hash.tolist(), t.link.tolist(), t.path.tolist())
        for t in tables
    ]  # fmt: skip
    shas = [t.sha256 for t in tables]

    def content(li: int, r: int) -> Any:
        k = cols[li][0][r]
        if k == FILE:
            return (k, shas[li][r].tobytes())
        if k in (SYMLINK, HARDLINK):
            return (k, names[li][cols[li][6][r]])
        return (k, None)

    def remove(p: bytes, by: int, keep: set[bytes], include_self: bool) -> None:
        todo = [p] if include_self else list(children.get(p, ()))
        while todo:
            q = todo.pop()
            if q in keep:
                continue
            hit = view.pop(q, None)
            if hit is not None:
                shadows[hit[0]][hit[1]] = by
                parent = q.rpartition(b"/")[0] if b"/" in q else b""
                s = children.get(parent)
                if s is not None:
                    s.discard(q)
            todo.extend(children.pop(q, ()))

    for li, t in enumerate(tables):
        kinds, modes, uids, gids, mtimes, xh, _links, paths = cols[li]
        n = len(t)
        ch = np.zeros(n, dtype=np.uint8)
        sh = np.full(n, VISIBLE, dtype=np.int32)
        changes.append(ch)
        shadows.append(sh)
        nm = names[li]
        kept: set[bytes] = set()
        for r in range(n):
            k = kinds[r]
            p = nm[paths[r]]
            if k == WHITEOUT:
                ch[r] = DELETED
                remove(p, li, kept, True)
                continue
            if k == OPAQUE_KIND:
                ch[r] = OPAQUE
                remove(p, li, kept, False)
                continue
            kept.add(p)
            q = p
            while b"/" in q:
                q = q.rpartition(b"/")[0]
                if q in kept:
                    break
                kept.add(q)
            old = view.get(p)
            if old is None:
                ch[r] = ADDED
                parent = p.rpartition(b"/")[0] if b"/" in p else b""
                children.setdefault(parent, set()).add(p)
            else:
                ol, orow = old
                if content(ol, orow) != content(li, r):
                    ch[r] = MODIFIED
                    if cols[ol][0][orow] == DIR and k != DIR:
                        remove(p, li, set(), False)
                else:
                    o = cols[ol]
                    same = (o[1][orow], o[2][orow], o[3][orow], o[5][orow]) == (modes[r], uids[r], gids[r], xh[r])
                    if k != DIR and o[4][orow] != mtimes[r]:
                        same = False
                    ch[r] = SAME if same else METADATA
                shadows[ol][orow] = li
            view[p] = (li, r)
    return Merge(tuple(changes), tuple(shadows), view)


def _as_text(p: bytes) -> str:
    return "/" + p.decode(errors="surrogateescape")


def wasted_paths(tables: Sequence[LayerTable], names: Sequence[list[bytes]], m: Merge) -> list[Wasted]:
    """Paths with file copies the final image does not show, most wasted bytes first."""
    by_path: dict[bytes, list[Any]] = {}
    for li, t in enumerate(tables):
        hidden = np.flatnonzero((m.shadowed_by[li] != VISIBLE) & (t.kind == FILE))
        if not len(hidden):
            continue
        sizes = t.size[hidden].tolist()
        nm = names[li]
        for r, size in zip(t.path[hidden].tolist(), sizes, strict=True):
            e = by_path.setdefault(nm[r], [0, 0, []])
            e[0] += 1
            e[1] += size
            e[2].append(li)
    out = []
    for p, (copies, wasted, layers) in by_path.items():
        hit = m.view.get(p)
        if hit is not None and tables[hit[0]].kind[hit[1]] == FILE:
            copies += 1
            layers.append(hit[0])
        out.append(Wasted(_as_text(p), copies, wasted, tuple(sorted(set(layers)))))
    out.sort(key=lambda w: (-w.wasted_bytes, w.path))
    return out


def rewrites(tables: Sequence[LayerTable], names: Sequence[list[bytes]], m: Merge) -> list[Rewrite]:
    """Metadata-only rewrites of files (the byte cost of chmod/chown/touch steps), largest first."""
    out: list[Rewrite] = []
    lower: dict[bytes, tuple[int, int]] = {}
    for li, t in enumerate(tables):
        nm = names[li]
        ch = m.changes[li]
        hits = set(np.flatnonzero(((ch == METADATA) | (ch == SAME)) & (t.kind == FILE)).tolist())
        for r, (p, k) in enumerate(zip(t.path.tolist(), t.kind.tolist(), strict=True)):
            path = nm[p]
            if r in hits and path in lower:
                ol, orow = lower[path]
                o = tables[ol]
                changed = []
                if o.mode[orow] != t.mode[r]:
                    changed.append("mode")
                if (o.uid[orow], o.gid[orow]) != (t.uid[r], t.gid[r]):
                    changed.append("owner")
                if o.mtime[orow] != t.mtime[r]:
                    changed.append("mtime")
                if o.xattr_hash[orow] != t.xattr_hash[r]:
                    changed.append("xattrs")
                out.append(Rewrite(_as_text(path), li, int(t.size[r]), ol, tuple(changed)))
            if k == FILE:
                lower[path] = (li, r)
            elif k != OPAQUE_KIND:
                lower.pop(path, None)
    out.sort(key=lambda w: (-w.size, w.path))
    return out


def duplicate_content(
    tables: Sequence[LayerTable], m: Merge, layers: Sequence[int] | None = None
) -> tuple[int, int, dict[bytes, int]]:
    """Files of equal content the final image shows at several paths: ``(duplicate bytes, groups, counts)``.

    Duplicate bytes count every copy but one; ``counts`` maps each duplicated sha256 (32 bytes) to its copies.
    """
    shas: list[npt.NDArray[np.uint8]] = []
    sizes: list[npt.NDArray[np.uint64]] = []
    for li, t in enumerate(tables):
        if layers is not None and li not in layers:
            continue
        mask = (m.shadowed_by[li] == VISIBLE) & (t.kind == FILE) & (t.size > 0)
        shas.append(t.sha256[mask])
        sizes.append(t.size[mask])
    if not shas:
        return 0, 0, {}
    sha = np.ascontiguousarray(np.concatenate(shas)).view(np.dtype((np.void, 32))).reshape(-1)
    size = np.concatenate(sizes)
    if not len(sha):
        return 0, 0, {}
    uniq, first, counts = np.unique(sha, return_index=True, return_counts=True)
    dup = counts > 1
    total = int((size[first[dup]] * (counts[dup] - 1).astype(np.uint64)).sum())
    return total, int(dup.sum()), {bytes(u): int(c) for u, c in zip(uniq[dup], counts[dup], strict=True)}


def squash_savings(tables: Sequence[LayerTable], m: Merge, n: int) -> int:
    """Bytes a squash of the top ``n`` layers would not store: file copies hidden by a layer inside the range."""
    start = max(0, len(tables) - n)
    saved = 0
    for li in range(start, len(tables)):
        t = tables[li]
        mask = (m.shadowed_by[li] >= start) & (t.kind == FILE)
        saved += int(t.size[mask].sum())
    return saved


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob (``fnmatch``; ``*`` crosses ``/``) anchored at the root: ``/var/cache/*``, ``*.pyc``."""
    if not pattern.startswith(("/", "*")):
        pattern = "/" + pattern
    return re.compile(fnmatch.translate(pattern.rstrip("/") or "/"))


def drop_savings(tables: Sequence[LayerTable], names: Sequence[list[bytes]], pattern: str) -> tuple[int, int]:
    """``(bytes, files)`` stored in every layer under paths matching ``pattern`` (or below a matching path)."""
    rx = glob_regex(pattern)
    total = files = 0
    for li, t in enumerate(tables):
        nm = names[li]
        matched: set[int] = set()
        for i, p in enumerate(nm):
            text = _as_text(p)
            if rx.match(text):
                matched.add(i)
                continue
            q = p
            while b"/" in q:
                q = q.rpartition(b"/")[0]
                if rx.match(_as_text(q)):
                    matched.add(i)
                    break
        if not matched:
            continue
        idx = np.fromiter(matched, dtype=np.uint32)
        mask = np.isin(t.path, idx) & (t.kind == FILE)
        total += int(t.size[mask].sum())
        files += int(mask.sum())
    return total, files
