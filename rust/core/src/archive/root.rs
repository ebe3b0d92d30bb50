//! Root-confined path resolution: every directory an archive entry touches is opened here.
//!
//! Invariants: a path handed out by [`Root`] is always a directory inside the root: symlinks met on the way
//! are followed *as if the root were `/`* (absolute targets restart at the root, `..` stops at the root), the
//! way `openat2(RESOLVE_IN_ROOT)` does, which is used when the kernel has it; otherwise the same rules are
//! applied component by component with `O_NOFOLLOW` opens (never a path string handed to the kernel whole).
//! The last component of an entry is never followed: callers act on it with `*at` calls relative to the
//! returned directory and `AT_SYMLINK_NOFOLLOW` / `O_NOFOLLOW`. Cached directory handles are dropped whenever
//! anything is removed or replaced, so a cached handle never names a directory that left the tree.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{mkdirat, openat, openat2, readlinkat, statat, AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD};

/// Symlinks followed in one resolution before giving up with `ELOOP` (Linux's own limit).
const MAX_SYMLINKS: usize = 40;
/// Directory handles kept open between entries (tar streams visit directories in runs).
const CACHE_MAX: usize = 128;

/// A clean relative path: no empty, `.` or `..` components (see [`clean`]).
pub type Components = Vec<Vec<u8>>;

/// Splits an untrusted archive path into clean components. A leading `/` is dropped (names are relative to
/// the root, as GNU tar and docker treat them), `.` and empty components vanish, and `..` pops a component;
/// a `..` that would climb above the root is refused (`None`).
pub fn clean(unsafe_path: &[u8]) -> Option<Components> {
    let mut out: Components = Vec::new();
    for comp in unsafe_path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

/// Joins components with `/` (no leading slash).
pub fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

/// The directory that confines every write.
pub struct Root {
    fd: OwnedFd,
    use_openat2: bool,
    cache: HashMap<Vec<u8>, OwnedFd>,
}

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

impl Root {
    /// Opens `path` (which must be a directory) as a root. `force_walk` uses the component walk even where
    /// `openat2` exists (tests exercise both).
    pub fn open(path: &Path, force_walk: bool) -> io::Result<Root> {
        let fd = openat(CWD, path, dir_flags(), Mode::empty())?;
        let use_openat2 = !force_walk && openat2_works(&fd);
        Ok(Root {
            fd,
            use_openat2,
            cache: HashMap::new(),
        })
    }

    /// True when resolution uses `openat2(RESOLVE_IN_ROOT)`.
    pub fn uses_openat2(&self) -> bool {
        self.use_openat2
    }

    /// The root directory itself.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Forgets cached directory handles; call after anything was removed or replaced.
    pub fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// Opens directory `comps` inside the root (symlinks resolved inside it). With `create`, missing
    /// directories are made (mode 0755, as containerd and docker do for implied parents).
    pub fn dir(&mut self, comps: &[Vec<u8>], create: bool) -> io::Result<BorrowedFd<'_>> {
        if comps.is_empty() {
            return Ok(self.fd.as_fd());
        }
        let key = join(comps);
        if !self.cache.contains_key(&key) {
            let fd = self.open_dir(comps, create)?;
            if self.cache.len() >= CACHE_MAX {
                self.cache.clear();
            }
            self.cache.insert(key.clone(), fd);
        }
        // The key was inserted just above when missing.
        self.cache
            .get(&key)
            .map(AsFd::as_fd)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn open_dir(&self, comps: &[Vec<u8>], create: bool) -> io::Result<OwnedFd> {
        if self.use_openat2 {
            let key = join(comps);
            match self.openat2_dir(&key) {
                Err(e) if create && e == rustix::io::Errno::NOENT => {}
                other => return other.map_err(io::Error::from),
            }
            // Missing directories (possibly behind a dangling symlink, whose target is then made inside the root,
            // as containerd's MkdirAll on a root-resolved path does): the component walk creates them.
            return self.walk(comps, true);
        }
        self.walk(comps, create)
    }

    fn openat2_dir(&self, rel: &[u8]) -> rustix::io::Result<OwnedFd> {
        // NOTE: openat2(2): with RESOLVE_IN_ROOT a rename or mount anywhere on the system while ".." is resolved
        // gives EAGAIN, "the caller should retry" (seen in the suite on a busy machine); after 16 tries the
        // component walk, equally confined, answers instead.
        for _ in 0..16 {
            match openat2(
                &self.fd,
                rel,
                dir_flags(),
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(rustix::io::Errno::AGAIN) => {}
                other => return other,
            }
        }
        let comps: Vec<Vec<u8>> = rel.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
        self.walk(&comps, false)
            .map_err(|e| rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO))
    }

    /// The portable resolver: one `O_NOFOLLOW` open per component, symlinks expanded by hand inside the root.
    fn walk(&self, comps: &[Vec<u8>], create: bool) -> io::Result<OwnedFd> {
        // `stack` holds the open directories from the root down; `todo` the components still to visit (reversed).
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut todo: Vec<Vec<u8>> = comps.iter().rev().cloned().collect();
        let mut links = 0usize;
        while let Some(name) = todo.pop() {
            if name.is_empty() || name == b"." {
                continue;
            }
            if name == b".." {
                stack.pop();
                continue;
            }
            let cur = stack.last().map_or(self.fd.as_fd(), AsFd::as_fd);
            let nofollow = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match openat(cur, name.as_slice(), nofollow, Mode::empty()) {
                Ok(fd) => {
                    stack.push(fd);
                    continue;
                }
                Err(e) if e == rustix::io::Errno::NOENT && create => {
                    match mkdirat(cur, name.as_slice(), Mode::from_raw_mode(0o755)) {
                        Ok(()) => {}
                        Err(e) if e == rustix::io::Errno::EXIST => {}
                        Err(e) => return Err(e.into()),
                    }
                    todo.push(name);
                    continue;
                }
                Err(e) if e == rustix::io::Errno::NOTDIR || e == rustix::io::Errno::LOOP => {}
                Err(e) => return Err(e.into()),
            }
            // Not a directory: a symlink is expanded inside the root, anything else is ENOTDIR.
            let st = statat(cur, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                return Err(rustix::io::Errno::NOTDIR.into());
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(rustix::io::Errno::LOOP.into());
            }
            let target = readlinkat(cur, name.as_slice(), Vec::new())?.into_bytes();
            if target.first() == Some(&b'/') {
                stack.clear();
            }
            for comp in target.split(|&b| b == b'/').rev() {
                todo.push(comp.to_vec());
            }
        }
        match stack.pop() {
            Some(fd) => Ok(fd),
            None => self.fd.try_clone(),
        }
    }
}

/// Probes whether `openat2(RESOLVE_IN_ROOT)` works here (Linux 5.6+, not blocked by seccomp).
fn openat2_works(root: &OwnedFd) -> bool {
    openat2(root, ".", dir_flags(), Mode::empty(), ResolveFlags::IN_ROOT).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_refuses_climbing() {
        assert_eq!(
            clean(b"/a/./b//c/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(clean(b"a/../b").unwrap(), vec![b"b".to_vec()]);
        assert!(clean(b"../x").is_none());
        assert!(clean(b"a/../../x").is_none());
        assert!(clean(b"./").unwrap().is_empty());
    }

    fn check_confined(force_walk: bool) {
        let tmp = std::env::temp_dir().join(format!("imgcore-root-{}-{force_walk}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let root = tmp.join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(tmp.join("outside")).unwrap();
        symlink("/", root.join("abs")).unwrap();
        symlink("../../..", root.join("d/up")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let mut r = Root::open(&root, force_walk).unwrap();
        assert_eq!(r.uses_openat2(), !force_walk);
        // abs/outside resolves to root/outside, created inside the root.
        r.dir(&[b"abs".to_vec(), b"outside".to_vec(), b"new".to_vec()], true)
            .unwrap();
        assert!(root.join("outside/new").is_dir());
        r.dir(&[b"d".to_vec(), b"up".to_vec(), b"x".to_vec()], true).unwrap();
        assert!(root.join("x").is_dir());
        let err = r.dir(&[b"loop1".to_vec(), b"z".to_vec()], true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        assert!(std::fs::read_dir(tmp.join("outside")).unwrap().next().is_none());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn confined_openat2() {
        check_confined(false);
    }

    #[test]
    fn confined_walk() {
        check_confined(true);
    }
}
