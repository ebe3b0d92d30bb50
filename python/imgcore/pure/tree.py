"""Pure twin of ``_core.merged_tree``: the merged tree as of one layer, in the same columns and order.

The rules (the Rust module ``rust/core/src/archive/tree.rs`` states them too): a row is in the view of layer
``index`` when its layer is at or below ``index`` and no layer at or below ``index`` hid it; a whiteout of layer
``index`` itself is shown, opaque markers never are; a path written twice shows its last writer; rows of layer
``index`` carry their change, lower rows no mark, and a file a later layer hides is waste (7). A filter keeps the
marks whose bit is set in ``keep`` (0: all), and every ancestor of a kept row is a node (an implied directory,
layer -1, when it is not kept itself). Nodes are depth-first, siblings by name with ``/`` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["merged_tree"]

_FILE, _DIR, _WHITEOUT, _OPAQUE = 0, 1, 7, 8
_VISIBLE, _NONE, _WASTE = -1, 0, 7


def _order(p: bytes) -> list[list[int]]:
    return [list(c) for c in p.split(b"/")]


def merged_tree(
    tables: Sequence[dict[str, Any]], shadowed: Sequence[Any], changes: Sequence[Any], index: int, keep: int
) -> dict[str, Any]:
    """See ``imgcore._core.merged_tree``."""
    if not len(shadowed) == len(changes) == len(tables):
        raise ValueError("merged_tree: one shadowed_by and one changes array per table")
    if not 0 <= index < len(tables):
        raise ValueError(f"merged_tree: layer {index} of {len(tables)}")
    view: dict[bytes, tuple[int, int, int]] = {}
    for li in range(index + 1):
        d = tables[li]
        raw = np.asarray(d["strings"]).tobytes()
        names = raw.split(b"\0")[:-1] if raw else []
        paths, kinds = np.asarray(d["path"]).tolist(), np.asarray(d["kind"]).tolist()
        shs, chs = np.asarray(shadowed[li]).tolist(), np.asarray(changes[li]).tolist()
        for r, (p, k, sh, ch) in enumerate(zip(paths, kinds, shs, chs, strict=True)):
            alive = sh == _VISIBLE or sh > index or (li == index and k == _WHITEOUT)
            if not alive or k == _OPAQUE or not names[p]:
                continue
            mark = ch if li == index else _NONE
            if k == _FILE and sh != _VISIBLE:
                mark = _WASTE
            view[names[p]] = (li, r, mark)
    nodes: dict[bytes, tuple[int, int, int] | None] = {p: v for p, v in view.items() if keep == 0 or keep & (1 << v[2])}
    for p in list(nodes):
        while b"/" in p:
            p = p.rpartition(b"/")[0]
            nodes.setdefault(p, None)
    order = sorted(nodes, key=_order)
    cols: dict[str, list[int]] = {k: [] for k in ("offsets", "kind", "size", "layer", "mark", "depth", "end", "total")}
    strings = bytearray()
    stack: list[int] = []

    def close(at: int) -> None:
        done = stack.pop()
        cols["end"][done] = at
        if stack:
            cols["total"][stack[-1]] += cols["total"][done]

    for i, p in enumerate(order):
        while stack and not p.startswith(order[stack[-1]] + b"/"):
            close(i)
        cols["offsets"].append(len(strings))
        strings += p + b"\0"
        row = nodes[p]
        if row is None:
            kind, size, layer, mark = _DIR, 0, -1, _NONE
        else:
            li, r, mark = row
            kind, size, layer = int(tables[li]["kind"][r]), int(tables[li]["size"][r]), li
        for k, v in (("kind", kind), ("size", size), ("layer", layer), ("mark", mark), ("depth", len(stack)),
                     ("end", 0), ("total", size if kind == _FILE else 0)):  # fmt: skip
            cols[k].append(v)
        stack.append(i)
    while stack:
        close(len(order))
    dtypes = {"offsets": np.uint64, "kind": np.uint8, "size": np.uint64, "layer": np.int32, "mark": np.uint8,
              "depth": np.uint32, "end": np.uint32, "total": np.uint64}  # fmt: skip
    out: dict[str, Any] = {"strings": np.frombuffer(bytes(strings), dtype=np.uint8).copy()}
    out.update({k: np.asarray(v, dtype=dtypes[k]) for k, v in cols.items()})
    return out
