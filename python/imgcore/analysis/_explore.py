"""``imgcore analyze -i``: an interactive explorer (textual) of an :class:`~imgcore.analysis.Analysis`, dive-like:
the layers on the left (size, what each added, changed and removed, its command), the merged tree as of the
selected layer on the right, each entry marked with what that layer did to it, directory sizes summed, and
filters for added, changed, removed and wasted files.

Keys: up/down (or j/k) pick a layer; tab moves between the panes; ``a`` added, ``c`` changed (modified or
metadata-only), ``r`` removed, ``w`` waste (files a later layer hides), ``x`` everything; ``e`` expands the
whole tree; ``q`` quits.

Invariant: this module only displays; every figure comes from the analysis (it reads nothing itself), and the
tree from :func:`imgcore.analysis.tree.merged_tree` (numpy columns; a directory's children become widgets only
when it is expanded, so a million-file image opens as fast as a small one). It is imported only when ``-i`` is
given, so textual never slows the other commands.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, ListItem, ListView, Static, Tree
from textual.widgets.tree import TreeNode

from imgcore._humanize import human_size
from imgcore.analysis import Analysis
from imgcore.analysis.tables import KIND_NAMES
from imgcore.analysis.tree import MARKS, MergedTree, merged_tree

__all__ = ["Explorer", "run"]

_MARKS = {"added": "+", "modified": "~", "metadata": "m", "same": "=", "deleted": "-", "waste": "w", "": " "}
_FILTERS = {
    "a": ("added", {"added"}),
    "c": ("changed", {"modified", "metadata", "same"}),
    "r": ("removed", {"deleted"}),
    "w": ("waste", {"waste"}),
    "x": ("all", set()),
}


class Explorer(App[None]):
    """The explorer app."""

    TITLE = "imgcore analyze"
    CSS = """
    #layers { width: 46; border: solid $accent; }
    #tree { border: solid $accent; }
    #status { height: 1; }
    """
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        ("q", "quit", "quit"),
        ("a", "filter('a')", "added"),
        ("c", "filter('c')", "changed"),
        ("r", "filter('r')", "removed"),
        ("w", "filter('w')", "waste"),
        ("x", "filter('x')", "all"),
        ("e", "expand", "expand all"),
        Binding("j", "down", "next layer", show=False),
        Binding("k", "up", "previous layer", show=False),
    ]

    def __init__(self, analysis: Analysis) -> None:
        super().__init__()
        self.analysis = analysis
        self.layer = len(analysis.layers) - 1
        self.filter = "x"
        self.nodes: MergedTree | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        items = []
        for s in self.analysis.layers:
            cmd = " ".join(s.command.split())[:60]
            items.append(ListItem(Static(f"{s.index:>2} {human_size(s.bytes):>8}  +{s.added} ~{s.modified} "
                                         f"-{s.deleted} m{s.metadata_only}\n   {cmd}")))  # fmt: skip
        with Horizontal():
            with Vertical(id="layers"):
                yield ListView(*items, initial_index=self.layer, id="layer-list")
            yield Tree("/", id="tree")
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"imgcore analyze {self.analysis.reference}"
        self._refresh_tree()

    def _refresh_tree(self) -> None:
        a = self.analysis
        name, keep = _FILTERS[self.filter]
        self.nodes = merged_tree(a, self.layer, keep)
        tree: Tree[Any] = self.query_one("#tree", Tree)
        tree.clear()
        tree.root.set_label(f"/  [layer {self.layer}, {name}]  {human_size(self.nodes.root_total())}")
        tree.root.data = None
        self._fill(tree.root, None)
        tree.root.expand()
        d = a.dive
        s = a.layers[self.layer]
        self.query_one("#status", Static).update(
            f"filter: {name} | layer {self.layer}: {human_size(s.bytes)} ({human_size(s.compressed_bytes)} "
            f"compressed), wasted {human_size(s.wasted_bytes)} | dive efficiency {d.efficiency * 100:.2f} %, "
            f"wasted {human_size(d.wasted_bytes)}"
        )

    def _fill(self, node: TreeNode[Any], parent: int | None) -> None:
        """Adds the children of tree node ``parent`` (the top level when ``None``) below ``node``; a directory
        gets its own children only when it is expanded."""
        nodes = self.nodes
        assert nodes is not None
        for j in nodes.children(parent):
            kind, mark, layer = KIND_NAMES[int(nodes.kind[j])], MARKS.get(int(nodes.mark[j]), ""), int(nodes.layer[j])
            subtree = nodes.has_children(j)
            shown = int(nodes.total[j]) if subtree else int(nodes.size[j])
            label = f"{_MARKS.get(mark, ' ')} {nodes.name(j)}{'/' if kind == 'dir' else ''}  {human_size(shown)}"
            if layer >= 0:
                label += f"  [L{layer}]"
            if subtree:
                branch = node.add(label, data=j)
                branch.allow_expand = True
            else:
                node.add_leaf(label, data=None)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Any]) -> None:
        node = event.node
        if node.data is not None and not node.children:
            self._fill(node, node.data)

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        index = event.list_view.index
        if index is not None and index != self.layer:
            self.layer = index
            self._refresh_tree()

    def action_filter(self, key: str) -> None:
        self.filter = key
        self._refresh_tree()

    def action_expand(self) -> None:
        root = self.query_one("#tree", Tree).root
        todo = [root]
        while todo:
            node = todo.pop()
            if node.data is not None and not node.children:
                self._fill(node, node.data)
            todo.extend(node.children)
        root.expand_all()

    def action_down(self) -> None:
        self.query_one("#layer-list", ListView).action_cursor_down()

    def action_up(self) -> None:
        self.query_one("#layer-list", ListView).action_cursor_up()


def run(analysis: Analysis) -> None:
    """Runs the explorer on the terminal until the user quits."""
    Explorer(analysis).run()
