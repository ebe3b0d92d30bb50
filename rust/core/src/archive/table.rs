//! Per-layer file tables for image analysis: one streaming pass over a layer blob (through the same decoder and
//! tar reader as extraction) yields one row per entry, in archive order, as columns.
//!
//! Invariants: memory is bounded by the table (about 80 bytes per row plus the path bytes), never by the layer's
//! bytes: file content is hashed as it streams by; paths are interned in a per-layer string table (a path or
//! link target that occurs twice is stored once) joined by NUL bytes, so a string containing NUL is refused;
//! the interning index holds 4-byte string numbers (never a second copy of a path), and the columns are
//! trimmed to their length before they are handed over;
//! rows keep the archive's order and its duplicates (the change kind against lower layers is decided later,
//! over the tables in layer order); a whiteout row names the path it removes, an opaque row the directory it
//! empties (`""` is the root); every path is cleaned as extraction cleans it, and an entry that climbs out of
//! the root is `UnsafePath` as in extraction; the blob's digest is checked against the expected one when given,
//! so a table is only ever trusted (and cached) for the digest it was really read from.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::decode::{Pipeline, StreamSummary};
use super::reader::{entry_name, for_each_entry, whiteout, Kind, Meta, Whiteout};
use super::root::{clean, join};
use crate::digest::Digest;
use crate::error::{CoreError, Result};

/// Row kind: regular file.
pub const KIND_FILE: u8 = 0;
/// Row kind: directory.
pub const KIND_DIR: u8 = 1;
/// Row kind: symbolic link.
pub const KIND_SYMLINK: u8 = 2;
/// Row kind: hard link (the link column names its target).
pub const KIND_HARDLINK: u8 = 3;
/// Row kind: character device.
pub const KIND_CHAR: u8 = 4;
/// Row kind: block device.
pub const KIND_BLOCK: u8 = 5;
/// Row kind: named pipe.
pub const KIND_FIFO: u8 = 6;
/// Row kind: whiteout (`.wh.NAME`); the path is the one it removes.
pub const KIND_WHITEOUT: u8 = 7;
/// Row kind: opaque marker (`.wh..wh..opq`); the path is the directory it empties.
pub const KIND_OPAQUE: u8 = 8;
/// Row kind: any other tar type (kept so nothing is silently left out).
pub const KIND_OTHER: u8 = 9;

/// Xattr flag: the entry has at least one extended attribute.
pub const XATTR_ANY: u8 = 1;
/// Xattr flag: `security.capability` (file capabilities, what `setcap` writes).
pub const XATTR_CAPABILITY: u8 = 2;
/// Xattr flag: a POSIX ACL (`system.posix_acl_access` / `_default`).
pub const XATTR_ACL: u8 = 4;
/// Xattr flag: an `SELinux` label (`security.selinux`).
pub const XATTR_SELINUX: u8 = 8;
/// Xattr flag: any other attribute (`user.*`, `trusted.*`, ...).
pub const XATTR_OTHER: u8 = 16;

/// The table of one layer, one element per row in each column (the sha256 column holds 32 bytes per row).
#[derive(Debug, Default)]
pub struct LayerTable {
    /// Index of the row's path in the string table.
    pub path: Vec<u32>,
    /// One of the `KIND_*` values.
    pub kind: Vec<u8>,
    /// File size (the real size of a sparse file); 0 for every other kind.
    pub size: Vec<u64>,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: Vec<u32>,
    /// Owner (clamped to `u32::MAX`).
    pub uid: Vec<u32>,
    /// Group (clamped to `u32::MAX`).
    pub gid: Vec<u32>,
    /// Modification time, seconds.
    pub mtime: Vec<i64>,
    /// SHA-256 of the file's content, 32 bytes per row (zeros for anything but a file).
    pub sha256: Vec<u8>,
    /// Index of the link target (symlink text or hardlink path, cleaned) in the string table; -1 for none.
    pub link: Vec<i32>,
    /// `XATTR_*` bits.
    pub xattrs: Vec<u8>,
    /// The first 8 bytes (little-endian) of the SHA-256 of the sorted xattrs; 0 without xattrs.
    pub xattr_hash: Vec<u64>,
    /// The string table: every string followed by one NUL byte.
    pub strings: Vec<u8>,
    /// Start offset of each string in `strings` (its length is up to the next NUL).
    pub offsets: Vec<u64>,
    /// What the decoder measured (digest, compression, both sizes; its `diff_id` only for a plain tar, whose
    /// digest it is: the stream of a compressed blob is not hashed).
    pub summary: Option<StreamSummary>,
}

impl LayerTable {
    /// Gives back the columns' spare capacity (they are handed over whole, capacity included).
    fn trim(&mut self) {
        self.path.shrink_to_fit();
        self.kind.shrink_to_fit();
        self.size.shrink_to_fit();
        self.mode.shrink_to_fit();
        self.uid.shrink_to_fit();
        self.gid.shrink_to_fit();
        self.mtime.shrink_to_fit();
        self.sha256.shrink_to_fit();
        self.link.shrink_to_fit();
        self.xattrs.shrink_to_fit();
        self.xattr_hash.shrink_to_fit();
        self.strings.shrink_to_fit();
        self.offsets.shrink_to_fit();
    }
}

struct Builder {
    table: LayerTable,
    /// Open addressing over string numbers (`u32::MAX`: empty), hashed by the strings' bytes in `table`.
    slots: Vec<u32>,
    ctx: String,
    buf: Vec<u8>,
}

const EMPTY: u32 = u32::MAX;

fn slot_of(s: &[u8], slots: usize) -> usize {
    let mut h = rustc_hash::FxHasher::default();
    std::hash::Hasher::write(&mut h, s);
    // Fibonacci hashing spreads FxHash's bits over the table (`slots` is a power of two).
    let x = std::hash::Hasher::finish(&h).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    usize::try_from(x >> (64 - slots.trailing_zeros())).unwrap_or(0)
}

fn xattr_columns(xattrs: &[(Vec<u8>, Vec<u8>)]) -> (u8, u64) {
    if xattrs.is_empty() {
        return (0, 0);
    }
    let mut bits = XATTR_ANY;
    let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = xattrs.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for (k, v) in sorted {
        bits |= match k.as_slice() {
            b"security.capability" => XATTR_CAPABILITY,
            b"system.posix_acl_access" | b"system.posix_acl_default" => XATTR_ACL,
            b"security.selinux" => XATTR_SELINUX,
            _ => XATTR_OTHER,
        };
        h.update((k.len() as u64).to_le_bytes());
        h.update(k);
        h.update((v.len() as u64).to_le_bytes());
        h.update(v);
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (bits, u64::from_le_bytes(first))
}

/// String `i` of a string table as the reader writes it (each string followed by one NUL, `offsets` where
/// each starts); empty for an index or offsets outside it (bad input never panics).
pub fn string_at<'a>(strings: &'a [u8], offsets: &[u64], i: usize) -> &'a [u8] {
    let Some(&start) = offsets.get(i) else {
        return &[];
    };
    let end = offsets.get(i + 1).map_or(strings.len() as u64, |&o| o);
    let (a, b) = (usize::try_from(start).unwrap_or(0), usize::try_from(end).unwrap_or(0));
    strings.get(a..b.saturating_sub(1)).unwrap_or_default()
}

impl Builder {
    /// String `i` of the table being built.
    fn string(&self, i: u32) -> &[u8] {
        string_at(&self.table.strings, &self.table.offsets, i as usize)
    }

    /// The slot holding `s`, or the empty slot where it goes.
    fn find(&self, s: &[u8]) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = slot_of(s, self.slots.len());
        loop {
            let i = self.slots[at];
            if i == EMPTY || self.string(i) == s {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    fn intern(&mut self, s: &[u8], entry: &[u8]) -> Result<u32> {
        if self.table.offsets.len() * 2 >= self.slots.len() {
            let size = (self.slots.len() * 2).max(1024);
            self.slots = vec![EMPTY; size];
            for i in 0..self.table.offsets.len() {
                let i = u32::try_from(i).unwrap_or(EMPTY);
                let at = self.find(self.string(i));
                self.slots[at] = i;
            }
        }
        let at = self.find(s);
        if self.slots[at] != EMPTY {
            return Ok(self.slots[at]);
        }
        if s.contains(&0) {
            return Err(CoreError::InvalidArchive {
                context: format!("{}: entry {:?}", self.ctx, entry_name(entry)),
                reason: "a path or link name contains a NUL byte".into(),
            });
        }
        // Indexes fit the link column's i32 (and so the path column's u32).
        let i = i32::try_from(self.table.offsets.len()).map_err(|_| CoreError::LimitExceeded {
            context: self.ctx.clone(),
            reason: "more than 2^31 distinct paths in one layer".into(),
        })?;
        let i = i.unsigned_abs();
        self.table.offsets.push(self.table.strings.len() as u64);
        self.table.strings.extend_from_slice(s);
        self.table.strings.push(0);
        self.slots[at] = i;
        Ok(i)
    }

    fn unsafe_path(&self, path: &[u8], reason: &str) -> CoreError {
        CoreError::UnsafePath {
            context: self.ctx.clone(),
            entry: entry_name(path),
            reason: reason.to_owned(),
        }
    }

    fn push(&mut self, path: u32, kind: u8, meta: &Meta, size: u64, sha: &[u8; 32], link: i32) {
        let t = &mut self.table;
        let (bits, xh) = xattr_columns(&meta.xattrs);
        t.path.push(path);
        t.kind.push(kind);
        t.size.push(size);
        t.mode.push(meta.mode);
        t.uid.push(u32::try_from(meta.uid).unwrap_or(u32::MAX));
        t.gid.push(u32::try_from(meta.gid).unwrap_or(u32::MAX));
        t.mtime.push(meta.mtime);
        t.sha256.extend_from_slice(sha);
        t.link.push(link);
        t.xattrs.push(bits);
        t.xattr_hash.push(xh);
    }

    fn entry(&mut self, meta: &Meta, data: &mut dyn Read) -> Result<()> {
        let path = cleaned(&meta.path).ok_or_else(|| self.unsafe_path(&meta.path, "escapes the root (\"..\")"))?;
        if path.is_empty() {
            if meta.kind == Kind::Dir {
                return Ok(());
            }
            return Err(self.unsafe_path(&meta.path, "names the root directory itself"));
        }
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        let zero = [0u8; 32];
        match whiteout(name).map_err(|reason| self.unsafe_path(&meta.path, reason))? {
            Whiteout::No => {}
            Whiteout::Opaque => {
                let p = self.intern(parent, &meta.path)?;
                self.push(p, KIND_OPAQUE, meta, 0, &zero, -1);
                return Ok(());
            }
            Whiteout::Aufs => return Ok(()),
            Whiteout::Removes(target) => {
                let mut real = parent.to_vec();
                if !real.is_empty() {
                    real.push(b'/');
                }
                real.extend_from_slice(target);
                let p = self.intern(&real, &meta.path)?;
                self.push(p, KIND_WHITEOUT, meta, 0, &zero, -1);
                return Ok(());
            }
        }
        let p = self.intern(&path, &meta.path)?;
        let (kind, link) = match meta.kind {
            Kind::File => (KIND_FILE, -1),
            Kind::Dir => (KIND_DIR, -1),
            Kind::Symlink => (KIND_SYMLINK, link_index(self.intern(&meta.link, &meta.path)?)),
            Kind::Hardlink => {
                let t = cleaned(&meta.link)
                    .ok_or_else(|| self.unsafe_path(&meta.path, "hardlink target escapes the root"))?;
                (KIND_HARDLINK, link_index(self.intern(&t, &meta.path)?))
            }
            Kind::Char => (KIND_CHAR, -1),
            Kind::Block => (KIND_BLOCK, -1),
            Kind::Fifo => (KIND_FIFO, -1),
            Kind::Other(_) => (KIND_OTHER, -1),
        };
        let mut sha = zero;
        let mut size = 0;
        if kind == KIND_FILE {
            size = meta.file_size();
            let mut h = Sha256::new();
            if let Some(sparse) = &meta.sparse {
                // The content as extracted: data segments at their offsets, holes read as zeros.
                let zeros = [0u8; 8192];
                let mut pos = 0u64;
                for &(off, len) in &sparse.map {
                    feed_zeros(&mut h, &zeros, off - pos);
                    self.hash_exact(data, len, &mut h, &meta.path)?;
                    pos = off + len;
                }
                feed_zeros(&mut h, &zeros, sparse.real_size - pos);
            } else {
                self.hash_exact(data, meta.size, &mut h, &meta.path)?;
            }
            sha.copy_from_slice(&h.finalize());
        }
        self.push(p, kind, meta, size, &sha, link);
        Ok(())
    }

    fn hash_exact(&mut self, data: &mut dyn Read, mut n: u64, h: &mut Sha256, entry: &[u8]) -> Result<()> {
        while n > 0 {
            let want = usize::try_from(n).map_or(self.buf.len(), |n| n.min(self.buf.len()));
            let got = data
                .read(&mut self.buf[..want])
                .map_err(|e| CoreError::InvalidArchive {
                    context: format!("{}: entry {:?}", self.ctx, entry_name(entry)),
                    reason: format!("reading the entry's data: {e}"),
                })?;
            if got == 0 {
                return Err(CoreError::InvalidArchive {
                    context: format!("{}: entry {:?}", self.ctx, entry_name(entry)),
                    reason: "truncated: entry data ends early".into(),
                });
            }
            h.update(&self.buf[..got]);
            n -= got as u64;
        }
        Ok(())
    }
}

/// A path as extraction cleans it (`join(clean(p))`), borrowed when it is already clean but for leading `./`
/// or `/` and trailing `/` (the usual case: no allocation per entry); `None` when it climbs out of the root.
fn cleaned(p: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut core = p;
    loop {
        if let Some(rest) = core.strip_prefix(b"./") {
            core = rest;
        } else if let Some(rest) = core.strip_prefix(b"/") {
            core = rest;
        } else {
            break;
        }
    }
    while let Some(rest) = core.strip_suffix(b"/") {
        core = rest;
    }
    if !core.is_empty()
        && core
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
    {
        return Some(Cow::Borrowed(core));
    }
    clean(p).map(|c| Cow::Owned(join(&c)))
}

/// A string index as the link column stores it (`intern` keeps every index below 2^31).
fn link_index(i: u32) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

fn feed_zeros(h: &mut Sha256, zeros: &[u8; 8192], mut n: u64) {
    while n > 0 {
        let k = usize::try_from(n).map_or(zeros.len(), |n| n.min(zeros.len()));
        h.update(&zeros[..k]);
        n -= k as u64;
    }
}

/// Reads the layer blob at `src` once and returns its table. With `expected`, the blob's digest must match.
pub fn layer_table(src: &Path, expected: Option<&Digest>, max_bytes: u64, max_entries: u64) -> Result<LayerTable> {
    let ctx = format!("analyze layer {}", src.display());
    let mut b = Builder {
        table: LayerTable::default(),
        slots: Vec::new(),
        ctx: ctx.clone(),
        buf: vec![0u8; 256 * 1024],
    };
    // The diff_id is not needed here (the digest is what is checked and what keys the cache): one hash less.
    let mut pipe = Pipeline::start_digest_only(src, max_bytes)?;
    for_each_entry(&mut pipe, &ctx, max_entries, max_bytes, |meta, data| {
        b.entry(meta, data)
    })?;
    let summary = pipe.finish()?;
    if let Some(want) = expected {
        if summary.digest != *want {
            return Err(CoreError::DigestMismatch {
                context: ctx,
                expected: want.to_string(),
                actual: summary.digest.to_string(),
            });
        }
    }
    drop(b.slots);
    let mut table = b.table;
    table.summary = Some(summary);
    table.trim();
    Ok(table)
}

/// Tables of many layers, read in parallel (rayon), in input order; each result stands alone.
pub fn layer_tables(layers: &[(PathBuf, Option<Digest>)], max_bytes: u64, max_entries: u64) -> Vec<Result<LayerTable>> {
    let tables = layers
        .par_iter()
        .map(|(src, expected)| layer_table(src, expected.as_ref(), max_bytes, max_entries))
        .collect();
    // The readers' buffers and the columns' growth are freed by now: give their pages back.
    super::figures::release_freed_memory();
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, typ, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::new(*typ));
            if *typ == b'2' || *typ == b'1' {
                h.set_link_name("f").unwrap();
                h.set_size(0);
            }
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            if *typ == b'0' {
                out.extend_from_slice(data);
                out.resize(out.len().div_ceil(512) * 512, 0);
            }
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    #[test]
    fn cleaned_is_what_extraction_cleans() {
        for p in [
            &b"a/b"[..],
            b"./a/b",
            b"/a/b/",
            b"a//b",
            b"a/./b",
            b"a/../b",
            b"..",
            b"../x",
            b"./",
            b".",
            b"",
            b"a/..",
            b"./././a",
            b"//a",
            b"a/b/.",
            b"a/.b/..c",
            b"...",
        ] {
            let want = clean(p).map(|c| join(&c));
            assert_eq!(
                cleaned(p).map(Cow::into_owned),
                want,
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn rows_follow_the_archive() {
        let dir = std::env::temp_dir().join(format!("imgcore-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("layer.tar");
        let tar = tar_of(&[
            ("./", b'5', b""),
            ("a/", b'5', b""),
            ("a/f", b'0', b"hello"),
            ("a/.wh.g", b'0', b""),
            ("a/.wh..wh..opq", b'0', b""),
            ("l", b'2', b""),
            ("a/f", b'0', b"hello"),
        ]);
        std::fs::write(&src, &tar).unwrap();
        let t = layer_table(&src, None, 1 << 30, 1000).unwrap();
        assert_eq!(
            t.kind,
            vec![KIND_DIR, KIND_FILE, KIND_WHITEOUT, KIND_OPAQUE, KIND_SYMLINK, KIND_FILE]
        );
        let s = |i: u32| {
            let a = t.offsets[i as usize] as usize;
            let e = t.strings[a..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8(t.strings[a..a + e].to_vec()).unwrap()
        };
        let paths: Vec<String> = t.path.iter().map(|&i| s(i)).collect();
        assert_eq!(paths, ["a", "a/f", "a/g", "a", "l", "a/f"]);
        assert_eq!(t.path[1], t.path[5], "paths are interned");
        assert_eq!(s(t.link[4].unsigned_abs()), "f");
        assert_eq!(&t.sha256[32..64], Sha256::digest(b"hello").as_slice());
        assert_eq!(t.size[1], 5);
        let wrong = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        assert!(matches!(
            layer_table(&src, Some(&wrong), 1 << 30, 1000),
            Err(CoreError::DigestMismatch { .. })
        ));
        std::fs::write(&src, tar_of(&[("../x", b'0', b"")])).unwrap();
        assert!(matches!(
            layer_table(&src, None, 1 << 30, 1000),
            Err(CoreError::UnsafePath { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
