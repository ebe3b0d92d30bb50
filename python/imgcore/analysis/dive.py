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

The tree walk itself runs in Rust (``rust/core/src/archive/figures.rs``, through ``_core.image_pass``; its pure
twin is ``imgcore.pure.analysis.image_pass``); this module turns its sums into dive's figures. The inefficient
paths stay columns (:class:`InefficientPaths`): a path's text is made only when it is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from imgcore.analysis._rows import Rows, texts
from imgcore.analysis.figures import Inefficient
from imgcore.analysis.tables import LayerTable

__all__ = ["DiveFigures", "InefficientPaths", "dive_figures"]


class InefficientPaths(Rows[tuple[str, int, int]]):
    """dive's ``(path, references, cumulative bytes)`` rows, made from ``image_pass``' columns when read."""

    def __init__(self, cols: Inefficient) -> None:
        super().__init__(len(cols.refs))
        self.cols = cols

    def chunk(self, start: int, stop: int) -> list[tuple[str, int, int]]:
        """Items ``start`` to ``stop``, made from their fields."""
        return self.fields(start, stop)

    def fields(self, start: int, stop: int) -> list[tuple[str, int, int]]:
        """The fields of items ``start`` to ``stop``, read from the columns."""
        c = self.cols
        paths = texts(c.strings, c.offsets, range(start, stop), prefix="")
        return list(zip(paths, c.refs[start:stop].tolist(), c.sizes[start:stop].tolist(), strict=True))


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
    inefficient: InefficientPaths


def dive_figures(tables: Sequence[LayerTable], minimum: int, discovered: int, inefficient: Inefficient) -> DiveFigures:
    """dive's figures of the image whose layers (bottom first) are ``tables``, from ``image_pass``' sums."""
    efficiency = 1.0 if discovered == 0 else float(minimum) / float(discovered)
    layer_sizes = tuple(int(t.size.sum()) for t in tables)
    size_bytes = sum(layer_sizes)
    user = sum(layer_sizes[1:])
    wasted = int(inefficient.sizes.sum())
    # Go's float64 division: x/0 is +Inf, 0/0 is NaN.
    user_pct = float(wasted) / float(user) if user else (math.nan if wasted == 0 else math.inf)
    return DiveFigures(efficiency, wasted, user_pct, size_bytes, user, layer_sizes, InefficientPaths(inefficient))
