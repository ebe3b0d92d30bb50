"""The merged tree as of one layer (the explorer's view, dive's layer view) as numpy columns, built in Rust
(``_core.merged_tree``) from the tables and the union replay, so a million-file image is shown without a Python
object per path: names are decoded only for the nodes on screen.

Invariants: the tree holds exactly :meth:`imgcore.analysis.Analysis.tree_at`'s rows, nested by path component,
plus every ancestor as a node (an implied directory has layer -1); with a filter, only rows whose mark passes and
their ancestors; ``total`` is the bytes of the files in a node's subtree; children are in name order (``/``
sorting first, as a path's components compare).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from imgcore._core import merged_tree as _core_merged_tree
from imgcore.analysis import CHANGE_NAMES, Analysis
from imgcore.analysis._rows import texts

__all__ = ["MARKS", "MergedTree", "merged_tree"]

#: mark code -> name (the change codes of ``figures``, and waste).
MARKS = {**{k: v for k, v in CHANGE_NAMES.items() if v != "opaque"}, 7: "waste"}
_CODES = {v: k for k, v in MARKS.items()}


@dataclass(frozen=True)
class MergedTree:
    """Nodes in depth-first order; node ``i``'s subtree is ``i + 1 .. end[i]``."""

    strings: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.uint64]
    kind: npt.NDArray[np.uint8]
    size: npt.NDArray[np.uint64]
    layer: npt.NDArray[np.int32]
    mark: npt.NDArray[np.uint8]
    depth: npt.NDArray[np.uint32]
    end: npt.NDArray[np.uint32]
    total: npt.NDArray[np.uint64]

    def __len__(self) -> int:
        return len(self.kind)

    def path(self, i: int) -> str:
        """Node ``i``'s path, with a leading ``/``."""
        return texts(self.strings, self.offsets, [i])[0]

    def name(self, i: int) -> str:
        """Node ``i``'s last component."""
        return self.path(i).rpartition("/")[2]

    def children(self, i: int | None = None) -> Iterator[int]:
        """The nodes directly below node ``i`` (the top-level nodes when ``None``), in name order."""
        j, stop = (0, len(self)) if i is None else (i + 1, int(self.end[i]))
        while j < stop:
            yield j
            j = int(self.end[j])

    def has_children(self, i: int) -> bool:
        """Whether node ``i`` has a node below it."""
        return int(self.end[i]) > i + 1

    def root_total(self) -> int:
        """Bytes of every file in the tree."""
        return int(self.total[self.depth == 0].sum())


def merged_tree(analysis: Analysis, layer: int, marks: Iterable[str] = ()) -> MergedTree:
    """The tree as of ``layer``, keeping only rows marked with one of ``marks`` (and their parents) when given."""
    keep = 0
    for name in marks:
        keep |= 1 << _CODES[name]
    fates = analysis.merge
    cols = _core_merged_tree([t.columns() for t in analysis.tables], list(fates.shadowed_by), list(fates.changes),
                             layer, keep)  # fmt: skip
    return MergedTree(**cols)
