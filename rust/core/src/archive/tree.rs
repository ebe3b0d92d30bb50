//! The merged tree as of one layer (what the explorer shows, dive's layer view), built from the per-layer tables
//! and the union replay's fates in one pass, as flat columns in display order.
//!
//! Invariants (the pure twin `imgcore.pure.tree` states the same rules and is tested against this; both equal
//! `Analysis.tree_at` nested by path components):
//! - a row is in the view of layer `index` when its layer is at or below `index` and no layer at or below `index`
//!   hid it; a whiteout of layer `index` itself is shown (marked deleted); opaque markers never are; a path
//!   written twice shows its last writer;
//! - a row of layer `index` is marked with its change, a row of a lower layer with nothing, and a file a later
//!   layer hides is marked waste whatever its layer;
//! - with a filter (`keep`, a bit per mark) only rows whose mark passes are kept, and every ancestor of a kept
//!   row is a node (an ancestor that is not kept itself, or has no row, is an implied directory: layer -1);
//! - nodes are in depth-first order, siblings by name with `/` sorting first (component order); `end[i]` is the
//!   index after node `i`'s subtree and `total[i]` the sizes of the files in it (its own size for a file).

use rustc_hash::FxHashMap;

use super::figures::VISIBLE;
use super::table::{string_at, KIND_DIR, KIND_FILE, KIND_OPAQUE, KIND_WHITEOUT};

/// Mark: a row of a lower layer (nothing this layer did).
pub const MARK_NONE: u8 = 0;
/// Mark: a file that a later layer hides (the change codes of `figures` are the other marks).
pub const MARK_WASTE: u8 = 7;

/// One layer's columns the tree needs, borrowed.
pub struct LayerRows<'a> {
    /// Path index per row (into `names`).
    pub path: &'a [u32],
    /// Kind per row.
    pub kind: &'a [u8],
    /// Size per row.
    pub size: &'a [u64],
    /// The layer that hid each row (`VISIBLE`: none).
    pub shadowed: &'a [i32],
    /// Each row's change.
    pub change: &'a [u8],
    /// The layer's string table: NUL-terminated strings...
    pub strings: &'a [u8],
    /// ...starting at these offsets.
    pub offsets: &'a [u64],
}

impl<'a> LayerRows<'a> {
    /// Row `r`'s path (empty when the string table does not hold it: bad input never panics).
    fn name(&self, r: usize) -> &'a [u8] {
        string_at(self.strings, self.offsets, self.path[r] as usize)
    }
}

/// The tree's nodes, one element per node in each column.
#[derive(Debug, Default)]
pub struct Tree {
    /// Each node's full path (no leading `/`), NUL-joined.
    pub strings: Vec<u8>,
    /// Where each node's path starts in `strings`.
    pub offsets: Vec<u64>,
    /// Kind (an implied directory is `KIND_DIR`).
    pub kind: Vec<u8>,
    /// The row's size (0 for an implied directory).
    pub size: Vec<u64>,
    /// The row's layer (-1: an implied directory).
    pub layer: Vec<i32>,
    /// The row's mark.
    pub mark: Vec<u8>,
    /// Components above the node (0 at the top).
    pub depth: Vec<u32>,
    /// The index after the node's subtree.
    pub end: Vec<u32>,
    /// Sizes of the files in the node's subtree, its own included.
    pub total: Vec<u64>,
}

/// A shown row: `(layer, row, mark)`; `None` for an implied directory.
type Shown = Option<(i32, usize, u8)>;

fn within(dir: &[u8], p: &[u8]) -> bool {
    p.len() > dir.len() && p.starts_with(dir) && p[dir.len()] == b'/'
}

/// The tree as of layer `index` (bottom first), keeping the marks whose bit is set in `keep` (0: every row).
pub fn merged_tree(layers: &[LayerRows<'_>], index: usize, keep: u32) -> Tree {
    let top = i32::try_from(index).unwrap_or(i32::MAX);
    let mut view: FxHashMap<&[u8], (i32, usize, u8)> = FxHashMap::default();
    for (li, t) in layers.iter().enumerate().take(index + 1) {
        for r in 0..t.kind.len() {
            let (k, sh) = (t.kind[r], t.shadowed[r]);
            let alive = sh == VISIBLE || sh > top || (li == index && k == KIND_WHITEOUT);
            let name = t.name(r);
            if !alive || k == KIND_OPAQUE || name.is_empty() {
                continue;
            }
            let mut mark = if li == index { t.change[r] } else { MARK_NONE };
            if k == KIND_FILE && sh != VISIBLE {
                mark = MARK_WASTE;
            }
            view.insert(name, (i32::try_from(li).unwrap_or(i32::MAX), r, mark));
        }
    }
    let kept: Vec<(&[u8], Shown)> = view
        .into_iter()
        .filter(|(_, (_, _, mark))| keep == 0 || keep & (1 << mark) != 0)
        .map(|(p, v)| (p, Some(v)))
        .collect();
    // Component order is byte order with `/` as the lowest byte; no path holds a NUL (the table refuses one),
    // so the keys map `/` to NUL once and sort with plain slice comparisons.
    let mut keys: Vec<u8> = Vec::with_capacity(kept.iter().map(|(p, _)| p.len()).sum());
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(kept.len());
    for (p, _) in &kept {
        spans.push((keys.len(), p.len()));
        keys.extend(p.iter().map(|&c| if c == b'/' { 0 } else { c }));
    }
    let mut order: Vec<usize> = (0..kept.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        let ((sa, la), (sb, lb)) = (spans[a], spans[b]);
        keys[sa..sa + la].cmp(&keys[sb..sb + lb])
    });
    let mut out = Tree::default();
    // The open directories (node index, path); a node is closed when a path outside it comes.
    let mut stack: Vec<(usize, &[u8])> = Vec::new();
    for i in order {
        let (p, row) = kept[i];
        while stack.last().is_some_and(|&(_, dir)| !within(dir, p)) {
            close(&mut out, &mut stack);
        }
        // Ancestors with no node yet (no row, or filtered out) come in as implied directories.
        let from = stack.last().map_or(0, |&(_, dir)| dir.len() + 1);
        for (j, &c) in p.iter().enumerate().skip(from) {
            if c == b'/' {
                push(&mut out, &mut stack, layers, &p[..j], None);
            }
        }
        push(&mut out, &mut stack, layers, p, row);
    }
    while !stack.is_empty() {
        close(&mut out, &mut stack);
    }
    out
}

fn push<'a>(out: &mut Tree, stack: &mut Vec<(usize, &'a [u8])>, layers: &[LayerRows<'_>], p: &'a [u8], row: Shown) {
    let (kind, size, layer, mark) = match row {
        Some((li, r, mark)) => {
            let t = &layers[li.unsigned_abs() as usize];
            (t.kind[r], t.size[r], li, mark)
        }
        None => (KIND_DIR, 0, -1, MARK_NONE),
    };
    out.offsets.push(out.strings.len() as u64);
    out.strings.extend_from_slice(p);
    out.strings.push(0);
    out.kind.push(kind);
    out.size.push(size);
    out.layer.push(layer);
    out.mark.push(mark);
    out.depth.push(u32::try_from(stack.len()).unwrap_or(u32::MAX));
    out.end.push(0);
    out.total.push(if kind == KIND_FILE { size } else { 0 });
    stack.push((out.kind.len() - 1, p));
}

fn close(out: &mut Tree, stack: &mut Vec<(usize, &[u8])>) {
    if let Some((done, _)) = stack.pop() {
        out.end[done] = u32::try_from(out.kind.len()).unwrap_or(u32::MAX);
        if let Some(&(up, _)) = stack.last() {
            out.total[up] += out.total[done];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::figures::{ADDED, MODIFIED};

    fn table(names: &[&str]) -> (Vec<u8>, Vec<u64>) {
        let (mut strings, mut offsets) = (Vec::new(), Vec::new());
        for n in names {
            offsets.push(strings.len() as u64);
            strings.extend_from_slice(n.as_bytes());
            strings.push(0);
        }
        (strings, offsets)
    }

    #[test]
    fn nodes_in_component_order_with_implied_parents_and_sums() {
        // Layer 0: a/f (10), a.b (5), d/x (3, hidden by layer 1). Layer 1: d/x again (4, new content), n/m (2)
        // without its parent directory.
        let (s0, o0) = table(&["a", "a/f", "a.b", "d", "d/x"]);
        let (s1, o1) = table(&["d/x", "n/m"]);
        let l0 = LayerRows {
            path: &[0, 1, 2, 3, 4],
            kind: &[KIND_DIR, KIND_FILE, KIND_FILE, KIND_DIR, KIND_FILE],
            size: &[0, 10, 5, 0, 3],
            shadowed: &[VISIBLE, VISIBLE, VISIBLE, VISIBLE, 1],
            change: &[ADDED; 5],
            strings: &s0,
            offsets: &o0,
        };
        let l1 = LayerRows {
            path: &[0, 1],
            kind: &[KIND_FILE, KIND_FILE],
            size: &[4, 2],
            shadowed: &[VISIBLE, VISIBLE],
            change: &[MODIFIED, ADDED],
            strings: &s1,
            offsets: &o1,
        };
        let layers = [l0, l1];
        let t = merged_tree(&layers, 1, 0);
        let paths: Vec<&[u8]> = t.strings.split(|&b| b == 0).take(t.kind.len()).collect();
        assert_eq!(paths, vec![&b"a"[..], b"a/f", b"a.b", b"d", b"d/x", b"n", b"n/m"]);
        assert_eq!(t.strings, b"a\0a/f\0a.b\0d\0d/x\0n\0n/m\0");
        assert_eq!(t.depth, vec![0, 1, 0, 0, 1, 0, 1]);
        assert_eq!(t.end, vec![2, 2, 3, 5, 5, 7, 7]);
        assert_eq!(t.total, vec![10, 10, 5, 4, 4, 2, 2]);
        assert_eq!(t.layer, vec![0, 0, 0, 0, 1, -1, 1]);
        assert_eq!(t.mark, vec![0, 0, 0, 0, MODIFIED, 0, ADDED]);
        // As of layer 0, d/x is there and is waste; a filter on waste keeps it and its parent only.
        let t = merged_tree(&layers[..1], 0, 1 << MARK_WASTE);
        assert_eq!(t.kind.len(), 2);
        assert_eq!((t.layer[0], t.mark[1], t.total[0]), (-1, MARK_WASTE, 3));
    }
}
