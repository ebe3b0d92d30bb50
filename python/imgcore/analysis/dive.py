"""dive's figures (wagoodman/dive 0.13: ``dive/filetree/efficiency.go``, ``dive/image/analysis.go``), computed
from the layer tables exactly as dive computes them, quirks included, so the numbers equal dive's own.

How dive counts, restated:
- each layer is a tree of its tar entries (parents implied with an empty payload; a path listed twice keeps the
  last; ``.wh..wh..*`` names, the opaque marker included, are dropped but still imply their parents; a whiteout
  ``.wh.NAME`` is a node of that name whose path is ``NAME``'s);
- a layer's size is the sum of its entries' header sizes; the user size leaves out layer 0;
- per layer, only the *leaves* of its tree are visited (children sorted by name, deepest first): a leaf adds its
  size to its path's cumulative size and takes part in the path's minimum; a whiteout leaf's size is the sum of
  the subtree it removes if that was a directory in the stack of the layers below (layer 0 stacked onto itself
  first; layer 0's own whiteouts see layer 0 as written), else 0; a whiteout whose path is not in that stack
  stops the visit of the rest of its layer (dive logs and goes on with the next layer), leaving its path with
  a minimum of -1 (dive's "not yet seen") when nothing else set one;
- stacking grafts every node of the upper tree, deepest first: a whiteout removes its path, anything else takes
  its path with the upper node's payload (an implied parent's empty payload too, which is no directory);
- efficiency = sum of per-path minima / sum of per-path cumulative sizes (1.0 when that is 0); wasted bytes =
  sum of the cumulative sizes of every path seen in two layers or more (the kept copy included: dive's own
  definition, issue #684); user wasted percent = wasted / user size (IEEE division, as Go's float64).

Invariant: this module reads only the tables; it never opens a blob.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imgcore.analysis.tables import DIR, OPAQUE_KIND, WHITEOUT, LayerTable

__all__ = ["DiveFigures", "dive_figures"]

_WH = b".wh."
_WHWH = b".wh..wh."


@dataclass(frozen=True)
class DiveFigures:
    """dive's numbers for one image (the names of dive's JSON export in the comments)."""

    efficiency: float  # image.efficiencyScore
    wasted_bytes: int  # image.inefficientBytes
    user_wasted_percent: float  # userWastedPercent (a ratio, 0..1)
    size_bytes: int  # image.sizeBytes
    user_size_bytes: int
    layer_sizes: tuple[int, ...]  # layer[].sizeBytes
    #: ``(path, references, cumulative bytes)``, largest first (image.fileReference)
    inefficient: tuple[tuple[str, int, int], ...]


class _Node:
    __slots__ = ("children", "isdir", "size")

    def __init__(self) -> None:
        self.children: dict[bytes, _Node] = {}
        self.size = 0
        self.isdir = False


def _layer_nodes(t: LayerTable, names: list[bytes]) -> dict[tuple[bytes, ...], tuple[int, bool] | None]:
    """dive's tree of one layer, flat: node components -> ``(size, is_dir)``, ``None`` for implied parents."""
    nodes: dict[tuple[bytes, ...], tuple[int, bool] | None] = {}
    kinds, sizes, paths = t.kind.tolist(), t.size.tolist(), t.path.tolist()
    for k, size, p in zip(kinds, sizes, paths, strict=True):
        comps = tuple(names[p].split(b"/")) if names[p] else ()
        if any(c.startswith(_WHWH) for c in comps):
            continue  # dive drops such paths (aufs bookkeeping) where it meets them
        if k == OPAQUE_KIND:
            payload: tuple[int, bool] | None = None  # the marker itself is dropped, its parents implied
        elif k == WHITEOUT:
            comps = (*comps[:-1], _WH + comps[-1])
            payload = (0, False)
        else:
            payload = (size, k == DIR)
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


def dive_figures(tables: Sequence[LayerTable], names: Sequence[list[bytes]]) -> DiveFigures:
    """dive's efficiency, wasted bytes and sizes of the image whose layers (bottom first) are ``tables``."""
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
    discovered = sum(cum.values())
    efficiency = 1.0 if discovered == 0 else float(sum(low.values())) / float(discovered)
    layer_sizes = tuple(int(t.size.sum()) for t in tables)
    size_bytes = sum(layer_sizes)
    user = sum(layer_sizes[1:])
    inefficient = sorted(
        ((b"/" + b"/".join(k)).decode(errors="surrogateescape"), refs[k], cum[k]) for k in cum if refs[k] >= 2
    )
    inefficient.sort(key=lambda r: r[2], reverse=True)
    wasted = sum(r[2] for r in inefficient)
    # Go's float64 division: x/0 is +Inf, 0/0 is NaN.
    user_pct = float(wasted) / float(user) if user else (math.nan if wasted == 0 else math.inf)
    return DiveFigures(efficiency, wasted, user_pct, size_bytes, user, layer_sizes, tuple(inefficient))
