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
//!   (layer 0 stacked onto itself), a whiteout of a missing path ending its layer's visit with a -1 minimum;
//! - both run over paths interned once ([`image_pass`]): every row's path, every whiteout's dive node and every
//!   implied parent gets an image-wide id, and the state is arrays indexed by id (the union view, each
//!   directory's added children as linked lists, dive's stack as flags over the static tree of ids with
//!   children sorted by name), never a map or an allocation per path; the tables are read in place;
//! - the `path_id` handed back follows the paths' text order ([`text_order`], Python's order of their
//!   `surrogateescape` decodings), so callers sort by path by sorting ids.

use rayon::slice::ParallelSliceMut;
use rustc_hash::FxHashMap;

use super::table::{string_at, KIND_DIR, KIND_FILE, KIND_HARDLINK, KIND_OPAQUE, KIND_SYMLINK, KIND_WHITEOUT};

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
    /// The string table: every string followed by one NUL byte (as the table reader writes it).
    pub strings: &'a [u8],
    /// Where each string starts in `strings` (read in place: no split copy of the table).
    pub offsets: &'a [u64],
}

impl<'a> TableRef<'a> {
    /// Whether `strings`/`offsets` are a string table as the reader writes it: offsets start at 0 and
    /// increase, and the NUL bytes are exactly the one ending each string.
    pub fn strings_are_valid(strings: &[u8], offsets: &[u64]) -> bool {
        let Some((&first, rest)) = offsets.split_first() else {
            return strings.is_empty();
        };
        let ends = rest.iter().copied().chain(std::iter::once(strings.len() as u64));
        first == 0
            && offsets.iter().zip(ends).all(|(&a, b)| {
                let (Ok(a), Ok(b)) = (usize::try_from(a), usize::try_from(b)) else {
                    return false;
                };
                a < b && b <= strings.len() && strings[b - 1] == 0 && !strings[a..b - 1].contains(&0)
            })
    }

    /// String `i` of the table (empty for an index outside it).
    pub fn string(&self, i: usize) -> &'a [u8] {
        string_at(self.strings, self.offsets, i)
    }

    fn name(&self, r: usize) -> &'a [u8] {
        self.string(self.path[r] as usize)
    }

    fn content(&self, r: usize) -> (u8, &'a [u8]) {
        let k = self.kind[r];
        match k {
            KIND_FILE => (k, &self.sha256[32 * r..32 * r + 32]),
            KIND_SYMLINK | KIND_HARDLINK => (k, usize::try_from(self.link[r]).map_or(&[][..], |i| self.string(i))),
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

const NONE: u32 = u32::MAX;

fn parent(p: &[u8]) -> &[u8] {
    p.iter().rposition(|&b| b == b'/').map_or(&[][..], |i| &p[..i])
}

fn last_name(p: &[u8]) -> &[u8] {
    p.iter().rposition(|&b| b == b'/').map_or(p, |i| &p[i + 1..])
}

fn to_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(NONE)
}

/// Every path the passes name, interned once into image-wide ids: the rows' paths (ids `0..rows`, in order of
/// appearance), the dive nodes of whiteouts (`dir/.wh.NAME`) and every implied parent up to the root `""`.
/// An open-addressing table of ids (the bytes stay in the tables): 4 bytes a slot, no copy of any path.
struct Paths<'a> {
    names: Vec<&'a [u8]>,
    slots: Vec<u32>,
    /// The parent of each id (`NONE` for the root).
    parent: Vec<u32>,
    /// Ids below this are rows' paths.
    rows: usize,
    root: u32,
    /// For an id named `dir/.wh.NAME`, the id of `dir/NAME` (what dive's stacking removes for it) when that
    /// path has one.
    removes: FxHashMap<u32, u32>,
}

impl<'a> Paths<'a> {
    fn slot(&self, s: &[u8]) -> usize {
        let mut h = rustc_hash::FxHasher::default();
        std::hash::Hasher::write(&mut h, s);
        let bits = self.slots.len().trailing_zeros();
        // Fibonacci hashing spreads FxHash's bits over the table.
        let x = std::hash::Hasher::finish(&h).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        usize::try_from(x >> (64 - bits)).unwrap_or(0)
    }

    fn find(&self, s: &[u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = self.slot(s);
        loop {
            let id = self.slots[i];
            if id == NONE {
                return None;
            }
            if self.names[id as usize] == s {
                return Some(id);
            }
            i = (i + 1) & mask;
        }
    }

    fn intern(&mut self, s: &'a [u8]) -> u32 {
        if self.names.len() * 2 >= self.slots.len() {
            let size = (self.slots.len() * 2).max(1024);
            self.slots = vec![NONE; size];
            for (id, name) in self.names.iter().enumerate() {
                let mut i = self.slot(name);
                while self.slots[i] != NONE {
                    i = (i + 1) & (size - 1);
                }
                self.slots[i] = to_u32(id);
            }
        }
        let mask = self.slots.len() - 1;
        let mut i = self.slot(s);
        loop {
            let id = self.slots[i];
            if id == NONE {
                let id = to_u32(self.names.len());
                self.slots[i] = id;
                self.names.push(s);
                return id;
            }
            if self.names[id as usize] == s {
                return id;
            }
            i = (i + 1) & mask;
        }
    }

    /// Interns the rows' paths (into `path_id`, per layer), then `extra` (dive's whiteout nodes), then the
    /// parents of all of them.
    /// Also returns the ids of `extra`'s strings (`extra_offsets`: where each starts, and one more at the end).
    fn new(
        tables: &[TableRef<'a>],
        extra: &'a [u8],
        extra_offsets: &[usize],
        path_id: &mut [Vec<u32>],
    ) -> (Self, Vec<u32>) {
        let mut p = Paths {
            names: Vec::new(),
            slots: Vec::new(),
            parent: Vec::new(),
            rows: 0,
            root: 0,
            removes: FxHashMap::default(),
        };
        for (t, ids) in tables.iter().zip(path_id.iter_mut()) {
            for (r, id) in ids.iter_mut().enumerate() {
                *id = p.intern(t.name(r));
            }
        }
        p.rows = p.names.len();
        let extra_ids = extra_offsets.windows(2).map(|w| p.intern(&extra[w[0]..w[1]])).collect();
        p.root = p.intern(&[]);
        let mut i = 0;
        while i < p.names.len() {
            let name = p.names[i];
            let up = if name.is_empty() { NONE } else { p.intern(parent(name)) };
            p.parent.push(up);
            i += 1;
        }
        let mut target = Vec::new();
        for (id, name) in p.names.iter().enumerate() {
            if let Some(gone) = last_name(name).strip_prefix(WH) {
                let dir = parent(name);
                target.clear();
                target.extend_from_slice(dir);
                if !dir.is_empty() {
                    target.push(b'/');
                }
                target.extend_from_slice(gone);
                if let Some(t) = p.find(&target) {
                    p.removes.insert(to_u32(id), t);
                }
            }
        }
        // Nothing is looked up by name from here on.
        p.slots = Vec::new();
        p.names.shrink_to_fit();
        (p, extra_ids)
    }

    fn len(&self) -> usize {
        self.names.len()
    }
}

/// Renumbers `path_id` so that ids follow the paths' text order (ids below `paths.rows` are the rows' paths).
fn renumber_by_text(paths: &Paths<'_>, path_id: &mut [Vec<u32>]) {
    let mut keys: Vec<(&[u8], bool, u32)> = paths.names[..paths.rows]
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, std::str::from_utf8(p).is_ok(), to_u32(i)))
        .collect();
    keys.par_sort_unstable_by(|a, b| text_order(a.0, a.1, b.0, b.1));
    let mut rank = vec![0u32; keys.len()];
    for (new, &(_, _, old)) in keys.iter().enumerate() {
        rank[old as usize] = to_u32(new);
    }
    drop(keys);
    for ids in path_id {
        for x in ids.iter_mut() {
            *x = rank[*x as usize];
        }
    }
}

/// Sets of ids as intrusive doubly linked lists, one list per parent id: the union replay's "children of a
/// directory that were added and are still there" (a `HashMap<path, HashSet<path>>`, without one allocation
/// per directory).
struct Children {
    head: Vec<u32>,
    next: Vec<u32>,
    /// `NONE`: in no list; `HEAD`: first of its parent's list; else the one before it.
    prev: Vec<u32>,
}

const HEAD: u32 = u32::MAX - 1;

impl Children {
    fn new(n: usize) -> Self {
        Children {
            head: vec![NONE; n],
            next: vec![NONE; n],
            prev: vec![NONE; n],
        }
    }

    fn insert(&mut self, parent: u32, q: u32) {
        let qi = q as usize;
        if self.prev[qi] != NONE {
            return;
        }
        let first = self.head[parent as usize];
        self.next[qi] = first;
        self.prev[qi] = HEAD;
        if first != NONE {
            self.prev[first as usize] = q;
        }
        self.head[parent as usize] = q;
    }

    fn remove(&mut self, parent: u32, q: u32) {
        let qi = q as usize;
        let (before, after) = (self.prev[qi], self.next[qi]);
        if before == NONE {
            return;
        }
        if before == HEAD {
            self.head[parent as usize] = after;
        } else {
            self.next[before as usize] = after;
        }
        if after != NONE {
            self.prev[after as usize] = before;
        }
        self.prev[qi] = NONE;
        self.next[qi] = NONE;
    }

    /// Empties `parent`'s list into `out`.
    fn take(&mut self, parent: u32, out: &mut Vec<u32>) {
        let mut c = std::mem::replace(&mut self.head[parent as usize], NONE);
        while c != NONE {
            let after = self.next[c as usize];
            self.prev[c as usize] = NONE;
            self.next[c as usize] = NONE;
            out.push(c);
            c = after;
        }
    }

    fn list(&self, parent: u32, out: &mut Vec<u32>) {
        let mut c = self.head[parent as usize];
        while c != NONE {
            out.push(c);
            c = self.next[c as usize];
        }
    }
}

/// Replays the layers (bottom first).
pub fn merge(tables: &[TableRef<'_>]) -> Merge {
    image_pass(tables).0
}

/// dive's efficiency over the layers (bottom first).
pub fn dive(tables: &[TableRef<'_>]) -> Dive {
    image_pass(tables).1
}

/// Both passes, over paths interned once: [`merge`]'s decisions and [`dive`]'s figures. The working state is
/// a few arrays indexed by path id (about 60 bytes a distinct path), never a map or an allocation per path.
pub fn image_pass(tables: &[TableRef<'_>]) -> (Merge, Dive) {
    let mut m = Merge::default();
    for t in tables {
        let n = t.kind.len();
        m.changes.push(vec![0; n]);
        m.shadowed_by.push(vec![VISIBLE; n]);
        m.prev_layer.push(vec![-1; n]);
        m.prev_row.push(vec![0; n]);
        m.path_id.push(vec![0; n]);
    }
    let (wh_bytes, wh_offsets) = whiteout_nodes(tables);
    let (paths, wh_ids) = Paths::new(tables, &wh_bytes, &wh_offsets, &mut m.path_id);
    replay(tables, &paths, &mut m);
    let d = dive_pass(tables, &paths, &m.path_id, &wh_ids);
    renumber_by_text(&paths, &mut m.path_id);
    drop((paths, wh_ids));
    drop((wh_bytes, wh_offsets));
    release_freed_memory();
    (m, d)
}

/// Gives the pass's freed working memory back to the system: glibc keeps freed heap pages resident, and the
/// caller's next allocations (numpy's, Python's) would otherwise add to them rather than reuse them.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointer; it only returns free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[allow(clippy::many_single_char_names)] // t(able), r(ow), k(ind), p(ath), q, m(erge): the twin's names
fn replay(tables: &[TableRef<'_>], paths: &Paths<'_>, m: &mut Merge) {
    let n = paths.len();
    let mut view_layer = vec![NONE; n];
    let mut view_row = vec![0u32; n];
    let mut children = Children::new(n);
    let mut kept = vec![NONE; n]; // the layer that wrote the path or one below it (stamp)
    let mut todo: Vec<u32> = Vec::new();
    for (li, t) in tables.iter().enumerate() {
        let stamp = to_u32(li);
        let by = i32::try_from(li).unwrap_or(i32::MAX);
        for r in 0..t.kind.len() {
            let k = t.kind[r];
            let p = m.path_id[li][r];
            if k == KIND_WHITEOUT || k == KIND_OPAQUE {
                m.changes[li][r] = if k == KIND_WHITEOUT { DELETED } else { OPAQUE };
                todo.clear();
                if k == KIND_WHITEOUT {
                    todo.push(p);
                } else {
                    children.list(p, &mut todo);
                }
                while let Some(q) = todo.pop() {
                    let qi = q as usize;
                    if kept[qi] == stamp {
                        continue;
                    }
                    let hl = std::mem::replace(&mut view_layer[qi], NONE);
                    if hl != NONE {
                        m.shadowed_by[hl as usize][view_row[qi] as usize] = by;
                        children.remove(paths.parent[qi], q);
                    }
                    children.take(q, &mut todo);
                }
                continue;
            }
            kept[p as usize] = stamp;
            let mut q = p;
            loop {
                let up = paths.parent[q as usize];
                if up == NONE || up == paths.root {
                    break;
                }
                q = up;
                if kept[q as usize] == stamp {
                    break;
                }
                kept[q as usize] = stamp;
            }
            let pi = p as usize;
            if view_layer[pi] == NONE {
                m.changes[li][r] = ADDED;
                children.insert(paths.parent[pi], p);
            } else {
                let (ol, orow) = (view_layer[pi] as usize, view_row[pi] as usize);
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
                        todo.clear();
                        children.take(p, &mut todo);
                        while let Some(q) = todo.pop() {
                            let qi = q as usize;
                            let hl = std::mem::replace(&mut view_layer[qi], NONE);
                            if hl != NONE {
                                m.shadowed_by[hl as usize][view_row[qi] as usize] = by;
                            }
                            children.take(q, &mut todo);
                        }
                    }
                }
                m.shadowed_by[ol][orow] = by;
                m.prev_layer[li][r] = i32::try_from(ol).unwrap_or(i32::MAX);
                m.prev_row[li][r] = to_u32(orow);
            }
            view_layer[pi] = stamp;
            view_row[pi] = to_u32(r);
        }
    }
}

/// dive's figures.
#[derive(Debug, Default, PartialEq)]
pub struct Dive {
    /// Sum of the per-path minima (a path left at dive's -1 counts -1).
    pub minimum: i64,
    /// Sum of the per-path cumulative sizes.
    pub discovered: i64,
    /// Paths seen in two layers or more, largest cumulative size first, then by path: each with a leading
    /// slash and a NUL after it, joined (`offsets`: where each starts).
    pub paths: Vec<u8>,
    /// Start of each path in `paths`.
    pub offsets: Vec<u64>,
    /// References (layers) of each path.
    pub refs: Vec<u32>,
    /// Cumulative size of each path.
    pub sizes: Vec<i64>,
}

impl Dive {
    /// The inefficient paths as `(path with a leading slash, references, cumulative size)`.
    pub fn inefficient(&self) -> Vec<(Vec<u8>, u32, i64)> {
        let ends = self
            .offsets
            .iter()
            .skip(1)
            .copied()
            .chain(std::iter::once(self.paths.len() as u64));
        self.offsets
            .iter()
            .zip(ends)
            .zip(self.refs.iter().zip(&self.sizes))
            .map(|((&a, b), (&r, &c))| {
                let (a, b) = (usize::try_from(a).unwrap_or(0), usize::try_from(b).unwrap_or(0));
                (self.paths[a..b - 1].to_vec(), r, c)
            })
            .collect()
    }
}

const WH: &[u8] = b".wh.";
const WHWH: &[u8] = b".wh..wh.";

/// Orders paths as dive visits them: component by component (a `/` sorts before any other byte).
#[cfg(test)]
fn by_components(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let key = |c: u8| if c == b'/' { 0 } else { u16::from(c) + 1 };
    match (a.get(same), b.get(same)) {
        (Some(&x), Some(&y)) => key(x).cmp(&key(y)),
        _ => a.len().cmp(&b.len()),
    }
}

/// The node dive makes of each whiteout row (`dir/.wh.NAME`), all layers' in row order, joined: the bytes and
/// the start of each (one more offset at the end).
fn whiteout_nodes(tables: &[TableRef<'_>]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut offsets = vec![0];
    for t in tables {
        for r in (0..t.kind.len()).filter(|&r| t.kind[r] == KIND_WHITEOUT) {
            let p = t.name(r);
            let dir = parent(p);
            bytes.extend_from_slice(dir);
            if !dir.is_empty() {
                bytes.push(b'/');
            }
            bytes.extend_from_slice(WH);
            bytes.extend_from_slice(last_name(p));
            offsets.push(bytes.len());
        }
    }
    (bytes, offsets)
}

/// A node of one layer's dive tree: its id, payload (`size`, `dir`; `set`: false for an implied parent or an
/// opaque directory's own node) and whether another node of the layer sits below it.
#[derive(Clone, Copy)]
struct LayerNode {
    id: u32,
    size: i64,
    dir: bool,
    set: bool,
    parent_of_some: bool,
}

/// The static tree of all ids (children of each id, sorted by name), with each id's rank in dive's stacking
/// order (`post`: components in order, a parent after its subtree). Of two ids neither of which is above the
/// other, the one first in `post` is also first in dive's visiting order (a parent before its children), so
/// the leaves of a layer, which are never above one another, are put in visiting order by `post` too.
struct Tree {
    start: Vec<u32>,
    child: Vec<u32>,
    post: Vec<u32>,
}

impl Tree {
    fn new(paths: &Paths<'_>) -> Self {
        let n = paths.len();
        let mut start = vec![0u32; n + 1];
        for &up in &paths.parent {
            if up != NONE {
                start[up as usize + 1] += 1;
            }
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut child = vec![0u32; start[n] as usize];
        for (id, &up) in paths.parent.iter().enumerate() {
            if up != NONE {
                child[fill[up as usize] as usize] = to_u32(id);
                fill[up as usize] += 1;
            }
        }
        drop(fill);
        for i in 0..n {
            let kids = &mut child[start[i] as usize..start[i + 1] as usize];
            if kids.len() > 1 {
                let mut named: Vec<(&[u8], u32)> =
                    kids.iter().map(|&c| (last_name(paths.names[c as usize]), c)).collect();
                named.sort_unstable();
                for (k, (_, c)) in kids.iter_mut().zip(named) {
                    *k = c;
                }
            }
        }
        let mut post = vec![0u32; n];
        let mut nq = 0u32;
        // (id, next child index): an explicit stack, the tree can be deep.
        let mut stack: Vec<(u32, u32)> = vec![(paths.root, start[paths.root as usize])];
        while let Some(top) = stack.last_mut() {
            let (id, at) = *top;
            if at < start[id as usize + 1] {
                top.1 += 1;
                let c = child[at as usize];
                stack.push((c, start[c as usize]));
            } else {
                post[id as usize] = nq;
                nq += 1;
                stack.pop();
            }
        }
        Tree { start, child, post }
    }

    fn children(&self, id: u32) -> &[u32] {
        &self.child[self.start[id as usize] as usize..self.start[id as usize + 1] as usize]
    }
}

/// The stack of layers dive sizes whiteouts against: which ids are in it and their payloads.
struct Stacked {
    present: Vec<bool>,
    size: Vec<i64>,
    dir: Vec<bool>,
}

impl Stacked {
    fn add(&mut self, paths: &Paths<'_>, id: u32, size: i64, dir: bool) {
        let mut up = paths.parent[id as usize];
        while up != NONE && !self.present[up as usize] {
            let u = up as usize;
            (self.present[u], self.size[u], self.dir[u]) = (true, 0, false);
            up = paths.parent[u];
        }
        let i = id as usize;
        (self.present[i], self.size[i], self.dir[i]) = (true, size, dir);
    }

    fn remove(&mut self, tree: &Tree, id: u32, todo: &mut Vec<u32>) {
        if !self.present[id as usize] {
            return;
        }
        todo.push(id);
        while let Some(q) = todo.pop() {
            self.present[q as usize] = false;
            todo.extend(tree.children(q).iter().filter(|&&c| self.present[c as usize]));
        }
    }

    fn subtree_size(&self, tree: &Tree, id: u32, todo: &mut Vec<u32>) -> i64 {
        let mut total = 0;
        todo.push(id);
        while let Some(q) = todo.pop() {
            total += self.size[q as usize];
            todo.extend(tree.children(q).iter().filter(|&&c| self.present[c as usize]));
        }
        total
    }
}

/// dive's efficiency over the layers (bottom first). One layer's tree is held at a time, beside the stack of
/// the layers below (kept only while a later layer has whiteouts to size).
#[allow(clippy::too_many_lines)] // one pass that restates dive's, step by step
fn dive_pass(tables: &[TableRef<'_>], paths: &Paths<'_>, path_id: &[Vec<u32>], wh_ids: &[u32]) -> Dive {
    let n = paths.len();
    let last_wh = tables.iter().rposition(|t| t.kind.contains(&KIND_WHITEOUT));
    let tree = last_wh.map(|_| Tree::new(paths));
    let mut stacked = Stacked {
        present: Vec::new(),
        size: Vec::new(),
        dir: Vec::new(),
    };
    if last_wh.is_some() {
        stacked = Stacked {
            present: vec![false; n],
            size: vec![0; n],
            dir: vec![false; n],
        };
        stacked.present[paths.root as usize] = true;
    }
    let mut cum_sum = vec![0i64; n];
    let mut cum_min = vec![i64::MIN; n]; // MIN: dive has not seen the path
    let mut cum_refs = vec![0u32; n];
    let mut slot = vec![0u32; n];
    let mut nodes: Vec<LayerNode> = Vec::new();
    let mut targets: FxHashMap<u32, u32> = FxHashMap::default();
    let mut todo: Vec<u32> = Vec::new();
    let mut wh_next = 0usize; // the next whiteout row's node (`wh_ids` are in row order)
    for (i, t) in tables.iter().enumerate() {
        nodes.clear();
        targets.clear();
        let find = |nodes: &[LayerNode], slot: &[u32], id: u32| -> Option<usize> {
            let s = slot[id as usize] as usize;
            (s < nodes.len() && nodes[s].id == id).then_some(s)
        };
        for (r, &row_path) in path_id[i].iter().enumerate() {
            let k = t.kind[r];
            let id = if k == KIND_WHITEOUT {
                let node = wh_ids[wh_next];
                wh_next += 1;
                targets.insert(node, row_path);
                node
            } else {
                row_path
            };
            let name = paths.names[id as usize];
            if name.split(|&b| b == b'/').any(|c| c.starts_with(WHWH)) {
                continue;
            }
            let (size, dir, set) = match k {
                KIND_OPAQUE => (0, false, false),
                KIND_WHITEOUT => (0, false, true),
                _ => (i64::try_from(t.size[r]).unwrap_or(i64::MAX), k == KIND_DIR, true),
            };
            let mut up = paths.parent[id as usize];
            while up != NONE && up != paths.root && find(&nodes, &slot, up).is_none() {
                slot[up as usize] = to_u32(nodes.len());
                nodes.push(LayerNode {
                    id: up,
                    size: 0,
                    dir: false,
                    set: false,
                    parent_of_some: false,
                });
                up = paths.parent[up as usize];
            }
            if name.is_empty() {
                continue;
            }
            match find(&nodes, &slot, id) {
                Some(s) if set => (nodes[s].size, nodes[s].dir, nodes[s].set) = (size, dir, true),
                Some(_) => {}
                None => {
                    slot[id as usize] = to_u32(nodes.len());
                    nodes.push(LayerNode {
                        id,
                        size,
                        dir,
                        set,
                        parent_of_some: false,
                    });
                }
            }
        }
        for j in 0..nodes.len() {
            let up = paths.parent[nodes[j].id as usize];
            if up != NONE {
                if let Some(s) = find(&nodes, &slot, up) {
                    nodes[s].parent_of_some = true;
                }
            }
        }
        if i == 0 && last_wh.is_some() {
            for nd in &nodes {
                let (size, dir) = if nd.set { (nd.size, nd.dir) } else { (0, false) };
                stacked.add(paths, nd.id, size, dir);
            }
        }
        let mut leaves: Vec<u32> = (0..nodes.len())
            .filter(|&j| !nodes[j].parent_of_some)
            .map(to_u32)
            .collect();
        if let Some(tree) = &tree {
            let whiteout_leaf = |j: &u32| last_name(paths.names[nodes[*j as usize].id as usize]).starts_with(WH);
            if leaves.iter().any(whiteout_leaf) {
                let mut keyed: Vec<(u32, u32)> = leaves
                    .iter()
                    .map(|&j| (tree.post[nodes[j as usize].id as usize], j))
                    .collect();
                keyed.sort_unstable();
                leaves = keyed.into_iter().map(|(_, j)| j).collect();
            }
        }
        for nd in leaves.iter().map(|&j| &nodes[j as usize]) {
            let found = targets.get(&nd.id).copied().zip(tree.as_ref());
            let (key, size) = if let Some((target, tree)) = found {
                let tgt = target as usize;
                if !stacked.present[tgt] {
                    if cum_min[tgt] == i64::MIN {
                        cum_min[tgt] = -1;
                    }
                    break;
                }
                let size = if stacked.dir[tgt] {
                    stacked.subtree_size(tree, target, &mut todo)
                } else {
                    0
                };
                (tgt, size)
            } else {
                (nd.id as usize, if nd.set { nd.size } else { 0 })
            };
            cum_sum[key] += size;
            cum_min[key] = if cum_min[key] < 0 { size } else { cum_min[key].min(size) };
            cum_refs[key] += 1;
        }
        if let (Some(last), Some(tree)) = (last_wh, &tree) {
            if i < last {
                // The keys inline (one look-up per node, not one per comparison).
                let mut order: Vec<(u32, u32)> = nodes
                    .iter()
                    .enumerate()
                    .map(|(j, nd)| (tree.post[nd.id as usize], to_u32(j)))
                    .collect();
                order.sort_unstable();
                for nd in order.iter().map(|&(_, j)| &nodes[j as usize]) {
                    if last_name(paths.names[nd.id as usize]).starts_with(WH) {
                        if let Some(&id) = paths.removes.get(&nd.id) {
                            stacked.remove(tree, id, &mut todo);
                        }
                    } else {
                        let (size, dir) = if nd.set { (nd.size, nd.dir) } else { (0, false) };
                        stacked.add(paths, nd.id, size, dir);
                    }
                }
            }
        }
    }
    let mut out = Dive::default();
    let mut seen_twice: Vec<u32> = Vec::new();
    for id in 0..n {
        let low = cum_min[id];
        if low == i64::MIN {
            continue;
        }
        out.discovered += cum_sum[id];
        out.minimum += low;
        if cum_refs[id] >= 2 {
            seen_twice.push(to_u32(id));
        }
    }
    let key = |id: &u32| (cum_sum[*id as usize], paths.names[*id as usize]);
    seen_twice.par_sort_unstable_by(|a, b| {
        let ((sa, pa), (sb, pb)) = (key(a), key(b));
        sb.cmp(&sa).then_with(|| pa.cmp(pb))
    });
    for id in seen_twice {
        let i = id as usize;
        out.offsets.push(out.paths.len() as u64);
        out.paths.push(b'/');
        out.paths.extend_from_slice(paths.names[i]);
        out.paths.push(0);
        out.refs.push(cum_refs[i]);
        out.sizes.push(cum_sum[i]);
    }
    out
}

/// Row kind names, by `KIND_*` number (the `--json` file lists' `kind`).
const KIND_NAMES: [&str; 10] = [
    "file", "dir", "symlink", "hardlink", "char", "block", "fifo", "whiteout", "opaque", "other",
];

/// Change names, by change number (`""` for any other).
fn change_name(c: u8) -> &'static str {
    match c {
        ADDED => "added",
        MODIFIED => "modified",
        DELETED => "deleted",
        OPAQUE => "opaque",
        METADATA => "metadata",
        SAME => "same",
        _ => "",
    }
}

/// Appends `prefix` + `s` as a JSON string exactly as Python's `json.dumps` writes the `surrogateescape`
/// decoding of `s` (`ensure_ascii`): `"` `\` and `\n \r \t \b \f` escaped by name, other code points
/// outside `' '..='~'` as `\uXXXX` (lowercase; above U+FFFF as a surrogate pair), an invalid byte `b` as
/// `\udcXX` (U+DC00+b).
pub fn json_string(out: &mut Vec<u8>, prefix: &[u8], s: &[u8]) {
    fn unicode(out: &mut Vec<u8>, u: u32) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[((u >> shift) & 0xF) as usize]);
        }
    }
    fn code_point(out: &mut Vec<u8>, c: u32) {
        match c {
            0x22 => out.extend_from_slice(b"\\\""),
            0x5C => out.extend_from_slice(b"\\\\"),
            0x0A => out.extend_from_slice(b"\\n"),
            0x0D => out.extend_from_slice(b"\\r"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            0x20..=0x7E => out.push(u8::try_from(c).unwrap_or(b'?')),
            0x1_0000.. => {
                let v = c - 0x1_0000;
                unicode(out, 0xD800 | (v >> 10));
                unicode(out, 0xDC00 | (v & 0x3FF));
            }
            _ => unicode(out, c),
        }
    }
    out.push(b'"');
    for part in [prefix, s] {
        for chunk in part.utf8_chunks() {
            let valid = chunk.valid();
            if valid
                .bytes()
                .all(|b| (0x20..=0x7E).contains(&b) && b != b'"' && b != b'\\')
            {
                out.extend_from_slice(valid.as_bytes());
            } else {
                for c in valid.chars() {
                    code_point(out, u32::from(c));
                }
            }
            for &b in chunk.invalid() {
                unicode(out, 0xDC00 + u32::from(b));
            }
        }
    }
    out.push(b'"');
}

/// The `--json` text of rows `rows` of one layer's file list, each entry as `json.dumps` writes it, joined by
/// `", "` (the twin: `imgcore.pure.analysis.file_list_json`). `xattrs` are the rows' `XATTR_*` bits,
/// `changes`/`shadowed_by` what [`merge`] decided for the layer.
pub fn file_list_json(
    t: &TableRef<'_>,
    xattrs: &[u8],
    changes: &[u8],
    shadowed_by: &[i32],
    rows: std::ops::Range<usize>,
) -> Vec<u8> {
    use std::io::Write as _;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(rows.len() * 200);
    for r in rows {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        let k = t.kind[r];
        out.extend_from_slice(b"{\"path\": ");
        json_string(&mut out, b"/", t.name(r));
        let kind = KIND_NAMES.get(usize::from(k)).copied().unwrap_or("");
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            ", \"kind\": \"{kind}\", \"change\": \"{}\", \"size\": {}, \"mode\": {}, \"uid\": {}, \"gid\": {}, \"mtime\": {}",
            change_name(changes[r]),
            t.size[r],
            t.mode[r],
            t.uid[r],
            t.gid[r],
            t.mtime[r]
        );
        if k == KIND_FILE {
            out.extend_from_slice(b", \"sha256\": \"sha256:");
            for &b in &t.sha256[32 * r..32 * r + 32] {
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            out.push(b'"');
        }
        if let Ok(link) = usize::try_from(t.link[r]) {
            out.extend_from_slice(b", \"link\": ");
            json_string(&mut out, b"", t.string(link));
        }
        if xattrs[r] != 0 {
            let _ = write!(out, ", \"xattrs\": {}", xattrs[r]);
        }
        if shadowed_by[r] != VISIBLE {
            let _ = write!(out, ", \"hidden_by\": {}", shadowed_by[r]);
        }
        out.push(b'}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owned {
        strings: Vec<u8>,
        offsets: Vec<u64>,
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
        let mut strings = Vec::new();
        let mut offsets = Vec::new();
        for name in &names {
            offsets.push(strings.len() as u64);
            strings.extend_from_slice(name);
            strings.push(0);
        }
        assert!(TableRef::strings_are_valid(&strings, &offsets));
        Owned {
            strings,
            offsets,
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
            strings: &o.strings,
            offsets: &o.offsets,
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
    fn json_strings_are_what_python_writes() {
        let q = |s: &[u8]| {
            let mut out = Vec::new();
            json_string(&mut out, b"/", s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(q(b"a\"b\\c"), r#""/a\"b\\c""#);
        assert_eq!(q("\u{e9}\n\u{7f}".as_bytes()), r#""/\u00e9\n\u007f""#);
        assert_eq!(q("\u{1f600}".as_bytes()), r#""/\ud83d\ude00""#);
        assert_eq!(q(b"x\xc0\x01"), r#""/x\udcc0\u0001""#);
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
        assert_eq!(d.inefficient(), vec![(b"/a/f".to_vec(), 2, 20)]);
        assert_eq!(d.discovered, 10 + 7 + 10);
        assert_eq!(d.minimum, 10 + 7 - 1);
        assert_eq!(by_components(b"a/c", b"a.b"), std::cmp::Ordering::Less);
        assert_eq!(by_components(b"a", b"a/b"), std::cmp::Ordering::Less);
    }
}
