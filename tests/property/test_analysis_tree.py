"""The explorer's merged tree (``_core.merged_tree``): on random layer stacks (whiteouts, opaque markers, rewrites,
hardlinks, symlinks), for every layer and every filter, the Rust tree equals its pure twin column for column, and
both hold exactly ``Analysis.tree_at``'s rows nested by path component: every ancestor a node (implied when it has
no row or does not pass the filter), depth-first with siblings in name order, subtree ends and file-byte totals
right."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings

import imgcore
import imgcore.pure.tree
from imgcore.analysis import Analysis
from imgcore.analysis.tables import KIND_NAMES, LayerTable
from imgcore.analysis.tree import MARKS, MergedTree, merged_tree
from tests.strategies import Layer, Node, layer_stacks, write_blobs

FILTERS = [(), ("added",), ("modified", "metadata", "same"), ("deleted",), ("waste",)]
CODES = {v: k for k, v in MARKS.items()}


def _oracle(a: Analysis, index: int, marks: tuple[str, ...]) -> list[tuple[str, str, int, int, str, int]]:
    """``(path, kind, size, layer, mark, total)`` per node, from ``tree_at`` (the explorer's former nesting)."""
    rows = {p: (k, s, li, m) for p, k, s, li, m in a.tree_at(index) if not marks or m in marks}
    nodes: dict[str, tuple[str, int, int, str]] = dict(rows)
    for p in rows:
        while p.count("/") > 1:
            p = p.rpartition("/")[0]
            nodes.setdefault(p, ("dir", 0, -1, ""))
    order = sorted(nodes, key=lambda p: p.split("/"))
    out = []
    for p in order:
        k, s, li, m = nodes[p]
        total = sum(v[1] for q, v in nodes.items() if (q == p or q.startswith(p + "/")) and v[0] == "file")
        out.append((p, k, s, li, m, total))
    return out


def _nodes(t: MergedTree) -> list[tuple[str, str, int, int, str, int]]:
    return [(t.path(i), KIND_NAMES[int(t.kind[i])], int(t.size[i]), int(t.layer[i]), MARKS[int(t.mark[i])],
             int(t.total[i])) for i in range(len(t))]  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(stack=layer_stacks())
def test_rust_twin_and_tree_at_agree(stack: tuple[list[Layer], dict[str, Node]]) -> None:
    layers, _ = stack
    with tempfile.TemporaryDirectory() as tmp:
        blobs = write_blobs(layers, Path(tmp))
        read = imgcore._core.layer_tables([(b, None) for b in blobs])
        tables = [LayerTable.from_columns(c, str(b)) for c, b in zip(read, blobs, strict=True)]
    a = Analysis(None, tables)  # type: ignore[arg-type]  # tree_at reads only the tables and their replay
    cols = [t.columns() for t in tables]
    m = a.merge
    for index in range(len(tables)):
        for marks in FILTERS:
            keep = sum(1 << CODES[x] for x in marks)
            rust = imgcore._core.merged_tree(cols, list(m.shadowed_by), list(m.changes), index, keep)
            pure = imgcore.pure.tree.merged_tree(cols, list(m.shadowed_by), list(m.changes), index, keep)
            assert rust.keys() == pure.keys()
            for k, v in rust.items():
                assert v.dtype == pure[k].dtype, k
                assert np.array_equal(v, pure[k]), k
            t = merged_tree(a, index, marks)
            assert _nodes(t) == _oracle(a, index, marks)
            # end[] is the subtree: the next node that is not below this one.
            paths = [t.path(i) for i in range(len(t))]
            for i, p in enumerate(paths):
                below = [j for j in range(i + 1, len(t)) if paths[j].startswith(p + "/")]
                assert int(t.end[i]) == (below[-1] + 1 if below else i + 1)
                assert int(t.depth[i]) == p.count("/") - 1
            top = [i for i in range(len(t)) if t.depth[i] == 0]
            assert list(t.children()) == top
