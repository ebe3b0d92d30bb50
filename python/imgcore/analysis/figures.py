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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from imgcore._core import image_pass as _core_image_pass
from imgcore.analysis.tables import (
    FILE,
    METADATA,
    OPAQUE_KIND,
    SAME,
    WHITEOUT,
    LayerTable,
)

__all__ = [
    "Merge",
    "Rewrite",
    "Wasted",
    "drop_savings",
    "duplicate_content",
    "final_view",
    "merge",
    "squash_savings",
]

#: ``shadowed_by`` of a row the final image shows.
VISIBLE = -1


@dataclass(frozen=True)
class Merge:
    """The layers replayed in order: per layer, each row's change, the layer that hid it (``VISIBLE``) and the
    copy it replaced (``prev_layer`` -1: none); and dive's sums (``image_pass``)."""

    changes: tuple[npt.NDArray[np.uint8], ...]
    shadowed_by: tuple[npt.NDArray[np.int32], ...]
    prev_layer: tuple[npt.NDArray[np.int32], ...]
    prev_row: tuple[npt.NDArray[np.uint32], ...]
    dive_minimum: int
    dive_discovered: int
    dive_inefficient: tuple[tuple[bytes, int, int], ...]


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


Pass = Callable[[list[dict[str, Any]]], tuple[Any, ...]]
"""``_core.image_pass`` or its pure twin."""


def merge(tables: Sequence[LayerTable], image_pass: Pass = _core_image_pass) -> Merge:
    """Replays the layers (bottom first, in Rust by default) and decides each row's change and fate."""
    changes, shadows, prev_layer, prev_row, (minimum, discovered, inefficient) = image_pass(
        [t.columns() for t in tables]
    )
    return Merge(tuple(changes), tuple(shadows), tuple(prev_layer), tuple(prev_row), minimum, discovered,
                 tuple(inefficient))  # fmt: skip


def final_view(tables: Sequence[LayerTable], names: Sequence[list[bytes]], m: Merge) -> dict[bytes, tuple[int, int]]:
    """The final tree: path -> ``(layer, row)`` of the entry the image shows."""
    view: dict[bytes, tuple[int, int]] = {}
    for li, t in enumerate(tables):
        rows = np.flatnonzero((m.shadowed_by[li] == VISIBLE) & (t.kind != WHITEOUT) & (t.kind != OPAQUE_KIND))
        nm = names[li]
        for r, p in zip(rows.tolist(), t.path[rows].tolist(), strict=True):
            view[nm[p]] = (li, r)
    return view


def _as_text(p: bytes) -> str:
    return "/" + p.decode(errors="surrogateescape")


def wasted_paths(tables: Sequence[LayerTable], names: Sequence[list[bytes]], m: Merge) -> list[Wasted]:
    """Paths with file copies the final image does not show, most wasted bytes first."""
    by_path: dict[bytes, list[Any]] = {}
    for li, t in enumerate(tables):
        hidden = np.flatnonzero((m.shadowed_by[li] != VISIBLE) & (t.kind == FILE))
        nm = names[li]
        for r, size in zip(t.path[hidden].tolist(), t.size[hidden].tolist(), strict=True):
            e = by_path.setdefault(nm[r], [0, 0, []])
            e[0] += 1
            e[1] += size
            e[2].append(li)
    if by_path:
        # The kept copies: visible files at those paths.
        for li, t in enumerate(tables):
            nm = names[li]
            wanted = np.fromiter((i for i, p in enumerate(nm) if p in by_path), dtype=np.uint32)
            if not len(wanted):
                continue
            rows = np.flatnonzero((m.shadowed_by[li] == VISIBLE) & (t.kind == FILE) & np.isin(t.path, wanted))
            for p in t.path[rows].tolist():
                e = by_path[nm[p]]
                e[0] += 1
                e[2].append(li)
    out = [Wasted(_as_text(p), copies, wasted, tuple(sorted(set(layers))))
           for p, (copies, wasted, layers) in by_path.items()]  # fmt: skip
    out.sort(key=lambda w: (-w.wasted_bytes, w.path))
    return out


def rewrites(tables: Sequence[LayerTable], names: Sequence[list[bytes]], m: Merge) -> list[Rewrite]:
    """Metadata-only rewrites of files (the byte cost of chmod/chown/touch steps), largest first."""
    out: list[Rewrite] = []
    for li, t in enumerate(tables):
        ch = m.changes[li]
        hits = np.flatnonzero(((ch == METADATA) | (ch == SAME)) & (t.kind == FILE))
        nm = names[li]
        for r in hits.tolist():
            ol, orow = int(m.prev_layer[li][r]), int(m.prev_row[li][r])
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
            out.append(Rewrite(_as_text(nm[t.path[r]]), li, int(t.size[r]), ol, tuple(changed)))
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
