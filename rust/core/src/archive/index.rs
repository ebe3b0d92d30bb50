//! The merged union view of a layer stack, built from the blobs without extracting them (ggcr
//! `mutate.Extract` semantics, kept in memory as metadata only).
//!
//! Invariants: the result is exactly the tree `unpack_layers` would produce, metadata-wise: whiteouts and
//! opaque markers remove only what lower layers (or this layer, before it wrote there) put there, in
//! archive order, with the same keep rule as the extractor; parents are resolved through symlinks inside the
//! root as the extractor's resolver does; implied parents appear as directories (mode 0755, uid/gid 0,
//! mtime 0) provided by the layer that implied them; a hardlink shows its target's metadata. Unsafe or
//! malformed entries fail with the same errors as extraction.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::decode::Pipeline;
use super::reader::{entry_name, for_each_entry, whiteout, Kind, Meta, Whiteout};
use super::root::{clean, join, Components};
use crate::error::{CoreError, Result};

const MAX_SYMLINKS: usize = 40;

/// One path of the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Root-relative path, no leading slash.
    pub path: Vec<u8>,
    /// Entry kind.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size in bytes (regular files and hardlinks).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Symlink target or hardlink target path.
    pub link: Vec<u8>,
    /// Index (0 = lowest) of the layer that provides this entry.
    pub layer: usize,
}

struct Union {
    map: BTreeMap<Vec<u8>, IndexEntry>,
    written: HashSet<Vec<u8>>,
    ancestors: HashSet<Vec<u8>>,
    layer: usize,
    ctx: String,
    /// Bumped whenever an existing entry is removed or changes kind (what a resolved path went through).
    generation: u64,
    /// The last successful `resolve_dir`: (generation, components asked, real components, symlinks followed).
    /// An entry below the previous one (archive order) resumes from it, so a directory N levels deep costs
    /// O(N) and not O(N^2) key builds (a 2000-level layer took 20 s to index).
    last: Option<(u64, Components, Components, usize)>,
}

fn child_prefix(p: &[u8]) -> Vec<u8> {
    let mut v = p.to_vec();
    if !v.is_empty() {
        v.push(b'/');
    }
    v
}

impl Union {
    fn unsafe_path(&self, path: &[u8], reason: &str) -> CoreError {
        CoreError::UnsafePath {
            context: self.ctx.clone(),
            entry: entry_name(path),
            reason: reason.to_owned(),
        }
    }

    fn invalid(&self, path: &[u8], reason: impl Into<String>) -> CoreError {
        CoreError::InvalidArchive {
            context: format!("{}: entry {:?}", self.ctx, entry_name(path)),
            reason: reason.into(),
        }
    }

    fn kept(&self, p: &[u8]) -> bool {
        self.written.contains(p) || self.ancestors.contains(p)
    }

    /// Removes `p` (when `include_self`) and its descendants, except what this layer keeps.
    fn prune(&mut self, p: &[u8], include_self: bool) {
        let prefix = child_prefix(p);
        let mut doomed: Vec<Vec<u8>> = if prefix.is_empty() {
            self.map.keys().filter(|k| !self.kept(k)).cloned().collect()
        } else {
            self.map
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone())
                .filter(|k| !self.kept(k))
                .collect()
        };
        if include_self && !self.kept(p) && self.map.contains_key(p) {
            doomed.push(p.to_vec());
        }
        if !doomed.is_empty() {
            self.generation += 1;
        }
        for k in doomed {
            self.map.remove(&k);
        }
    }

    fn remove_subtree(&mut self, p: &[u8]) {
        let prefix = child_prefix(p);
        let doomed: Vec<Vec<u8>> = self
            .map
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        self.generation += 1;
        for k in doomed {
            self.map.remove(&k);
        }
        self.map.remove(p);
    }

    /// Resolves a directory path through the view's symlinks, inside the root; with `create`, missing
    /// directories are implied. Returns the real components.
    fn resolve_dir(&mut self, comps: &[Vec<u8>], create: bool, entry: &[u8]) -> Result<Option<Components>> {
        let (mut real, start, mut links) = match &self.last {
            // NOTE: resolving a prefix and then the rest is the same walk (the loop below is a stack machine
            // that consumes the prefix, symlink expansions included, before the rest), valid while no entry
            // on the way changed (the generation).
            Some((g, asked, done, n)) if *g == self.generation && comps.starts_with(asked) => {
                (done.clone(), asked.len(), *n)
            }
            _ => (Vec::new(), 0, 0),
        };
        let mut todo: Vec<Vec<u8>> = comps[start..].iter().rev().cloned().collect();
        while let Some(c) = todo.pop() {
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                real.pop();
                continue;
            }
            real.push(c);
            let key = join(&real);
            match self.map.get(&key).map(|e| (e.kind, e.link.clone())) {
                Some((Kind::Dir, _)) => {}
                Some((Kind::Symlink, target)) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(self.unsafe_path(entry, "open parent: too many levels of symbolic links"));
                    }
                    real.pop();
                    if target.first() == Some(&b'/') {
                        real.clear();
                    }
                    for t in target.split(|&b| b == b'/').rev() {
                        todo.push(t.to_vec());
                    }
                }
                Some(_) => return Err(self.invalid(entry, "open parent: a parent of the entry is not a directory")),
                None if create => {
                    self.map.insert(
                        key.clone(),
                        IndexEntry {
                            path: key,
                            kind: Kind::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                            size: 0,
                            mtime: 0,
                            mtime_nsec: 0,
                            link: Vec::new(),
                            layer: self.layer,
                        },
                    );
                }
                None => return Ok(None),
            }
        }
        self.last = Some((self.generation, comps.to_vec(), real.clone(), links));
        Ok(Some(real))
    }

    #[allow(clippy::too_many_lines)] // mirrors the extractor's entry dispatch one to one
    fn entry(&mut self, meta: &Meta) -> Result<()> {
        let comps = clean(&meta.path).ok_or_else(|| self.unsafe_path(&meta.path, "escapes the root (\"..\")"))?;
        let Some((name, parent)) = comps.split_last() else {
            if meta.kind == Kind::Dir {
                return Ok(());
            }
            return Err(self.unsafe_path(&meta.path, "names the root directory itself"));
        };
        match whiteout(name).map_err(|reason| self.unsafe_path(&meta.path, reason))? {
            Whiteout::No => {}
            Whiteout::Opaque => {
                let Some(real) = self.resolve_dir(parent, true, &meta.path)? else {
                    return Ok(());
                };
                self.prune(&join(&real), false);
                return Ok(());
            }
            Whiteout::Aufs => return Ok(()),
            Whiteout::Removes(target) => {
                let Some(mut real) = self.resolve_dir(parent, false, &meta.path).or_else(|e| match e {
                    CoreError::InvalidArchive { .. } => Ok(None),
                    e => Err(e),
                })?
                else {
                    return Ok(());
                };
                real.push(target.to_vec());
                self.prune(&join(&real), true);
                return Ok(());
            }
        }
        self.written.insert(join(&comps));
        for i in (1..comps.len()).rev() {
            if !self.ancestors.insert(join(&comps[..i])) {
                break;
            }
        }
        let Some(mut real) = self.resolve_dir(parent, true, &meta.path)? else {
            return Ok(());
        };
        real.push(name.clone());
        let key = join(&real);
        let mut e = IndexEntry {
            path: key.clone(),
            kind: meta.kind,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            size: if meta.kind == Kind::File { meta.file_size() } else { 0 },
            mtime: meta.mtime,
            mtime_nsec: meta.mtime_nsec,
            link: meta.link.clone(),
            layer: self.layer,
        };
        match meta.kind {
            Kind::Hardlink => {
                let tcomps = clean(&meta.link)
                    .ok_or_else(|| self.unsafe_path(&meta.path, "hardlink target escapes the root"))?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(self.unsafe_path(&meta.path, "hardlink to the root directory"));
                };
                if tcomps == comps {
                    return Ok(());
                }
                let missing = |s: &Self| {
                    s.invalid(
                        &meta.path,
                        format!("hardlink target {:?} does not exist", entry_name(&meta.link)),
                    )
                };
                let Some(mut treal) = self.resolve_dir(tparent, false, &meta.path)? else {
                    return Err(missing(self));
                };
                treal.push(tname.clone());
                let Some(t) = self.map.get(&join(&treal)) else {
                    return Err(missing(self));
                };
                if t.kind == Kind::Dir {
                    return Err(self.invalid(
                        &meta.path,
                        format!("hardlink target {:?} is a directory", entry_name(&meta.link)),
                    ));
                }
                e.mode = t.mode;
                e.uid = t.uid;
                e.gid = t.gid;
                e.size = t.size;
                e.mtime = t.mtime;
                e.mtime_nsec = t.mtime_nsec;
                e.link = join(&treal);
            }
            Kind::Other(_) => return Ok(()),
            _ => {}
        }
        if let Some(old) = self.map.get(&key) {
            if old.kind == Kind::Dir && meta.kind != Kind::Dir {
                self.remove_subtree(&key);
            } else if !(old.kind == Kind::Dir && meta.kind == Kind::Dir) {
                self.generation += 1; // a symlink or file replaced: a cached walk may have gone through it
            }
        }
        self.map.insert(key, e);
        Ok(())
    }
}

/// Builds the merged view of `layers` (lowest first), sorted by path.
pub fn layer_index(layers: &[PathBuf], max_bytes: u64, max_entries: u64) -> Result<Vec<IndexEntry>> {
    let mut u = Union {
        map: BTreeMap::new(),
        written: HashSet::new(),
        ancestors: HashSet::new(),
        layer: 0,
        ctx: String::new(),
        generation: 0,
        last: None,
    };
    for (i, src) in layers.iter().enumerate() {
        u.layer = i;
        u.ctx = format!("index layer {} ({})", i, src.display());
        u.written.clear();
        u.ancestors.clear();
        let mut pipe = Pipeline::start(Path::new(src), max_bytes)?;
        let ctx = u.ctx.clone();
        for_each_entry(&mut pipe, &ctx, max_entries, max_bytes, |meta, _data| u.entry(meta))?;
        pipe.finish()?;
    }
    Ok(u.map.into_values().collect())
}
