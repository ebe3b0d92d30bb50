//! The two tree walks (copy mode, overlay mode) and the passes that complete a change set.
//!
//! Invariants: every directory's entries are processed in name order and the per-directory results are
//! concatenated in that order, so the raw output is already in depth-first order; rayon only changes *when*
//! an entry is looked at, never where its result lands. The walks never follow symlinks (`lstat` only, and
//! a lower directory is only descended when it is a real directory in the lower view).
//!
//! The walks recurse once per directory level, on the threads of [`in_walk_pool`], whose stacks are
//! [`WALK_STACK`] bytes: every path is handed to the kernel whole, so a level costs at least two bytes of a
//! `PATH_MAX` (4096) path and the depth is bounded near 2048 levels (deeper paths fail with `ENAMETOOLONG`,
//! an `Io` error); a level takes about 2 KiB of stack, so 64 MiB leaves a wide margin over work stealing
//! (rayon's default 2 MiB stacks overflowed, a segfault, at about 1000 levels).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::meta::{read_link, same_content, Kind, Meta};
use super::{Change, ChangeKind};
use crate::error::{CoreError, IoContext, Result};

/// Stack size of the walk threads (reserved address space; only the pages a deep walk touches are used).
pub(super) const WALK_STACK: usize = 64 << 20;

/// Runs `f` on the walk pool (rayon threads with [`WALK_STACK`]-byte stacks, one per CPU), so its recursion
/// over directory levels cannot overflow; falls back to the global pool if the walk pool cannot be built.
pub(super) fn in_walk_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .stack_size(WALK_STACK)
            .thread_name(|i| format!("imgcore-walk-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Hardlink bookkeeping: (dev, ino, path) of regular files with more than one link.
type Links = Vec<(u64, u64, PathBuf)>;

#[derive(Default)]
struct Acc {
    changes: Vec<Change>,
    /// Target-side (or upper-side) hardlinked files.
    tlinks: Links,
    /// Base-side hardlinked files (copy mode).
    blinks: Links,
}

impl Acc {
    fn extend(&mut self, other: Acc) {
        self.changes.extend(other.changes);
        self.tlinks.extend(other.tlinks);
        self.blinks.extend(other.blinks);
    }

    fn push(&mut self, kind: ChangeKind, path: &Path, metadata_only: bool) {
        self.changes.push(Change {
            kind,
            path: path.to_path_buf(),
            metadata_only,
        });
    }
}

fn merge(parts: Vec<Acc>) -> Acc {
    let mut acc = Acc::default();
    for p in parts {
        acc.extend(p);
    }
    acc
}

/// Sorted entry names of a directory.
pub(super) fn list(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        names.push(entry.at(dir)?.file_name());
    }
    names.sort();
    Ok(names)
}

fn join(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// `read_opt` that treats sockets as absent (they never go into a layer).
fn stat(path: &Path) -> Result<Option<Meta>> {
    Ok(Meta::read_opt(path)?.filter(|m| m.kind != Kind::Socket))
}

fn note_link(links: &mut Links, m: &Meta, rel: &Path) {
    if m.kind == Kind::File && m.nlink > 1 {
        links.push((m.dev, m.ino, rel.to_path_buf()));
    }
}

/// True when the content (type, bytes, link target, device) of two same-kind non-directories is equal.
fn same_payload(a: &Meta, a_path: &Path, b: &Meta, b_path: &Path, compare_bytes: bool) -> Result<bool> {
    Ok(match a.kind {
        Kind::File => a.size == b.size && (!compare_bytes || same_content(a_path, b_path)?),
        Kind::Symlink => read_link(a_path)? == read_link(b_path)?,
        Kind::Char | Kind::Block => a.rdev == b.rdev,
        Kind::Fifo | Kind::Socket | Kind::Dir => true,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Copy mode.

struct CopyCtx<'a> {
    base: &'a Path,
    target: &'a Path,
    paranoid: bool,
}

/// Copy mode: compares `target` with `base` everywhere.
pub(super) fn copy(base: &Path, target: &Path, paranoid: bool) -> Result<Vec<Change>> {
    let ctx = CopyCtx { base, target, paranoid };
    let acc = copy_dir(&ctx, Path::new(""))?;
    let mut changes = acc.changes;
    let tcanon = canonical(&acc.tlinks);
    let bcanon = canonical(&acc.blinks);
    let mut seen: HashSet<PathBuf> = changes.iter().map(|c| c.path.clone()).collect();
    // A file whose hardlink group changed (linked, unlinked, relinked) changed its metadata.
    let mut keys: Vec<&PathBuf> = tcanon.keys().chain(bcanon.keys()).collect();
    keys.sort();
    keys.dedup();
    for p in keys {
        if tcanon.get(p) != bcanon.get(p) && !seen.contains(p) {
            // Present on both sides (otherwise it would be an A or a D already).
            changes.push(Change {
                kind: ChangeKind::Changed,
                path: p.clone(),
                metadata_only: true,
            });
            seen.insert(p.clone());
        }
    }
    Ok(complete(changes, &acc.tlinks, seen))
}

fn copy_dir(ctx: &CopyCtx<'_>, rel: &Path) -> Result<Acc> {
    let bnames = list(&join(ctx.base, rel))?;
    let tnames = list(&join(ctx.target, rel))?;
    let mut names: Vec<(OsString, bool, bool)> = Vec::with_capacity(tnames.len().max(bnames.len()));
    let (mut i, mut j) = (0, 0);
    while i < bnames.len() || j < tnames.len() {
        if j == tnames.len() || (i < bnames.len() && bnames[i] < tnames[j]) {
            names.push((bnames[i].clone(), true, false));
            i += 1;
        } else if i == bnames.len() || tnames[j] < bnames[i] {
            names.push((tnames[j].clone(), false, true));
            j += 1;
        } else {
            names.push((tnames[j].clone(), true, true));
            i += 1;
            j += 1;
        }
    }
    let parts = names
        .par_iter()
        .map(|(name, in_b, in_t)| copy_entry(ctx, &rel.join(name), *in_b, *in_t))
        .collect::<Result<Vec<Acc>>>()?;
    Ok(merge(parts))
}

fn copy_entry(ctx: &CopyCtx<'_>, rel: &Path, in_b: bool, in_t: bool) -> Result<Acc> {
    let bpath = ctx.base.join(rel);
    let tpath = ctx.target.join(rel);
    let b = if in_b { stat(&bpath)? } else { None };
    let t = if in_t { stat(&tpath)? } else { None };
    let mut acc = Acc::default();
    match (b, t) {
        (None, None) => {}
        (Some(_), None) => acc.push(ChangeKind::Deleted, rel, false),
        (None, Some(t)) => {
            acc.push(ChangeKind::Added, rel, false);
            note_link(&mut acc.tlinks, &t, rel);
            if t.kind == Kind::Dir {
                acc.extend(added_dir(ctx.target, rel)?);
            }
        }
        (Some(b), Some(t)) => {
            if b.kind != t.kind {
                acc.push(ChangeKind::Changed, rel, false);
                note_link(&mut acc.tlinks, &t, rel);
                note_link(&mut acc.blinks, &b, rel);
                if t.kind == Kind::Dir {
                    acc.extend(added_dir(ctx.target, rel)?);
                }
            } else if t.kind == Kind::Dir {
                if !b.same_attrs(&t) {
                    acc.push(ChangeKind::Changed, rel, true);
                }
                acc.extend(copy_dir(ctx, rel)?);
            } else {
                note_link(&mut acc.tlinks, &t, rel);
                note_link(&mut acc.blinks, &b, rel);
                let attrs_same = b.same_attrs(&t);
                let size_differs = t.kind == Kind::File && b.size != t.size;
                let must_read = t.kind == Kind::File
                    && !size_differs
                    && (ctx.paranoid || b.mtime_nsec != t.mtime_nsec || b.mtime != t.mtime);
                let payload_same = !size_differs && same_payload(&b, &bpath, &t, &tpath, must_read)?;
                if !payload_same {
                    acc.push(ChangeKind::Changed, rel, false);
                } else if !attrs_same {
                    acc.push(ChangeKind::Changed, rel, true);
                }
            }
        }
    }
    Ok(acc)
}

/// Everything below a new directory is added.
fn added_dir(root: &Path, rel: &Path) -> Result<Acc> {
    let names = list(&root.join(rel))?;
    let parts = names
        .par_iter()
        .map(|name| {
            let child = rel.join(name);
            let mut acc = Acc::default();
            if let Some(m) = stat(&root.join(&child))? {
                acc.push(ChangeKind::Added, &child, false);
                note_link(&mut acc.tlinks, &m, &child);
                if m.kind == Kind::Dir {
                    acc.extend(added_dir(root, &child)?);
                }
            }
            Ok(acc)
        })
        .collect::<Result<Vec<Acc>>>()?;
    Ok(merge(parts))
}

/// Maps each member of a hardlink group of two or more paths to the group's first path.
fn canonical(links: &Links) -> HashMap<PathBuf, PathBuf> {
    let mut groups: HashMap<(u64, u64), Vec<&PathBuf>> = HashMap::new();
    for (dev, ino, p) in links {
        groups.entry((*dev, *ino)).or_default().push(p);
    }
    let mut out = HashMap::new();
    for members in groups.values() {
        if members.len() > 1 {
            let first = (*members.iter().min().unwrap_or(&members[0])).clone();
            for m in members {
                out.insert((*m).clone(), first.clone());
            }
        }
    }
    out
}

/// Adds whole hardlink groups and ancestor directories, then sorts.
fn complete(mut changes: Vec<Change>, tlinks: &Links, mut seen: HashSet<PathBuf>) -> Vec<Change> {
    // Whole hardlink groups: a changed member drags in its partners so the link is kept inside the layer.
    let mut groups: HashMap<(u64, u64), Vec<&PathBuf>> = HashMap::new();
    let mut by_path: HashMap<&PathBuf, (u64, u64)> = HashMap::new();
    for (dev, ino, p) in tlinks {
        groups.entry((*dev, *ino)).or_default().push(p);
        by_path.insert(p, (*dev, *ino));
    }
    let mut extra = Vec::new();
    for c in &changes {
        if c.kind == ChangeKind::Deleted {
            continue;
        }
        if let Some(key) = by_path.get(&c.path) {
            for member in &groups[key] {
                if !seen.contains(*member) {
                    seen.insert((*member).clone());
                    extra.push(Change {
                        kind: ChangeKind::Changed,
                        path: (*member).clone(),
                        metadata_only: true,
                    });
                }
            }
        }
    }
    changes.extend(extra);
    // Every ancestor of a change is reported too (docker does; the layer needs the directory entry).
    let mut parents = Vec::new();
    for c in &changes {
        let mut p = c.path.parent();
        while let Some(dir) = p {
            if dir.as_os_str().is_empty() || seen.contains(dir) {
                break;
            }
            seen.insert(dir.to_path_buf());
            parents.push(Change {
                kind: ChangeKind::Changed,
                path: dir.to_path_buf(),
                metadata_only: true,
            });
            p = dir.parent();
        }
    }
    changes.extend(parents);
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

// ---------------------------------------------------------------------------------------------------------
// Overlay mode.

/// The lower directories that make up one directory of the lower view, top first (overlayfs' "lower stack").
pub(super) type Stack = Vec<PathBuf>;

/// Looks `name` up in a lower stack as overlayfs does: the first layer that has it wins, a whiteout hides it,
/// and a directory collects the same-named directories below it until an opaque one or a non-directory.
pub(super) fn lookup(stack: &Stack, name: &std::ffi::OsStr) -> Result<Option<(PathBuf, Meta, Stack)>> {
    for (i, dir) in stack.iter().enumerate() {
        let path = dir.join(name);
        let Some(m) = stat(&path)? else { continue };
        if m.is_whiteout() {
            return Ok(None);
        }
        let mut child = Vec::new();
        if m.kind == Kind::Dir {
            child.push(path.clone());
            if !m.overlay.opaque {
                for below in &stack[i + 1..] {
                    let p = below.join(name);
                    let Some(bm) = stat(&p)? else { continue };
                    if bm.kind != Kind::Dir || bm.is_whiteout() {
                        break;
                    }
                    let opaque = bm.overlay.opaque;
                    child.push(p);
                    if opaque {
                        break;
                    }
                }
            }
        }
        return Ok(Some((path, m, child)));
    }
    Ok(None)
}

/// Names visible in a directory of the lower view (union of the stack minus whiteouts).
pub(super) fn list_stack(stack: &Stack) -> Result<Vec<OsString>> {
    if let [only] = stack.as_slice() {
        let mut names = Vec::new();
        for n in list(only)? {
            if stat(&only.join(&n))?.is_some_and(|m| !m.is_whiteout()) {
                names.push(n);
            }
        }
        return Ok(names);
    }
    let mut visible: HashSet<OsString> = HashSet::new();
    let mut hidden: HashSet<OsString> = HashSet::new();
    for dir in stack {
        for n in list(dir)? {
            if visible.contains(&n) || hidden.contains(&n) {
                continue;
            }
            match stat(&dir.join(&n))? {
                Some(m) if m.is_whiteout() => {
                    hidden.insert(n);
                }
                Some(_) => {
                    visible.insert(n);
                }
                None => {}
            }
        }
    }
    let mut out: Vec<OsString> = visible.into_iter().collect();
    out.sort();
    Ok(out)
}

/// Resolves a whole relative path in the lower view.
pub(super) fn lookup_path(layers: &[PathBuf], rel: &Path) -> Result<Option<(PathBuf, Meta)>> {
    let mut stack: Stack = layers.to_vec();
    let mut found = None;
    let comps: Vec<_> = rel.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        let Some((path, m, child)) = lookup(&stack, comp.as_os_str())? else {
            return Ok(None);
        };
        if i + 1 < comps.len() && m.kind != Kind::Dir {
            return Ok(None);
        }
        stack = child;
        found = Some((path, m));
    }
    Ok(found)
}

struct OvlCtx<'a> {
    upper: &'a Path,
}

/// Overlay mode: walks the upperdir only.
pub(super) fn overlay(layers: &[PathBuf], upper: &Path) -> Result<Vec<Change>> {
    let ctx = OvlCtx { upper };
    let acc = ovl_dir(&ctx, Path::new(""), &layers.to_vec(), false)?;
    let seen: HashSet<PathBuf> = acc.changes.iter().map(|c| c.path.clone()).collect();
    Ok(complete(acc.changes, &acc.tlinks, seen))
}

/// `opaque`: the lower view's children of this directory are hidden in the merged view (opaque marker on it
/// or an ancestor), so every upper entry is part of the layer and lower-only names are deletions.
fn ovl_dir(ctx: &OvlCtx<'_>, rel: &Path, stack: &Stack, opaque: bool) -> Result<Acc> {
    let udir = join(ctx.upper, rel);
    let names = list(&udir)?;
    let parts = names
        .par_iter()
        .map(|name| ovl_entry(ctx, rel, name, stack, opaque))
        .collect::<Result<Vec<(Acc, bool)>>>()?;
    let mut present: HashSet<&OsString> = HashSet::new();
    for (name, (_, is_entry)) in names.iter().zip(&parts) {
        if *is_entry {
            present.insert(name);
        }
    }
    let mut acc = Acc::default();
    let mut deleted = Vec::new();
    if opaque && !stack.is_empty() {
        for n in list_stack(stack)? {
            if !present.contains(&n) {
                deleted.push(n);
            }
        }
    }
    // Merge deletions of the opaque listing into name order with the upper entries.
    let mut parts = names
        .iter()
        .zip(parts)
        .map(|(n, (a, _))| (n.clone(), a))
        .collect::<Vec<_>>();
    for n in deleted {
        let mut a = Acc::default();
        a.push(ChangeKind::Deleted, &rel.join(&n), false);
        parts.push((n, a));
    }
    parts.sort_by(|x, y| x.0.cmp(&y.0));
    for (_, a) in parts {
        acc.extend(a);
    }
    Ok(acc)
}

/// Returns the entry's changes and whether it is a real entry (not a whiteout) of the merged view.
fn ovl_entry(ctx: &OvlCtx<'_>, rel: &Path, name: &OsString, stack: &Stack, opaque: bool) -> Result<(Acc, bool)> {
    let crel = rel.join(name);
    let upath = ctx.upper.join(&crel);
    let mut acc = Acc::default();
    let Some(u) = stat(&upath)? else {
        return Ok((acc, false));
    };
    if u.is_whiteout() {
        // Inside an opaque directory the lower view is hidden anyway: deletions come from its listing.
        if !opaque && lookup(stack, name)?.is_some() {
            acc.push(ChangeKind::Deleted, &crel, false);
        }
        return Ok((acc, false));
    }
    if u.overlay.redirect.is_some() {
        return Err(CoreError::InvalidTree {
            path: upath,
            reason: "overlayfs redirect (redirect_dir=on) is not supported; mount with redirect_dir=off".into(),
        });
    }
    note_link(&mut acc.tlinks, &u, &crel);
    let lower = lookup(stack, name)?;
    match lower {
        None => {
            acc.push(ChangeKind::Added, &crel, false);
            if u.kind == Kind::Dir {
                acc.extend(ovl_dir(ctx, &crel, &Vec::new(), true)?);
            }
        }
        Some((lpath, l, child_stack)) => {
            if l.kind != u.kind {
                acc.push(ChangeKind::Changed, &crel, false);
                if u.kind == Kind::Dir {
                    acc.extend(ovl_dir(ctx, &crel, &Vec::new(), true)?);
                }
            } else if u.kind == Kind::Dir {
                let child_opaque = opaque || u.overlay.opaque;
                if child_opaque || !u.same_attrs(&l) {
                    acc.push(ChangeKind::Changed, &crel, true);
                }
                acc.extend(ovl_dir(ctx, &crel, &child_stack, child_opaque)?);
            } else {
                let payload_same = if u.kind == Kind::File && u.overlay.metacopy {
                    true
                } else {
                    same_payload(&u, &upath, &l, &lpath, true)?
                };
                // A copy-up of a hardlinked lower file breaks the link in the merged view (overlayfs without
                // index=on): that is a change even when nothing else differs.
                let linked = u.kind == Kind::File && (u.nlink > 1 || l.nlink > 1);
                let identical = payload_same && u.same_attrs(&l) && !linked;
                if !identical || opaque {
                    acc.push(ChangeKind::Changed, &crel, payload_same);
                }
            }
        }
    }
    Ok((acc, true))
}
