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
  saves exactly that;
- everything is computed over numpy columns; the per-path results (:class:`WastedPaths`, :class:`Rewrites`)
  stay columns and make a :class:`Wasted`/:class:`Rewrite` only for an item that is read; a path's text is
  decoded from its table's string table only then; ``Merge.path_id`` follows the paths' text order, so "then
  by path" is "then by id".
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from imgcore._core import image_pass as _core_image_pass
from imgcore.analysis._rows import Rows, texts
from imgcore.analysis.tables import (
    FILE,
    METADATA,
    OPAQUE_KIND,
    SAME,
    WHITEOUT,
    LayerTable,
)

__all__ = [
    "Inefficient",
    "LayerNames",
    "Merge",
    "Rewrite",
    "Rewrites",
    "Wasted",
    "WastedPaths",
    "drop_savings",
    "duplicate_content",
    "final_view",
    "merge",
    "rewrites",
    "squash_savings",
    "wasted_paths",
]

#: ``shadowed_by`` of a row the final image shows.
VISIBLE = -1


@dataclass(frozen=True)
class Inefficient:
    """dive's inefficient paths as columns (``image_pass``' order: largest cumulative size first): the paths
    (leading slash, NUL-joined, ``offsets`` where each starts), their references and cumulative sizes."""

    strings: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.uint64]
    refs: npt.NDArray[np.uint32]
    sizes: npt.NDArray[np.int64]


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
    dive_inefficient: Inefficient
    #: image-wide id of each row's path; the ids follow the paths' text order (sorting by id sorts by path)
    path_id: tuple[npt.NDArray[np.uint32], ...]


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
                 Inefficient(*inefficient), tuple(path_id))  # fmt: skip


def final_view(tables: Sequence[LayerTable], names: Sequence[list[bytes]], m: Merge) -> dict[bytes, tuple[int, int]]:
    """The final tree: path -> ``(layer, row)`` of the entry the image shows."""
    view: dict[bytes, tuple[int, int]] = {}
    for li, t in enumerate(tables):
        rows = np.flatnonzero((m.shadowed_by[li] == VISIBLE) & (t.kind != WHITEOUT) & (t.kind != OPAQUE_KIND))
        nm = names[li]
        for r, p in zip(rows.tolist(), t.path[rows].tolist(), strict=True):
            view[nm[p]] = (li, r)
    return view


class LayerNames(Sequence[list[bytes]]):
    """Each layer's decoded string table, made when asked for and not kept (``names[layer]``)."""

    def __init__(self, tables: Sequence[LayerTable]) -> None:
        self.tables = tables

    def __len__(self) -> int:
        return len(self.tables)

    @overload
    def __getitem__(self, i: int) -> list[bytes]: ...
    @overload
    def __getitem__(self, i: slice) -> list[list[bytes]]: ...
    def __getitem__(self, i: int | slice) -> list[bytes] | list[list[bytes]]:
        if isinstance(i, slice):
            return [t.names() for t in self.tables[i]]
        return self.tables[i].names()


def _as_text(p: bytes) -> str:
    return "/" + p.decode(errors="surrogateescape")


def _paths(tables: Sequence[LayerTable], layers: npt.NDArray[Any], strs: npt.NDArray[Any]) -> list[str]:
    """The texts of string ``strs[i]`` of layer ``layers[i]``, for each ``i`` (only those strings are read)."""
    out = [""] * len(layers)
    for li in np.unique(layers).tolist():
        at = np.flatnonzero(layers == li)
        t = tables[li]
        for i, text in zip(at.tolist(), texts(t.strings, t.offsets, strs[at]), strict=True):
            out[i] = text
    return out


class WastedPaths(Rows[Wasted]):
    """:func:`wasted_paths`: columns per path (most wasted bytes first, then by path); a :class:`Wasted` is
    made only for an item that is read."""

    def __init__(self, tables: Sequence[LayerTable], cols: dict[str, npt.NDArray[Any]]) -> None:
        super().__init__(len(cols["copies"]))
        self.tables = tables
        #: ``copies``, ``wasted_bytes`` (uint64), the path's string (``path_layer``, ``path_string``) and the
        #: layers holding a copy (``layers[layer_start[i]:layer_start[i + 1]]``)
        self.cols = cols

    @property
    def wasted_bytes(self) -> npt.NDArray[np.uint64]:
        """Each path's wasted bytes, in order."""
        return self.cols["wasted_bytes"]

    def chunk(self, start: int, stop: int) -> list[Wasted]:
        """Items ``start`` to ``stop``, made from their fields."""
        return [Wasted(*f) for f in self.fields(start, stop)]

    def fields(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        """The fields of items ``start`` to ``stop``, read from the columns."""
        c = self.cols
        paths = _paths(self.tables, c["path_layer"][start:stop], c["path_string"][start:stop])
        bounds = c["layer_start"][start : stop + 1].tolist()
        layers = c["layers"][bounds[0] : bounds[-1]].tolist() if bounds else []
        base = bounds[0] if bounds else 0
        copies, wasted = c["copies"][start:stop].tolist(), c["wasted_bytes"][start:stop].tolist()
        return [(p, n, w, tuple(layers[a - base : b - base]))
                for p, n, w, a, b in zip(paths, copies, wasted, bounds[:-1], bounds[1:], strict=True)]  # fmt: skip


def wasted_paths(tables: Sequence[LayerTable], m: Merge) -> WastedPaths:
    """Paths with file copies the final image does not show, most wasted bytes first, then by path (grouped
    by path id, all in numpy: one :class:`Wasted` per item read, not per path; the working arrays are a few
    bytes per hidden copy, each dropped once used)."""
    parts: dict[str, list[npt.NDArray[Any]]] = {"id": [], "size": [], "layer": [], "string": []}
    for li, t in enumerate(tables):
        hidden = np.flatnonzero((t.kind == FILE) & (m.shadowed_by[li] != VISIBLE))
        parts["id"].append(m.path_id[li][hidden])
        parts["size"].append(t.size[hidden])
        parts["layer"].append(np.full(len(hidden), li, dtype=np.int32))
        parts["string"].append(t.path[hidden])
    empty = np.zeros(0, dtype=np.int64)
    if not sum(len(x) for x in parts["id"]):
        cols: dict[str, npt.NDArray[Any]] = {
            "copies": empty, "wasted_bytes": np.zeros(0, dtype=np.uint64), "path_layer": empty,
            "path_string": empty, "layer_start": np.zeros(1, dtype=np.int64), "layers": empty,
        }  # fmt: skip
        return WastedPaths(tables, cols)
    ids, sizes = np.concatenate(parts.pop("id")), np.concatenate(parts.pop("size"))
    hid_layer, hid_string = np.concatenate(parts.pop("layer")), np.concatenate(parts.pop("string"))
    # Group the hidden copies by path id (a stable sort: each group's first copy is its first in layer order).
    order = np.argsort(ids, kind="stable")
    sids = ids[order]
    starts = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    uniq = sids[starts]
    del sids
    hidden_copies = np.diff(np.r_[starts, len(ids)])
    wasted = np.add.reduceat(sizes[order], starts).astype(np.uint64)
    del sizes
    first = order[starts]
    del order, starts
    path_layer, path_string = hid_layer[first], hid_string[first]
    del first, hid_string
    # Path id -> group, then the layers holding a copy of each group's path (hidden or shown): unique
    # (group, layer) pairs; and the shown copy of each (at most one).
    top = max(int(p.max()) for p in m.path_id if len(p)) + 1
    group = np.full(top, -1, dtype=np.int32)
    group[uniq] = np.arange(len(uniq), dtype=np.int32)
    n_layers = max(len(tables), 1)
    pair_parts = [group[ids].astype(np.int64) * n_layers + hid_layer]
    del ids, hid_layer
    kept = np.zeros(len(uniq), dtype=np.int64)
    for li, t in enumerate(tables):
        shown = np.flatnonzero((t.kind == FILE) & (m.shadowed_by[li] == VISIBLE))
        g = group[m.path_id[li][shown]]
        g = g[g >= 0]
        kept[g] = 1
        pair_parts.append(g.astype(np.int64) * n_layers + li)
    del group
    pairs = np.concatenate(pair_parts)
    del pair_parts
    pairs.sort()
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]
    layer_start = np.searchsorted(pairs // n_layers, np.arange(len(uniq) + 1))
    pair_layer = (pairs % n_layers).astype(np.int32)
    del pairs
    # Most wasted first, then by path (ids follow the paths' text order).
    rank = np.lexsort((uniq, ~wasted))
    counts = np.diff(layer_start)[rank]
    new_start = np.r_[0, np.cumsum(counts)].astype(np.int64)
    take = np.repeat(layer_start[:-1][rank] - new_start[:-1], counts) + np.arange(int(new_start[-1]))
    cols = {
        "copies": (hidden_copies + kept)[rank],
        "wasted_bytes": wasted[rank],
        "path_layer": path_layer[rank],
        "path_string": path_string[rank],
        "layer_start": new_start,
        "layers": pair_layer[take],
    }
    return WastedPaths(tables, cols)


_CHANGED = ("mode", "owner", "mtime", "xattrs")


class Rewrites(Rows[Rewrite]):
    """:func:`rewrites`: columns per rewritten file (largest first, then by path); a :class:`Rewrite` is made
    only for an item that is read."""

    def __init__(self, tables: Sequence[LayerTable], cols: dict[str, npt.NDArray[Any]]) -> None:
        super().__init__(len(cols["size"]))
        self.tables = tables
        #: ``layer``, ``row``, ``size``, ``lower_layer``, ``changed`` (bit i: ``_CHANGED[i]``)
        self.cols = cols
        self._changed = [tuple(k for b, k in enumerate(_CHANGED) if bits >> b & 1) for bits in range(16)]

    @property
    def sizes(self) -> npt.NDArray[np.uint64]:
        """Each rewrite's size, in order."""
        return self.cols["size"]

    def chunk(self, start: int, stop: int) -> list[Rewrite]:
        """Items ``start`` to ``stop``, made from their fields."""
        return [Rewrite(*f) for f in self.fields(start, stop)]

    def fields(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        """The fields of items ``start`` to ``stop``, read from the columns."""
        c = self.cols
        layer = c["layer"][start:stop]
        strs = np.zeros(len(layer), dtype=np.int64)
        for li in np.unique(layer).tolist():
            at = np.flatnonzero(layer == li)
            strs[at] = self.tables[li].path[c["row"][start:stop][at]]
        paths = _paths(self.tables, layer, strs)
        ch = self._changed
        return [(p, li, size, ol, ch[bits])
                for p, li, size, ol, bits in zip(paths, layer.tolist(), c["size"][start:stop].tolist(),
                                                 c["lower_layer"][start:stop].tolist(),
                                                 c["changed"][start:stop].tolist(), strict=True)]  # fmt: skip


def rewrites(tables: Sequence[LayerTable], m: Merge) -> Rewrites:
    """Metadata-only rewrites of files (the byte cost of chmod/chown/touch steps), largest first, then by path
    (equal ones in layer, lower layer and row order), as columns."""
    parts: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in ("layer", "row", "size", "lower_layer", "changed", "id")}
    for li, t in enumerate(tables):
        ch = m.changes[li]
        hits = np.flatnonzero(((ch == METADATA) | (ch == SAME)) & (t.kind == FILE))
        if not len(hits):
            continue
        prev_l, prev_r = m.prev_layer[li][hits], m.prev_row[li][hits]
        for ol in np.unique(prev_l).tolist():
            sel = prev_l == ol
            rows, orows = hits[sel], prev_r[sel].astype(np.int64)
            o = tables[ol]
            bits = ((o.mode[orows] != t.mode[rows]).astype(np.uint8)
                    | ((o.uid[orows] != t.uid[rows]) | (o.gid[orows] != t.gid[rows])).astype(np.uint8) << 1
                    | (o.mtime[orows] != t.mtime[rows]).astype(np.uint8) << 2
                    | (o.xattr_hash[orows] != t.xattr_hash[rows]).astype(np.uint8) << 3)  # fmt: skip
            parts["layer"].append(np.full(len(rows), li, dtype=np.int64))
            parts["row"].append(rows.astype(np.int64))
            parts["size"].append(t.size[rows])
            parts["lower_layer"].append(np.full(len(rows), ol, dtype=np.int64))
            parts["changed"].append(bits)
            parts["id"].append(m.path_id[li][rows].astype(np.int64))
    dtypes = {"layer": np.int64, "row": np.int64, "size": np.uint64, "lower_layer": np.int64, "changed": np.uint8,
              "id": np.int64}  # fmt: skip
    cols = {k: np.concatenate(v) if v else np.zeros(0, dtype=dtypes[k]) for k, v in parts.items()}
    # Largest first, then by path (ids follow the paths' text order); the sort is stable, so equal keys stay
    # in the order they were found (layer, lower layer, row).
    order = np.lexsort((cols.pop("id"), ~cols["size"]))
    return Rewrites(tables, {k: v[order] for k, v in cols.items()})


def duplicate_content(
    tables: Sequence[LayerTable], m: Merge, layers: Sequence[int] | None = None
) -> tuple[int, int, dict[bytes, int]]:
    """Files of equal content the final image shows at several paths: ``(duplicate bytes, groups, counts)``.

    Duplicate bytes count every copy but one; ``counts`` maps each duplicated sha256 (32 bytes) to its copies
    (in sha256 order). The files are grouped by the first 8 bytes of their sha256 first (an array of 8 bytes a
    file), and only files sharing those are compared whole.
    """
    keys: list[npt.NDArray[np.uint64]] = []
    where: list[tuple[int, npt.NDArray[np.intp]]] = []
    for li, t in enumerate(tables):
        if layers is not None and li not in layers:
            continue
        rows = np.flatnonzero((m.shadowed_by[li] == VISIBLE) & (t.kind == FILE) & (t.size > 0))
        keys.append(np.ascontiguousarray(t.sha256[rows, :8]).view(np.uint64).reshape(-1))
        where.append((li, rows))
    key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
    if not len(key):
        return 0, 0, {}
    order = np.argsort(key, kind="stable")
    sk = key[order]
    same = sk[1:] == sk[:-1]
    cand = np.zeros(len(sk), dtype=bool)
    cand[1:] |= same
    cand[:-1] |= same
    picked = np.sort(order[cand])  # the candidates, in table order (so "first" is the first in layer order)
    if not len(picked):
        return 0, 0, {}
    bounds = np.cumsum([0] + [len(rows) for _, rows in where])
    shas, sizes = [], []
    for (li, rows), lo, hi in zip(where, bounds[:-1], bounds[1:], strict=True):
        sel = picked[(picked >= lo) & (picked < hi)] - lo
        shas.append(tables[li].sha256[rows[sel]])
        sizes.append(tables[li].size[rows[sel]])
    sha = np.ascontiguousarray(np.concatenate(shas)).view(np.dtype((np.void, 32))).reshape(-1)
    size = np.concatenate(sizes)
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
