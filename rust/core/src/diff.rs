//! Layer diffs: compare a container's filesystem with its image and write the difference as an OCI layer.
//!
//! Two modes, one result type:
//! - **copy mode**: `target` is a private copy of the image's flattened rootfs `base`; both trees are walked in
//!   parallel and compared by type, mode, uid/gid, size, mtime (ns), symlink target, xattrs, hardlink group
//!   and, where that cannot decide (same size, other mtime; or always with `paranoid`), content.
//! - **overlay mode**: `target` is an overlayfs upperdir and `base` the lowerdirs (top first) or the merged
//!   lower rootfs; only the upperdir is walked and the lower is looked up per upper entry, the way overlayfs
//!   itself resolves names, so the cost grows with the change, not with the image.
//!
//! Invariants:
//! - [`Change`] paths are relative to the root (no leading `/`, never `..`); the list is sorted by path
//!   components (parents directly before their children, like a depth-first walk) and holds each path once.
//! - Like docker, a deleted directory is one `D` (its children are implied), and every ancestor directory of a
//!   change is itself reported (`C`), so the change list is exactly the set of layer entries.
//! - A hardlink group (regular files sharing an inode inside the tree) is written whole when any member
//!   changes, so the link survives into the layer.
//! - The layer bytes depend only on the trees' contents and the options: entries in change order, headers
//!   built like Python's `tarfile` PAX format with empty uname/gname, whole-second mtimes (docker's rule),
//!   fixed-size compression blocks whatever the thread count. Same inputs, same digest.
//!
//! Limits (shared with docker): sub-second mtimes are not kept; an xattr removed from a directory that stays a
//! directory cannot be expressed (appliers merge an existing directory's attributes); the root directory's
//! own metadata is not part of a layer; sockets are skipped. overlayfs `redirect_dir` (renamed lower
//! directories) is refused with [`CoreError::InvalidTree`]: mount with `redirect_dir=off`, as docker's
//! overlay2 prefers; `metacopy` is read through to the lower data.

mod meta;
mod tar;
mod walk;
mod writer;

use std::path::{Path, PathBuf};

pub use meta::{Kind, Meta};
pub use writer::{Compression, LayerOptions, LayerResult};

use crate::error::{CoreError, Result};

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// New in the target.
    Added,
    /// Present on both sides, different.
    Changed,
    /// Gone from the target.
    Deleted,
}

impl ChangeKind {
    /// docker's letter: `A`, `C` or `D`.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }

    /// Parses docker's letter.
    pub fn from_letter(letter: &str) -> Option<Self> {
        match letter {
            "A" => Some(ChangeKind::Added),
            "C" => Some(ChangeKind::Changed),
            "D" => Some(ChangeKind::Deleted),
            _ => None,
        }
    }
}

/// One entry of a change set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// Added, changed or deleted.
    pub kind: ChangeKind,
    /// Path relative to the root, without a leading `/`.
    pub path: PathBuf,
    /// For `C`: the content (bytes, symlink target, device number, type) is unchanged and only metadata
    /// (mode, owner, mtime, xattrs, hardlink group) differs. Directories reported `C` are always
    /// metadata-only: their content is their children, reported on their own.
    pub metadata_only: bool,
}

/// Options shared by [`diff`] and [`write_layer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// `target` is an overlayfs upperdir (see the module docs).
    pub overlay: bool,
    /// Copy mode: compare the content of every same-size regular file instead of trusting size + mtime.
    pub paranoid: bool,
}

/// Computes the change set between `base` and `target`.
///
/// `base` holds one directory in copy mode; in overlay mode the lowerdirs, top first (one directory for a
/// merged lower rootfs).
pub fn diff(base: &[PathBuf], target: &Path, opts: DiffOptions) -> Result<Vec<Change>> {
    check_roots(base, target, opts)?;
    walk::in_walk_pool(|| {
        if opts.overlay {
            walk::overlay(base, target)
        } else {
            walk::copy(&base[0], target, opts.paranoid)
        }
    })
}

/// Computes the change set (unless `changes` is given) and writes it to `out` as an OCI layer.
pub fn write_layer(
    base: &[PathBuf],
    target: &Path,
    out: &Path,
    changes: Option<Vec<Change>>,
    opts: DiffOptions,
    layer: &LayerOptions,
) -> Result<LayerResult> {
    check_roots(base, target, opts)?;
    let changes = match changes {
        Some(c) => normalise(c)?,
        None => diff(base, target, opts)?,
    };
    writer::write(base, target, out, changes, opts, layer)
}

fn check_roots(base: &[PathBuf], target: &Path, opts: DiffOptions) -> Result<()> {
    if base.is_empty() {
        return Err(CoreError::InvalidTree {
            path: target.to_path_buf(),
            reason: "no base directory given".into(),
        });
    }
    if !opts.overlay && base.len() != 1 {
        return Err(CoreError::InvalidTree {
            path: target.to_path_buf(),
            reason: format!("copy mode compares with one base directory, got {}", base.len()),
        });
    }
    for dir in base.iter().map(PathBuf::as_path).chain(std::iter::once(target)) {
        let md = std::fs::metadata(dir).map_err(|e| CoreError::io(dir, e))?;
        if !md.is_dir() {
            return Err(CoreError::io(dir, std::io::Error::from_raw_os_error(20)));
        }
    }
    Ok(())
}

/// Validates a caller-supplied change list (relative, no `..`) and sorts it.
fn normalise(mut changes: Vec<Change>) -> Result<Vec<Change>> {
    for c in &mut changes {
        let stripped = c.path.strip_prefix("/").unwrap_or(&c.path).to_path_buf();
        let ok = !stripped.as_os_str().is_empty()
            && stripped
                .components()
                .all(|comp| matches!(comp, std::path::Component::Normal(_)));
        if !ok {
            return Err(CoreError::InvalidTree {
                path: c.path.clone(),
                reason: "change path must name an entry below the root, without '.' or '..'".into(),
            });
        }
        c.path = stripped;
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes.dedup_by(|a, b| a.path == b.path);
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Read;

    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let target = tmp.path().join("target");
        for root in [&base, &target] {
            fs::create_dir_all(root.join("etc/sub")).unwrap();
            fs::write(root.join("etc/passwd"), b"root").unwrap();
            fs::write(root.join("etc/sub/x"), b"x").unwrap();
        }
        // Same mtimes on both sides, as a copy would have.
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        for rel in ["etc/passwd", "etc/sub/x", "etc/sub", "etc"] {
            for root in [&base, &target] {
                fs::File::options()
                    .read(true)
                    .open(root.join(rel))
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
            }
        }
        (tmp, base, target)
    }

    fn kinds(changes: &[Change]) -> Vec<(char, String, bool)> {
        changes
            .iter()
            .map(|c| (c.kind.letter(), c.path.display().to_string(), c.metadata_only))
            .collect()
    }

    #[test]
    fn copy_mode_reports_changes_with_parents() {
        let (_tmp, base, target) = tree();
        assert!(diff(std::slice::from_ref(&base), &target, DiffOptions::default())
            .unwrap()
            .is_empty());
        fs::write(target.join("etc/sub/new"), b"n").unwrap();
        fs::remove_file(target.join("etc/passwd")).unwrap();
        let changes = diff(&[base], &target, DiffOptions::default()).unwrap();
        assert_eq!(
            kinds(&changes),
            vec![
                ('C', "etc".into(), true),
                ('D', "etc/passwd".into(), false),
                ('C', "etc/sub".into(), true),
                ('A', "etc/sub/new".into(), false),
            ]
        );
    }

    #[test]
    fn layer_bytes_do_not_depend_on_threads_and_gzip_decodes_to_the_tar() {
        let (tmp, base, target) = tree();
        for i in 0..40 {
            let data: Vec<u8> = (0..100_000u32)
                .map(|j| (j.wrapping_mul(2_654_435_761) >> (i % 24)) as u8)
                .collect();
            fs::write(target.join(format!("etc/f{i}")), data).unwrap();
        }
        let base = vec![base];
        let opts = DiffOptions::default();
        let plain = tmp.path().join("l.tar");
        let layer = |compression, threads| LayerOptions {
            compression,
            level: None,
            source_date_epoch: None,
            threads,
        };
        let none = write_layer(&base, &target, &plain, None, opts, &layer(Compression::None, None)).unwrap();
        assert_eq!(none.digest, none.diff_id);
        let mut digests = Vec::new();
        for (codec, threads) in [
            (Compression::Gzip, 1),
            (Compression::Gzip, 5),
            (Compression::Zstd, 1),
            (Compression::Zstd, 3),
        ] {
            let out = tmp.path().join(format!("l-{threads}"));
            let r = write_layer(&base, &target, &out, None, opts, &layer(codec, Some(threads))).unwrap();
            assert_eq!(r.diff_id, none.diff_id);
            assert_eq!(r.size, fs::metadata(&out).unwrap().len());
            digests.push(r.digest);
            if codec == Compression::Gzip {
                let mut raw = Vec::new();
                flate2::read::MultiGzDecoder::new(fs::File::open(&out).unwrap())
                    .read_to_end(&mut raw)
                    .unwrap();
                assert_eq!(raw, fs::read(&plain).unwrap());
            }
        }
        assert_eq!(
            digests[0], digests[1],
            "gzip output must not depend on the thread count"
        );
        assert_eq!(
            digests[2], digests[3],
            "zstd output must not depend on the thread count"
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (tmp, base, target) = tree();
        let missing = tmp.path().join("missing");
        assert!(matches!(
            diff(&[missing], &target, DiffOptions::default()),
            Err(CoreError::Io { .. })
        ));
        let two = vec![base.clone(), base];
        assert!(matches!(
            diff(&two, &target, DiffOptions::default()),
            Err(CoreError::InvalidTree { .. })
        ));
        let bad = vec![Change {
            kind: ChangeKind::Added,
            path: "../x".into(),
            metadata_only: false,
        }];
        let out = tmp.path().join("l");
        let r = write_layer(
            &two[..1],
            &target,
            &out,
            Some(bad),
            DiffOptions::default(),
            &LayerOptions::default(),
        );
        assert!(matches!(r, Err(CoreError::InvalidTree { .. })));
    }
}
