//! What the diff knows about one filesystem entry: `lstat` plus extended attributes, read without following
//! symlinks, and the comparisons built on them.
//!
//! Invariants: overlayfs' private attributes (`trusted.overlay.*`, `user.overlay.*`) never appear in
//! [`Meta::xattrs`] (they describe the union, not the file) and are decoded into [`OverlayInfo`] instead;
//! `xattrs` is sorted by name so two entries compare and serialise the same way whatever order the kernel
//! lists them in.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{CoreError, IoContext, Result};

/// The kind of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
    /// Unix socket: never part of a layer (docker and umoci skip them too).
    Socket,
}

/// overlayfs bookkeeping found on an upper-directory entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayInfo {
    /// `trusted.overlay.opaque=y`: the lower layers' children of this directory are hidden.
    pub opaque: bool,
    /// `trusted.overlay.whiteout` (kernel >= 6.7 "xwhiteout"): a regular file standing for a deletion.
    pub whiteout_xattr: bool,
    /// `trusted.overlay.redirect`: a renamed directory or metacopy file whose data lives elsewhere.
    pub redirect: Option<Vec<u8>>,
    /// `trusted.overlay.metacopy`: only the metadata was copied up; the data is in the lower layer.
    pub metacopy: bool,
}

/// Extended attributes as (name, value) pairs, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// `lstat` + xattrs of one entry.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Entry type.
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files; 0 otherwise for comparison purposes).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds part.
    pub mtime_nsec: i64,
    /// Device number of device nodes.
    pub rdev: u64,
    /// Filesystem device (hardlink identity, with `ino`).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Link count.
    pub nlink: u64,
    /// Extended attributes (name, value), sorted by name, overlay-private ones removed.
    pub xattrs: Xattrs,
    /// overlayfs attributes (only meaningful on an upper directory).
    pub overlay: OverlayInfo,
}

impl Meta {
    /// Reads `lstat` and the xattrs of `path`.
    pub fn read(path: &Path) -> Result<Meta> {
        let md = fs::symlink_metadata(path).at(path)?;
        Self::from_metadata(path, &md)
    }

    /// Like [`Meta::read`] but `None` when `path` does not exist (or a parent is not a directory).
    pub fn read_opt(path: &Path) -> Result<Option<Meta>> {
        match fs::symlink_metadata(path) {
            Ok(md) => Self::from_metadata(path, &md).map(Some),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
            Err(e) => Err(CoreError::io(path, e)),
        }
    }

    fn from_metadata(path: &Path, md: &fs::Metadata) -> Result<Meta> {
        let ft = md.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Socket
        };
        let (xattrs, overlay) = if kind == Kind::Socket {
            (Vec::new(), OverlayInfo::default())
        } else {
            xattrs(path)?
        };
        Ok(Meta {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: if kind == Kind::File { md.size() } else { 0 },
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
            rdev: md.rdev(),
            dev: md.dev(),
            ino: md.ino(),
            nlink: md.nlink(),
            xattrs,
            overlay,
        })
    }

    /// True for an overlayfs whiteout: a 0/0 character device, or a file marked with the whiteout xattr.
    pub fn is_whiteout(&self) -> bool {
        (self.kind == Kind::Char && self.rdev == 0) || (self.kind == Kind::File && self.overlay.whiteout_xattr)
    }

    /// Same ownership, mode, mtime (ns) and xattrs; says nothing about content.
    pub fn same_attrs(&self, other: &Meta) -> bool {
        self.mode == other.mode
            && self.uid == other.uid
            && self.gid == other.gid
            && self.mtime == other.mtime
            && self.mtime_nsec == other.mtime_nsec
            && self.xattrs == other.xattrs
    }

    /// Same attributes except the mtime.
    pub fn same_attrs_but_mtime(&self, other: &Meta) -> bool {
        self.mode == other.mode && self.uid == other.uid && self.gid == other.gid && self.xattrs == other.xattrs
    }

    /// Major device number (glibc's encoding).
    pub fn dev_major(&self) -> u64 {
        ((self.rdev >> 32) & 0xffff_f000) | ((self.rdev >> 8) & 0x0000_0fff)
    }

    /// Minor device number (glibc's encoding).
    pub fn dev_minor(&self) -> u64 {
        ((self.rdev >> 12) & 0xffff_ff00) | (self.rdev & 0x0000_00ff)
    }
}

fn is_overlay_private(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error())
}

/// Lists and reads all xattrs of `path` (not following a final symlink).
fn xattrs(path: &Path) -> Result<(Xattrs, OverlayInfo)> {
    let mut stack = [0u8; 1024];
    let names: Vec<u8> = match rustix::fs::llistxattr(path, &mut stack[..]) {
        Ok(0) => return Ok((Vec::new(), OverlayInfo::default())),
        Ok(n) => stack[..n].to_vec(),
        Err(e) if e == rustix::io::Errno::RANGE => {
            let n = rustix::fs::llistxattr_query(path).map_err(io::Error::from).at(path)?;
            let mut v = vec![0u8; n + 256];
            let got = rustix::fs::llistxattr(path, &mut v[..])
                .map_err(io::Error::from)
                .at(path)?;
            v.truncate(got);
            v
        }
        Err(e) => {
            let e = io::Error::from(e);
            if unsupported(&e) {
                return Ok((Vec::new(), OverlayInfo::default()));
            }
            return Err(CoreError::io(path, e));
        }
    };
    let mut out = Vec::new();
    let mut ovl = OverlayInfo::default();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Some(value) = getxattr(path, name)? else { continue };
        if is_overlay_private(name) {
            let suffix = name.split_at(name.iter().position(|b| *b == b'.').unwrap_or(0) + 1).1;
            match suffix.strip_prefix(b"overlay.") {
                Some(b"opaque") => ovl.opaque = value == b"y",
                Some(b"whiteout") => ovl.whiteout_xattr = true,
                Some(b"redirect") => ovl.redirect = Some(value),
                Some(b"metacopy") => ovl.metacopy = true,
                _ => {}
            }
            continue;
        }
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok((out, ovl))
}

fn getxattr(path: &Path, name: &[u8]) -> Result<Option<Vec<u8>>> {
    let name_os = std::ffi::OsStr::from_bytes(name);
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name_os, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if e == rustix::io::Errno::RANGE => {
                let n = rustix::fs::lgetxattr_query(path, name_os)
                    .map_err(io::Error::from)
                    .at(path)?;
                buf = vec![0u8; n + 64];
            }
            // Removed between list and get, or an attribute we may not read (trusted.* as non-root).
            Err(e)
                if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::PERM || e == rustix::io::Errno::ACCESS =>
            {
                return Ok(None)
            }
            Err(e) => return Err(CoreError::io(path, io::Error::from(e))),
        }
    }
}

/// Reads a symlink's target.
pub fn read_link(path: &Path) -> Result<PathBuf> {
    fs::read_link(path).at(path)
}

/// Compares two regular files byte for byte (both must already have the same size).
pub fn same_content(a: &Path, b: &Path) -> Result<bool> {
    const CHUNK: usize = 256 * 1024;
    let mut fa = File::open(a).at(a)?;
    let mut fb = File::open(b).at(b)?;
    let mut ba = vec![0u8; CHUNK];
    let mut bb = vec![0u8; CHUNK];
    loop {
        let na = read_full(&mut fa, &mut ba).at(a)?;
        let nb = read_full(&mut fb, &mut bb).at(b)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na < CHUNK {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
pub fn read_full(f: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
