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
    path_id: tuple[npt.NDArray[np.uint32], ...]  # image-wide id of each row's path


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
    changes, shadows, prev_layer, prev_row, (minimum, discovered, inefficient), path_id = image_pass(
        [t.columns() for t in tables]
    )
    return Merge(tuple(changes), tuple(shadows), tuple(prev_layer), tuple(prev_row), minimum, discovered,
                 tuple(inefficient), tuple(path_id))  # fmt: skip


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
    """Paths with file copies the final image does not show, most wasted bytes first (grouped by path id)."""
    hid_ids, hid_size, hid_layer, keep_ids, keep_layer = [], [], [], [], []
    first: dict[int, tuple[int, int]] = {}
    for li, t in enumerate(tables):
        files = t.kind == FILE
        hidden = np.flatnonzero(files & (m.shadowed_by[li] != VISIBLE))
        shown = np.flatnonzero(files & (m.shadowed_by[li] == VISIBLE))
        hid_ids.append(m.path_id[li][hidden])
        hid_size.append(t.size[hidden])
        hid_layer.append(np.full(len(hidden), li, dtype=np.int64))
        keep_ids.append(m.path_id[li][shown])
        keep_layer.append(np.full(len(shown), li, dtype=np.int64))
    ids = np.concatenate(hid_ids).astype(np.int64)
    if not len(ids):
        return []
    sizes = np.concatenate(hid_size)
    n = int(max(ids.max(), max((int(k.max()) for k in keep_ids if len(k)), default=0))) + 1
    wasted = np.bincount(ids, weights=sizes.astype(np.float64), minlength=n)
    copies = np.bincount(ids, minlength=n)
    kept_ids = np.concatenate(keep_ids).astype(np.int64)
    kept = np.zeros(n, dtype=np.int64)
    kept[kept_ids] = 1
    # The layers holding a copy of each path: unique (path id, layer) pairs.
    pairs = np.unique(np.concatenate([ids * 4096 + np.concatenate(hid_layer),
                                      kept_ids * 4096 + np.concatenate(keep_layer)]))  # fmt: skip
    pair_ids, pair_layers = pairs // 4096, pairs % 4096
    # A path of each id: its first hidden row.
    for li, t in enumerate(tables):
        hidden = np.flatnonzero((t.kind == FILE) & (m.shadowed_by[li] != VISIBLE))
        for pid, p in zip(m.path_id[li][hidden].tolist(), t.path[hidden].tolist(), strict=True):
            if pid not in first:
                first[pid] = (li, p)
    out = []
    starts = np.searchsorted(pair_ids, np.arange(n + 1))
    for pid in np.flatnonzero(copies).tolist():
        li, p = first[pid]
        layers = tuple(pair_layers[starts[pid] : starts[pid + 1]].tolist())
        out.append(Wasted(_as_text(names[li][p]), int(copies[pid] + kept[pid]), round(float(wasted[pid])), layers))
    out.sort(key=lambda w: (-w.wasted_bytes, w.path))
    return out


def rewrites(tables: Sequence[LayerTable], names: Sequence[list[bytes]], m: Merge) -> list[Rewrite]:
    """Metadata-only rewrites of files (the byte cost of chmod/chown/touch steps), largest first."""
    out: list[Rewrite] = []
    for li, t in enumerate(tables):
        ch = m.changes[li]
        hits = np.flatnonzero(((ch == METADATA) | (ch == SAME)) & (t.kind == FILE))
        if not len(hits):
            continue
        prev_l, prev_r = m.prev_layer[li][hits], m.prev_row[li][hits]
        nm = names[li]
        for ol in np.unique(prev_l).tolist():
            sel = prev_l == ol
            rows, orows = hits[sel], prev_r[sel].astype(np.int64)
            o = tables[ol]
            flags = {
                "mode": o.mode[orows] != t.mode[rows],
                "owner": (o.uid[orows] != t.uid[rows]) | (o.gid[orows] != t.gid[rows]),
                "mtime": o.mtime[orows] != t.mtime[rows],
                "xattrs": o.xattr_hash[orows] != t.xattr_hash[rows],
            }
            cols = [f.tolist() for f in flags.values()]
            keys = list(flags)
            for i, (p, size) in enumerate(zip(t.path[rows].tolist(), t.size[rows].tolist(), strict=True)):
                changed = tuple(k for k, c in zip(keys, cols, strict=True) if c[i])
                out.append(Rewrite(_as_text(nm[p]), li, size, ol, changed))
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
