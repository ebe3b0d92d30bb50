//! Image-wide passes over the per-layer tables of [`super::table`]: the union replay that decides each row's
//! change and fate (`merge`), and dive 0.13's efficiency figures (`dive`), both linear in the rows.
//!
//! Invariants (the pure twin `imgcore.pure.analysis` states the same rules and is tested against this):
//! - `merge` follows extraction's union rules over the literal paths: a whiteout or opaque marker removes only
//!   what lower layers (or this layer, before it wrote there) put there; a path written again hides the copy
//!   below it (a directory replaced by a non-directory hides its subtree); every row's change is one of
//!   `ADDED`, `MODIFIED`, `DELETED`, `OPAQUE`, `METADATA` (content equal, metadata not), `SAME`;
//! - `dive` restates dive's `filetree/efficiency.go` with its quirks (see `imgcore/analysis/dive.py` for the
//!   prose): per-layer trees with implied parents, only leaves visited, whiteouts sized from the stack below
//!   (layer 0 stacked onto itself), a whiteout of a missing path ending its layer's visit with a -1 minimum.

use rayon::slice::ParallelSliceMut;
use rustc_hash::{FxHashMap, FxHashSet};

use super::table::{KIND_DIR, KIND_FILE, KIND_HARDLINK, KIND_OPAQUE, KIND_SYMLINK, KIND_WHITEOUT};

/// Change: the path did not exist below.
pub const ADDED: u8 = 1;
/// Change: new content (or another kind) over a lower copy.
pub const MODIFIED: u8 = 2;
/// Change: a whiteout.
pub const DELETED: u8 = 3;
/// Change: an opaque marker.
pub const OPAQUE: u8 = 4;
/// Change: the same content as the copy below, other metadata (chmod, chown, touch, xattrs).
pub const METADATA: u8 = 5;
/// Change: an identical copy of the one below (directories: mtime ignored).
pub const SAME: u8 = 6;
/// `shadowed_by` of a row the final image shows.
pub const VISIBLE: i32 = -1;

/// One layer's columns, borrowed (from numpy arrays or a [`super::table::LayerTable`]).
pub struct TableRef<'a> {
    /// Path index per row.
    pub path: &'a [u32],
    /// Kind per row.
    pub kind: &'a [u8],
    /// Size per row.
    pub size: &'a [u64],
    /// Mode per row.
    pub mode: &'a [u32],
    /// Owner per row.
    pub uid: &'a [u32],
    /// Group per row.
    pub gid: &'a [u32],
    /// Mtime per row.
    pub mtime: &'a [i64],
    /// 32 bytes per row.
    pub sha256: &'a [u8],
    /// Link index per row (-1 none).
    pub link: &'a [i32],
    /// Xattr hash per row.
    pub xattr_hash: &'a [u64],
    /// The string table, split.
    pub names: Vec<&'a [u8]>,
}

impl<'a> TableRef<'a> {
    /// Splits a NUL-joined string table (as the table reader writes it) into its strings.
    pub fn split_strings(strings: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out: Vec<&[u8]> = strings.split(|&b| b == 0).collect();
        out.pop(); // after the last NUL
        out
    }

    fn name(&self, r: usize) -> &'a [u8] {
        self.names.get(self.path[r] as usize).copied().unwrap_or_default()
    }

    fn content(&self, r: usize) -> (u8, &'a [u8]) {
        let k = self.kind[r];
        match k {
            KIND_FILE => (k, &self.sha256[32 * r..32 * r + 32]),
            KIND_SYMLINK | KIND_HARDLINK => (
                k,
                usize::try_from(self.link[r])
                    .ok()
                    .and_then(|i| self.names.get(i).copied())
                    .unwrap_or_default(),
            ),
            _ => (k, &[]),
        }
    }
}

/// What `merge` decided.
#[derive(Debug, Default)]
pub struct Merge {
    /// Per layer, each row's change.
    pub changes: Vec<Vec<u8>>,
    /// Per layer, the layer that hid each row (`VISIBLE` when the final image shows it).
    pub shadowed_by: Vec<Vec<i32>>,
    /// Per layer, the layer of the copy each row replaced (-1: none).
    pub prev_layer: Vec<Vec<i32>>,
    /// Per layer, the row of the copy each row replaced (in `prev_layer`).
    pub prev_row: Vec<Vec<u32>>,
    /// Per layer, an image-wide id of each row's path: equal paths, equal ids, and the ids follow the paths'
    /// text order ([`text_order`]), so sorting by id sorts by path.
    pub path_id: Vec<Vec<u32>>,
}

/// Orders byte strings as Python orders their `surrogateescape` decodings, code point by code point: valid
/// UTF-8 compares bytewise (UTF-8 keeps code point order), an invalid byte `b` stands for U+DC00+b.
/// `a_valid`/`b_valid` say whether each is valid UTF-8 (computed once per string by the caller).
pub fn text_order(a: &[u8], a_valid: bool, b: &[u8], b_valid: bool) -> std::cmp::Ordering {
    fn code_points(s: &[u8]) -> impl Iterator<Item = u32> + '_ {
        s.utf8_chunks().flat_map(|c| {
            c.valid()
                .chars()
                .map(u32::from)
                .chain(c.invalid().iter().map(|&b| 0xDC00 + u32::from(b)))
        })
    }
    if a_valid && b_valid {
        a.cmp(b)
    } else {
        code_points(a).cmp(code_points(b))
    }
}

/// Renumbers `path_id` so that ids follow the paths' text order (`ids`: path -> id in order of appearance).
fn renumber_by_text(ids: FxHashMap<&[u8], u32>, path_id: &mut [Vec<u32>]) {
    let mut keys: Vec<(&[u8], bool, u32)> = ids
        .into_iter()
        .map(|(p, i)| (p, std::str::from_utf8(p).is_ok(), i))
        .collect();
    keys.par_sort_unstable_by(|a, b| text_order(a.0, a.1, b.0, b.1));
    let mut rank = vec![0u32; keys.len()];
    for (new, &(_, _, old)) in keys.iter().enumerate() {
        rank[old as usize] = u32::try_from(new).unwrap_or(u32::MAX);
    }
    drop(keys);
    for ids in path_id {
        for x in ids.iter_mut() {
            *x = rank[*x as usize];
        }
    }
}

fn parent(p: &[u8]) -> &[u8] {
    p.iter().rposition(|&b| b == b'/').map_or(&[][..], |i| &p[..i])
}

/// Replays the layers (bottom first).
#[allow(clippy::many_single_char_names)] // t(able), r(ow), k(ind), p(ath), q, m(erge): the twin's names
pub fn merge(tables: &[TableRef<'_>]) -> Merge {
    let mut view: FxHashMap<&[u8], (usize, usize)> = FxHashMap::default();
    let mut children: FxHashMap<&[u8], FxHashSet<&[u8]>> = FxHashMap::default();
    let mut m = Merge::default();
    for t in tables {
        let n = t.kind.len();
        m.changes.push(vec![0; n]);
        m.shadowed_by.push(vec![VISIBLE; n]);
        m.prev_layer.push(vec![-1; n]);
        m.prev_row.push(vec![0; n]);
        m.path_id.push(vec![0; n]);
    }
    let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
    for (li, t) in tables.iter().enumerate() {
        let mut kept: FxHashSet<&[u8]> = FxHashSet::default();
        let by = i32::try_from(li).unwrap_or(i32::MAX);
        for r in 0..t.kind.len() {
            let k = t.kind[r];
            let p = t.name(r);
            let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
            m.path_id[li][r] = *ids.entry(p).or_insert(next);
            if k == KIND_WHITEOUT || k == KIND_OPAQUE {
                m.changes[li][r] = if k == KIND_WHITEOUT { DELETED } else { OPAQUE };
                let mut todo: Vec<&[u8]> = if k == KIND_WHITEOUT {
                    vec![p]
                } else {
                    children.get(p).map(|s| s.iter().copied().collect()).unwrap_or_default()
                };
                while let Some(q) = todo.pop() {
                    if kept.contains(q) {
                        continue;
                    }
                    if let Some((hl, hr)) = view.remove(q) {
                        m.shadowed_by[hl][hr] = by;
                        if let Some(s) = children.get_mut(parent(q)) {
                            s.remove(q);
                        }
                    }
                    if let Some(s) = children.remove(q) {
                        todo.extend(s);
                    }
                }
                continue;
            }
            kept.insert(p);
            let mut q = p;
            while q.contains(&b'/') {
                q = parent(q);
                if !kept.insert(q) {
                    break;
                }
            }
            if let Some(&(ol, orow)) = view.get(p) {
                let o = &tables[ol];
                if o.content(orow) == t.content(r) {
                    let same_meta = (o.mode[orow], o.uid[orow], o.gid[orow], o.xattr_hash[orow])
                        == (t.mode[r], t.uid[r], t.gid[r], t.xattr_hash[r])
                        && (k == KIND_DIR || o.mtime[orow] == t.mtime[r]);
                    m.changes[li][r] = if same_meta { SAME } else { METADATA };
                } else {
                    m.changes[li][r] = MODIFIED;
                    if o.kind[orow] == KIND_DIR && k != KIND_DIR {
                        // The directory's subtree goes with it.
                        let mut todo: Vec<&[u8]> =
                            children.remove(p).map(|s| s.into_iter().collect()).unwrap_or_default();
                        while let Some(q) = todo.pop() {
                            if let Some((hl, hr)) = view.remove(q) {
                                m.shadowed_by[hl][hr] = by;
                            }
                            if let Some(s) = children.remove(q) {
                                todo.extend(s);
                            }
                        }
                    }
                }
                m.shadowed_by[ol][orow] = by;
                m.prev_layer[li][r] = i32::try_from(ol).unwrap_or(i32::MAX);
                m.prev_row[li][r] = u32::try_from(orow).unwrap_or(u32::MAX);
            } else {
                m.changes[li][r] = ADDED;
                children.entry(parent(p)).or_default().insert(p);
            }
            view.insert(p, (li, r));
        }
    }
    drop((view, children));
    renumber_by_text(ids, &mut m.path_id);
    m
}

/// dive's figures.
#[derive(Debug, Default, PartialEq)]
pub struct Dive {
    /// Sum of the per-path minima (a path left at dive's -1 counts -1).
    pub minimum: i64,
    /// Sum of the per-path cumulative sizes.
    pub discovered: i64,
    /// Paths seen in two layers or more: `(path with a leading slash, references, cumulative size)`.
    pub inefficient: Vec<(Vec<u8>, u32, i64)>,
}

/// A node's payload: `(size, is_dir)`, `None` for an implied parent.
type Payload = Option<(i64, bool)>;
/// One layer's dive tree, flat: node path -> payload.
type Nodes<'a> = FxHashMap<&'a [u8], Payload>;

#[derive(Default)]
struct Node<'a> {
    children: FxHashMap<&'a [u8], Node<'a>>,
    size: i64,
    isdir: bool,
}

const WH: &[u8] = b".wh.";
const WHWH: &[u8] = b".wh..wh.";

/// Orders paths as dive visits them: component by component (a `/` sorts before any other byte).
fn by_components(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let key = |c: u8| if c == b'/' { 0 } else { u16::from(c) + 1 };
    match (a.get(same), b.get(same)) {
        (Some(&x), Some(&y)) => key(x).cmp(&key(y)),
        _ => a.len().cmp(&b.len()),
    }
}

fn last_name(p: &[u8]) -> &[u8] {
    p.iter().rposition(|&b| b == b'/').map_or(p, |i| &p[i + 1..])
}

fn is_whiteout_node(p: &[u8]) -> bool {
    last_name(p).starts_with(WH)
}

/// dive's tree of one layer, flat and keyed by path (a whiteout's node is `dir/.wh.NAME`, from `wh_paths`:
/// `(row, node path)` for each whiteout row, in row order). Also returns each whiteout node's target path.
fn layer_nodes<'a>(t: &TableRef<'a>, wh_paths: &'a [(usize, Vec<u8>)]) -> (Nodes<'a>, FxHashMap<&'a [u8], &'a [u8]>) {
    let mut nodes: FxHashMap<&'a [u8], Payload> = FxHashMap::default();
    let mut targets: FxHashMap<&'a [u8], &'a [u8]> = FxHashMap::default();
    let mut wh = wh_paths.iter().peekable();
    for r in 0..t.kind.len() {
        let k = t.kind[r];
        let name: &'a [u8] = if k == KIND_WHITEOUT {
            match wh.next_if(|(row, _)| *row == r) {
                Some((_, p)) => {
                    targets.insert(p.as_slice(), t.name(r));
                    p.as_slice()
                }
                None => continue,
            }
        } else {
            t.name(r)
        };
        if name.split(|&b| b == b'/').any(|c| c.starts_with(WHWH)) {
            continue;
        }
        let payload = match k {
            KIND_OPAQUE => None,
            KIND_WHITEOUT => Some((0, false)),
            _ => Some((i64::try_from(t.size[r]).unwrap_or(i64::MAX), k == KIND_DIR)),
        };
        let mut end = name.len();
        while let Some(i) = name[..end].iter().rposition(|&b| b == b'/') {
            if nodes.contains_key(&name[..i]) {
                break;
            }
            nodes.insert(&name[..i], None);
            end = i;
        }
        if payload.is_some() {
            nodes.insert(name, payload);
        } else if !name.is_empty() {
            nodes.entry(name).or_insert(None);
        }
    }
    (nodes, targets)
}

fn leaves<'a>(nodes: &FxHashMap<&'a [u8], Payload>) -> Vec<&'a [u8]> {
    let parents: FxHashSet<&[u8]> = nodes.keys().map(|p| parent(p)).collect();
    nodes.keys().filter(|p| !parents.contains(*p)).copied().collect()
}

fn get<'n, 'a>(root: &'n Node<'a>, path: &[u8]) -> Option<&'n Node<'a>> {
    let mut node = root;
    for c in path.split(|&b| b == b'/') {
        node = node.children.get(c)?;
    }
    Some(node)
}

fn get_mut<'n, 'a>(root: &'n mut Node<'a>, path: &[u8]) -> Option<&'n mut Node<'a>> {
    let mut node = root;
    if path.is_empty() {
        return Some(node);
    }
    for c in path.split(|&b| b == b'/') {
        node = node.children.get_mut(c)?;
    }
    Some(node)
}

fn subtree_size(node: &Node<'_>) -> i64 {
    let mut total = 0;
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        total += n.size;
        todo.extend(n.children.values());
    }
    total
}

fn add<'a>(root: &mut Node<'a>, path: &'a [u8], payload: Payload) {
    let mut node = root;
    for c in path.split(|&b| b == b'/') {
        if !node.children.contains_key(c) && c.starts_with(WHWH) {
            return;
        }
        node = node.children.entry(c).or_default();
    }
    (node.size, node.isdir) = payload.unwrap_or((0, false));
}

fn stack<'a>(root: &mut Node<'a>, nodes: &FxHashMap<&'a [u8], Payload>) {
    // Deepest first, children in name order: sorted by components, each parent after its subtree.
    let mut sorted: Vec<&'a [u8]> = nodes.keys().copied().collect();
    sorted.sort_unstable_by(|a, b| by_components(a, b));
    let mut order: Vec<&'a [u8]> = Vec::with_capacity(sorted.len());
    let mut open: Vec<&'a [u8]> = Vec::new();
    for p in sorted {
        while open
            .last()
            .is_some_and(|top| !(p.starts_with(top) && p.get(top.len()) == Some(&b'/')))
        {
            order.extend(open.pop());
        }
        open.push(p);
    }
    order.extend(open.into_iter().rev());
    for p in order {
        let name = last_name(p);
        if name.starts_with(WH) {
            if let Some(node) = get_mut(root, parent(p)) {
                node.children.remove(&name[WH.len()..]);
            }
        } else {
            add(root, p, nodes[p]);
        }
    }
}

/// `(row, dir/.wh.NAME)` for each whiteout row of a layer: the node dive makes of it.
fn whiteout_nodes(t: &TableRef<'_>) -> Vec<(usize, Vec<u8>)> {
    (0..t.kind.len())
        .filter(|&r| t.kind[r] == KIND_WHITEOUT)
        .map(|r| {
            let p = t.name(r);
            let dir = parent(p);
            let mut v = dir.to_vec();
            if !dir.is_empty() {
                v.push(b'/');
            }
            v.extend_from_slice(WH);
            v.extend_from_slice(last_name(p));
            (r, v)
        })
        .collect()
}

/// dive's efficiency over the layers (bottom first). One layer's tree is held at a time, beside the stack of
/// the layers below (kept only while a later layer has whiteouts to size).
pub fn dive(tables: &[TableRef<'_>]) -> Dive {
    let wh: Vec<Vec<(usize, Vec<u8>)>> = tables.iter().map(whiteout_nodes).collect();
    let last_wh = wh.iter().rposition(|w| !w.is_empty());
    let mut stacked = Node::default(); // before visiting layer i: copy(L0) + L0 + ... + L(i-1)
    let mut cum: FxHashMap<&[u8], (i64, i64, u32)> = FxHashMap::default();
    for (i, t) in tables.iter().enumerate() {
        let (nodes, targets) = layer_nodes(t, &wh[i]);
        if i == 0 && last_wh.is_some() {
            for (p, payload) in &nodes {
                add(&mut stacked, p, *payload);
            }
        }
        let mut ls = leaves(&nodes);
        if ls.iter().any(|p| is_whiteout_node(p)) {
            ls.sort_unstable_by(|a, b| by_components(a, b));
        }
        for p in ls {
            let (key, size) = if let Some(&target) = targets.get(p) {
                let Some(prev) = get(&stacked, target) else {
                    cum.entry(target).or_insert((0, -1, 0));
                    break;
                };
                (target, if prev.isdir { subtree_size(prev) } else { 0 })
            } else {
                (p, nodes.get(p).copied().flatten().map_or(0, |x| x.0))
            };
            let e = cum.entry(key).or_insert((0, -1, 0));
            e.0 += size;
            e.1 = if e.1 < 0 { size } else { e.1.min(size) };
            e.2 += 1;
        }
        if last_wh.is_some_and(|last| i < last) {
            stack(&mut stacked, &nodes);
        }
    }
    let mut out = Dive::default();
    for (path, (c, low, refs)) in cum {
        out.discovered += c;
        out.minimum += low;
        if refs >= 2 {
            let mut p = Vec::with_capacity(path.len() + 1);
            p.push(b'/');
            p.extend_from_slice(path);
            out.inefficient.push((p, refs, c));
        }
    }
    out.inefficient
        .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owned {
        names: Vec<Vec<u8>>,
        path: Vec<u32>,
        kind: Vec<u8>,
        size: Vec<u64>,
        mode: Vec<u32>,
        zero32: Vec<u32>,
        mtime: Vec<i64>,
        sha: Vec<u8>,
        link: Vec<i32>,
        xh: Vec<u64>,
    }

    /// A layer of `(path, kind, size, mode, content byte)` rows.
    fn layer(rows: &[(&str, u8, u64, u32, u8)]) -> Owned {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut path = Vec::new();
        for (p, ..) in rows {
            let i = names.iter().position(|n| n == p.as_bytes()).unwrap_or_else(|| {
                names.push(p.as_bytes().to_vec());
                names.len() - 1
            });
            path.push(u32::try_from(i).unwrap());
        }
        let n = rows.len();
        Owned {
            names,
            path,
            kind: rows.iter().map(|r| r.1).collect(),
            size: rows.iter().map(|r| r.2).collect(),
            mode: rows.iter().map(|r| r.3).collect(),
            zero32: vec![0; n],
            mtime: vec![0; n],
            sha: rows.iter().flat_map(|r| [r.4; 32]).collect(),
            link: vec![-1; n],
            xh: vec![0; n],
        }
    }

    fn view(o: &Owned) -> TableRef<'_> {
        TableRef {
            path: &o.path,
            kind: &o.kind,
            size: &o.size,
            mode: &o.mode,
            uid: &o.zero32,
            gid: &o.zero32,
            mtime: &o.mtime,
            sha256: &o.sha,
            link: &o.link,
            xattr_hash: &o.xh,
            names: o.names.iter().map(Vec::as_slice).collect(),
        }
    }

    #[test]
    fn merge_decides_changes_and_fates() {
        let l0 = layer(&[
            ("a", KIND_DIR, 0, 0o755, 0),
            ("a/f", KIND_FILE, 10, 0o644, 1),
            ("a/g", KIND_FILE, 20, 0o644, 2),
            ("d", KIND_DIR, 0, 0o755, 0),
            ("d/x", KIND_FILE, 5, 0o644, 3),
        ]);
        let l1 = layer(&[
            ("a", KIND_DIR, 0, 0o755, 0),
            ("a/f", KIND_FILE, 10, 0o600, 1), // chmod: same content
            ("a/g", KIND_FILE, 21, 0o644, 9), // new content
            ("d", KIND_WHITEOUT, 0, 0, 0),    // the directory and what is in it
            ("n", KIND_FILE, 1, 0o644, 4),
        ]);
        let m = merge(&[view(&l0), view(&l1)]);
        assert_eq!(m.changes[0], vec![ADDED; 5]);
        assert_eq!(m.changes[1], vec![SAME, METADATA, MODIFIED, DELETED, ADDED]);
        assert_eq!(m.shadowed_by[0], vec![1, 1, 1, 1, 1]);
        assert_eq!(m.shadowed_by[1], vec![VISIBLE; 5]);
        assert_eq!((m.prev_layer[1][1], m.prev_row[1][1]), (0, 1));
        assert_eq!(m.prev_layer[1][4], -1);
        assert_eq!(m.path_id[1][..3], m.path_id[0][..3]);
        // Ids follow the paths' order: a, a/f, a/g, d, d/x, n.
        assert_eq!(m.path_id[0], vec![0, 1, 2, 3, 4]);
        assert_eq!(m.path_id[1], vec![0, 1, 2, 3, 5]);
        let order =
            |a: &[u8], b: &[u8]| text_order(a, std::str::from_utf8(a).is_ok(), b, std::str::from_utf8(b).is_ok());
        assert_eq!(order(b"a\xc0", "a\u{e9}".as_bytes()), std::cmp::Ordering::Greater); // U+DCC0 > U+00E9
        assert_eq!(order(b"a\xc0", b"a\xc1"), std::cmp::Ordering::Less);
        assert_eq!(order(b"a/b", b"a-b"), std::cmp::Ordering::Greater);
    }

    #[test]
    fn dive_counts_as_dive_does() {
        // Two copies of a/f (10 + 10): dive's waste counts both; a whiteout of a missing path in layer 1 stops
        // that layer's visit (b/z sorts after it and is not counted) and leaves a -1 minimum.
        let l0 = layer(&[("a/f", KIND_FILE, 10, 0o644, 1), ("b/y", KIND_FILE, 7, 0o644, 2)]);
        let l1 = layer(&[
            ("a/f", KIND_FILE, 10, 0o600, 1),
            ("b/nothing", KIND_WHITEOUT, 0, 0, 0),
            ("b/z", KIND_FILE, 3, 0o644, 3),
        ]);
        let d = dive(&[view(&l0), view(&l1)]);
        assert_eq!(d.inefficient, vec![(b"/a/f".to_vec(), 2, 20)]);
        assert_eq!(d.discovered, 10 + 7 + 10);
        assert_eq!(d.minimum, 10 + 7 - 1);
        assert_eq!(by_components(b"a/c", b"a.b"), std::cmp::Ordering::Less);
        assert_eq!(by_components(b"a", b"a/b"), std::cmp::Ordering::Less);
    }
}
