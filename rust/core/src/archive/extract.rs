//! Confined layer extraction with OCI whiteouts, in two forms: applied onto a root filesystem (flatten) or
//! kept as overlayfs markers (overlay).
//!
//! Invariants:
//! - Every directory touched is opened through [`Root`] (resolved inside `dest`); the final component of an
//!   entry is acted on with `*at` calls that never follow it. Existing entries are replaced by unlinking and
//!   re-creating (`O_EXCL`), never by truncating or writing through them.
//! - Whiteouts (`.wh.NAME`, `.wh..wh..opq`) only remove what lower layers put there, wherever they sit in the
//!   archive: paths this layer wrote are kept (OCI image-spec, layer.md "Whiteouts").
//! - Directory modes and mtimes are applied after all entries, deepest first, so writing children does not
//!   disturb them and read-only directories can still be filled.
//! - Errors name the entry; nothing outside `dest` is created, changed or removed, whatever the archive holds.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rustix::fs::{
    chownat, fchmod, fchown, fsetxattr, futimens, linkat, makedev, mkdirat, mknodat, openat, statat, symlinkat,
    unlinkat, utimensat, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use super::decode::{ErrorSlot, Pipeline};
use super::reader::{entry_name, for_each_entry, Kind, Meta};
use super::root::{clean, join, Root};
use crate::digest::Digest;
use crate::error::{CoreError, IoContext, Result};

/// Default limit on uncompressed bytes per layer (a guard against decompression bombs).
pub const DEFAULT_MAX_BYTES: u64 = 64 << 30;
/// Default limit on entries per layer.
pub const DEFAULT_MAX_ENTRIES: u64 = 4_000_000;
/// Deepest directory tree a whiteout or replacement will remove (bounds recursion).
const MAX_REMOVE_DEPTH: usize = 4096;
const WH_PREFIX: &[u8] = b".wh.";
const WH_OPAQUE: &[u8] = b".wh..wh..opq";
const COPY_BUF: usize = 1 << 20;

/// A range of ids: `inner..inner+count` in the archive becomes `outer..outer+count` on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First id as stored in the archive.
    pub inner: u64,
    /// First id on disk.
    pub outer: u64,
    /// Number of ids in the range.
    pub count: u64,
}

/// How to extract.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Keep whiteouts as overlayfs markers instead of applying them.
    pub overlay: bool,
    /// Expected digest of the blob bytes.
    pub expected_digest: Option<Digest>,
    /// Expected digest of the uncompressed tar.
    pub expected_diff_id: Option<Digest>,
    /// Keep archive uid/gid; `None` means "when running as root".
    pub same_owner: Option<bool>,
    /// uid ranges to remap (empty: none).
    pub uid_map: Vec<IdMap>,
    /// gid ranges to remap (empty: none).
    pub gid_map: Vec<IdMap>,
    /// Create device nodes and FIFOs (needs privileges); otherwise they are skipped and reported.
    pub allow_devices: bool,
    /// Limit on uncompressed bytes.
    pub max_bytes: u64,
    /// Limit on entries.
    pub max_entries: u64,
    /// Resolve paths component by component even where `openat2` exists (for tests).
    pub force_walk: bool,
    /// Set from another thread to stop between entries with [`CoreError::Interrupted`] (Ctrl-C).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            overlay: false,
            expected_digest: None,
            expected_diff_id: None,
            same_owner: None,
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            allow_devices: false,
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            force_walk: false,
            cancel: None,
        }
    }
}

/// What one layer extraction did.
#[derive(Debug, Clone, Default)]
pub struct LayerStats {
    /// Digest of the blob bytes.
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// `none`, `gzip` or `zstd`.
    pub compression: &'static str,
    /// Tar entries (extension headers not counted).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// Whiteouts and opaque markers seen.
    pub whiteouts: u64,
    /// Uncompressed bytes.
    pub bytes: u64,
    /// Blob bytes.
    pub compressed_bytes: u64,
    /// Entries (or attributes) not applied, with the reason.
    pub skipped: Vec<(String, String)>,
}

#[derive(Clone, Copy)]
struct DirFix {
    mode: u32,
    mtime: (i64, u32),
}

/// Maps an OS error on an entry to the core error users see (ELOOP and EXDEV are confinement refusals).
fn fs_error(ctx: &str, path: &[u8], what: &str, e: impl Into<io::Error>) -> CoreError {
    let e: io::Error = e.into();
    match e.raw_os_error() {
        Some(libc::ELOOP) => CoreError::UnsafePath {
            context: ctx.to_owned(),
            entry: entry_name(path),
            reason: format!("{what}: too many levels of symbolic links"),
        },
        Some(libc::ENOTDIR) => CoreError::InvalidArchive {
            context: format!("{ctx}: entry {:?}", entry_name(path)),
            reason: format!("{what}: a parent of the entry is not a directory"),
        },
        Some(libc::EXDEV) => CoreError::UnsafePath {
            context: ctx.to_owned(),
            entry: entry_name(path),
            reason: format!("{what}: path resolves outside the root"),
        },
        _ => CoreError::Io {
            path: PathBuf::from(format!("{ctx}: entry {:?} ({what})", entry_name(path))),
            source: e,
        },
    }
}

/// Files up to this size are written by the worker pool; larger ones stream on the parsing thread.
const POOL_MAX_FILE: u64 = 1 << 20;
/// Jobs queued for the workers (so at most this many MiB of file data are buffered).
const POOL_DEPTH: usize = 32;

/// One small regular file for a worker: the parsing thread already resolved its parent; the worker
/// creates, writes and finishes it. Only descriptors and owned data cross threads.
struct Job {
    pdir: Arc<OwnedFd>,
    name: Vec<u8>,
    path: Vec<u8>,
    data: Vec<u8>,
    mode: u32,
    chmod: bool,
    owner: (Option<Uid>, Option<Gid>),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    mtime: (i64, u32),
    ctx: Arc<str>,
}

#[derive(Default)]
struct PoolState {
    inflight: usize,
    error: Option<CoreError>,
    removed: bool,
    skipped: Vec<(String, String)>,
}

#[derive(Default)]
struct PoolShared {
    state: Mutex<PoolState>,
    idle: Condvar,
    failed: AtomicBool,
}

/// Writer threads for small files, so file creation and writes overlap with parsing (ext4 spends most of an
/// extraction in `openat(O_CREAT)` and `write`). Invariant: the parsing thread does every namespace change
/// that could conflict (it drains the pool before removing anything, before touching a path in flight or below
/// one, and before hardlinks and whiteouts), so the result is the same as a serial extraction.
struct Pool {
    tx: Option<SyncSender<Job>>,
    handles: Vec<JoinHandle<()>>,
    shared: Arc<PoolShared>,
}

impl Pool {
    fn new(workers: usize) -> Pool {
        let shared = Arc::new(PoolShared::default());
        let (tx, rx) = sync_channel::<Job>(POOL_DEPTH);
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..workers)
            .filter_map(|i| {
                let rx = Arc::clone(&rx);
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("imgcore-write-{i}"))
                    .spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let path = job.path.clone();
                        let ctx = Arc::clone(&job.ctx);
                        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_job(&job)))
                            .unwrap_or_else(|_| {
                                Err(CoreError::InvalidArchive {
                                    context: format!("{ctx}: entry {:?}", entry_name(&path)),
                                    reason: "internal error in a writer thread".into(),
                                })
                            });
                        if let Ok(mut st) = shared.state.lock() {
                            st.inflight -= 1;
                            match outcome {
                                Ok((removed, skipped)) => {
                                    st.removed |= removed;
                                    st.skipped.extend(skipped);
                                }
                                Err(e) => {
                                    shared.failed.store(true, Ordering::Relaxed);
                                    st.error.get_or_insert(e);
                                }
                            }
                        }
                        shared.idle.notify_all();
                    })
                    .ok()
            })
            .collect::<Vec<_>>();
        let tx = if handles.is_empty() { None } else { Some(tx) };
        Pool { tx, handles, shared }
    }

    fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    fn submit(&self, job: Job) -> Result<()> {
        if let Ok(mut st) = self.shared.state.lock() {
            st.inflight += 1;
        }
        let Some(tx) = &self.tx else { return Ok(()) };
        if tx.send(job).is_err() {
            if let Ok(mut st) = self.shared.state.lock() {
                st.inflight -= 1;
            }
            return Err(CoreError::Interrupted);
        }
        Ok(())
    }

    /// Waits until every job is done; returns (an entry was removed, skipped attributes) or the first error.
    fn drain(&self) -> Result<(bool, Vec<(String, String)>)> {
        let Ok(mut st) = self.shared.state.lock() else {
            return Err(CoreError::Interrupted);
        };
        while st.inflight > 0 {
            st = match self.shared.idle.wait(st) {
                Ok(g) => g,
                Err(_) => return Err(CoreError::Interrupted),
            };
        }
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        let removed = std::mem::take(&mut st.removed);
        Ok((removed, std::mem::take(&mut st.skipped)))
    }

    fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        drop(self.tx.take());
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Creates, writes and finishes one file; returns whether something had to be removed first.
fn write_job(job: &Job) -> Result<(bool, Vec<(String, String)>)> {
    let err = |what: &str, e: Errno| fs_error(&job.ctx, &job.path, what, e);
    let pdir = job.pdir.as_fd();
    let name = job.name.as_slice();
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let create = Mode::from_raw_mode(job.mode & 0o777);
    let mut removed = false;
    let fd = match openat(pdir, name, flags, create) {
        Ok(fd) => fd,
        Err(Errno::EXIST) => {
            removed = true;
            let st = statat(pdir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| err("stat existing", e))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                prune(pdir, name, &job.path, &|_| Keep::Remove, 0)
                    .map_err(|e| fs_error(&job.ctx, &job.path, "remove existing directory", e))?;
            } else {
                unlinkat(pdir, name, AtFlags::empty()).map_err(|e| err("remove existing", e))?;
            }
            openat(pdir, name, flags, create).map_err(|e| err("create", e))?
        }
        Err(e) => return Err(err("create", e)),
    };
    let mut file = std::fs::File::from(fd);
    file.write_all(&job.data)
        .map_err(|e| fs_error(&job.ctx, &job.path, "write", e))?;
    if job.owner.0.is_some() || job.owner.1.is_some() {
        fchown(&file, job.owner.0, job.owner.1).map_err(|e| err("chown", e))?;
    }
    if job.chmod {
        fchmod(&file, Mode::from_raw_mode(job.mode)).map_err(|e| err("chmod", e))?;
    }
    let mut skipped = Vec::new();
    for (k, v) in &job.xattrs {
        let name = String::from_utf8_lossy(k).into_owned();
        if k.starts_with(b"trusted.overlay.") {
            skipped.push((
                entry_name(&job.path),
                format!("xattr {name}: overlayfs metadata is not taken from archives"),
            ));
        } else if let Err(e) = fsetxattr(&file, k.as_slice(), v, XattrFlags::empty()) {
            skipped.push((entry_name(&job.path), format!("xattr {name}: {}", io::Error::from(e))));
        }
    }
    futimens(&file, &ts(job.mtime.0, job.mtime.1)).map_err(|e| err("set mtime", e))?;
    Ok((removed, skipped))
}

/// Granularity of holes: zero runs of whole aligned blocks of this size are skipped, not written.
const HOLE_BLOCK: u64 = 4096;

/// True when `b` holds only zero bytes (64 bytes at a time, so the compiler vectorises it).
fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        let acc = c
            .chunks_exact(8)
            .fold(0u64, |acc, w| acc | u64::from_ne_bytes(w.try_into().unwrap_or([1; 8])));
        if acc != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

/// Writes `data` at `pos` of a freshly created file, leaving aligned all-zero blocks unwritten (holes, as the file
/// reads zeros there anyway). Returns the end of the last byte written, if any was. Real data is one `pwrite`
/// per run of non-zero blocks, so the common case stays one call per chunk.
fn write_holey(file: &std::fs::File, pos: u64, data: &[u8]) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let mut last = None;
    let mut run: Option<usize> = None;
    let mut i = 0usize;
    while i < data.len() {
        let to_boundary = usize::try_from(HOLE_BLOCK - (pos + i as u64) % HOLE_BLOCK).unwrap_or(usize::MAX);
        let j = data.len().min(i.saturating_add(to_boundary));
        // A partial block (at either end of the chunk) is written: only whole blocks become holes.
        let whole = j - i == HOLE_BLOCK as usize;
        if whole && is_zero(&data[i..j]) {
            if let Some(r) = run.take() {
                file.write_all_at(&data[r..i], pos + r as u64)?;
                last = Some(pos + i as u64);
            }
        } else if run.is_none() {
            run = Some(i);
        }
        i = j;
    }
    if let Some(r) = run {
        file.write_all_at(&data[r..], pos + r as u64)?;
        last = Some(pos + data.len() as u64);
    }
    Ok(last)
}

/// How a skipped device node or FIFO is named to users.
fn special_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Char => "char device",
        Kind::Block => "block device",
        _ => "fifo",
    }
}

/// What a tar type flag imgcore does not extract is (GNU tar's and star's names).
fn type_name(t: u8) -> &'static str {
    match t {
        b'V' => "GNU volume label",
        b'M' => "GNU multi-volume continuation",
        b'N' => "old GNU long names",
        b'D' => "GNU dumpdir",
        b'A' => "Solaris ACL",
        b'E' | b'X' => "Solaris extended attributes",
        b'I' => "star inode metadata",
        _ => "unknown",
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The process umask, read without changing it (`/proc/self/status`, Linux 4.7+); 0o022 if unknown.
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Umask:")
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
        })
        .unwrap_or(0o022)
}

fn map_id(id: u64, maps: &[IdMap]) -> Option<u64> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter()
        .find(|m| id >= m.inner && id - m.inner < m.count)
        .map(|m| m.outer + (id - m.inner))
}

fn ts(sec: i64, nsec: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: i64::from(nsec),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Removes `name` in `dir` and everything below it, without following symlinks. Entries for which
/// `keep(path)` says [`Keep::Descend`] are kept and only pruned below; `path` is the entry's root-relative path.
fn prune(dir: BorrowedFd<'_>, name: &[u8], path: &[u8], keep: &dyn Fn(&[u8]) -> Keep, depth: usize) -> io::Result<()> {
    if depth > MAX_REMOVE_DEPTH {
        return Err(io::Error::other("directory tree too deep to remove"));
    }
    let decision = keep(path);
    if decision == Keep::Remove {
        match unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::ISDIR | Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let open = || {
        openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let fd = match open() {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        // A kept non-directory (or a symlink): nothing below it.
        Err(Errno::NOTDIR | Errno::LOOP) if decision == Keep::Descend => return Ok(()),
        Err(Errno::ACCESS) => {
            // Our own read-only directory (unprivileged runs): make it traversable, then retry.
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            open()?
        }
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for ent in rustix::fs::Dir::read_from(&fd)? {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    if decision == Keep::Remove && !names.is_empty() {
        // Children of a read-only directory cannot be unlinked by an unprivileged owner.
        let _ = fchmod(&fd, Mode::from_raw_mode(0o700));
    }
    for child in names {
        let mut cpath = Vec::with_capacity(path.len() + 1 + child.len());
        cpath.extend_from_slice(path);
        if !cpath.is_empty() {
            cpath.push(b'/');
        }
        cpath.extend_from_slice(&child);
        let sub_keep: &dyn Fn(&[u8]) -> Keep = if decision == Keep::Remove {
            &|_| Keep::Remove
        } else {
            keep
        };
        prune(fd.as_fd(), &child, &cpath, sub_keep, depth + 1)?;
    }
    if decision == Keep::Remove {
        match unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Remove the entry and all below it.
    Remove,
    /// Keep the entry, prune below it.
    Descend,
}

struct Extractor<'o> {
    root: Root,
    opts: &'o ExtractOptions,
    ctx: String,
    chown: bool,
    umask: u32,
    /// Paths this layer wrote (whiteouts keep them).
    written: HashSet<Vec<u8>>,
    /// Ancestors of paths this layer wrote.
    ancestors: HashSet<Vec<u8>>,
    dirs: HashMap<Vec<u8>, DirFix>,
    stats: LayerStats,
    buf: Vec<u8>,
    dir_cache: HashMap<Vec<u8>, Arc<OwnedFd>>,
    /// The current layer's decoder error slot: a failed read of entry data reports the decoder's real cause.
    decoder_errors: Option<ErrorSlot>,
    pool: Pool,
    /// Files handed to the pool and not yet drained.
    pending: HashSet<Vec<u8>>,
    /// Directories above those files (an entry replacing one of them must wait for the files below it).
    pending_dirs: HashSet<Vec<u8>>,
    ctx_arc: Arc<str>,
}

impl<'o> Extractor<'o> {
    fn new(dest: &Path, opts: &'o ExtractOptions, ctx: String) -> Result<Self> {
        let root = Root::open(dest, opts.force_walk).at(dest)?;
        let chown = opts.same_owner.unwrap_or_else(is_root) || !opts.uid_map.is_empty() || !opts.gid_map.is_empty();
        Ok(Extractor {
            root,
            opts,
            ctx,
            chown,
            umask: current_umask(),
            written: HashSet::new(),
            ancestors: HashSet::new(),
            dirs: HashMap::new(),
            stats: LayerStats::default(),
            buf: vec![0u8; COPY_BUF],
            dir_cache: HashMap::new(),
            decoder_errors: None,
            pool: Pool::new(writer_threads()),
            pending: HashSet::new(),
            pending_dirs: HashSet::new(),
            ctx_arc: Arc::from(""),
        })
    }

    fn reset_layer(&mut self, ctx: String) {
        self.ctx_arc = Arc::from(ctx.as_str());
        self.ctx = ctx;
        self.written.clear();
        self.ancestors.clear();
        self.dirs.clear();
        self.stats = LayerStats::default();
        self.invalidate();
    }

    fn invalidate(&mut self) {
        self.root.invalidate();
        self.dir_cache.clear();
    }

    fn entry_ctx(&self, path: &[u8]) -> String {
        format!("{}: entry {:?}", self.ctx, entry_name(path))
    }

    fn unsafe_path(&self, path: &[u8], reason: &str) -> CoreError {
        CoreError::UnsafePath {
            context: self.ctx.clone(),
            entry: entry_name(path),
            reason: reason.to_owned(),
        }
    }

    fn invalid(&self, path: &[u8], reason: impl Into<String>) -> CoreError {
        CoreError::InvalidArchive {
            context: self.entry_ctx(path),
            reason: reason.into(),
        }
    }

    fn fs_err(&self, path: &[u8], what: &str, e: impl Into<io::Error>) -> CoreError {
        fs_error(&self.ctx, path, what, e)
    }

    /// Waits for the writer pool; forgets cached directories if a worker removed something.
    fn drain(&mut self) -> Result<()> {
        if self.pending.is_empty() && !self.pool.failed() {
            return Ok(());
        }
        self.pending.clear();
        self.pending_dirs.clear();
        let (removed, skipped) = self.pool.drain()?;
        self.stats.skipped.extend(skipped);
        if removed {
            self.invalidate();
        }
        Ok(())
    }

    /// Drains the pool when `comps` or one of its ancestors is a file still being written, or when files below
    /// `comps` are (the entry may replace their directory).
    fn drain_if_pending(&mut self, comps: &[Vec<u8>]) -> Result<()> {
        if self.pool.failed()
            || (!self.pending.is_empty()
                && (self.pending_dirs.contains(&join(comps))
                    || (1..=comps.len()).any(|i| self.pending.contains(&join(&comps[..i])))))
        {
            self.drain()?;
        }
        Ok(())
    }

    /// The directory `comps` inside the root, created if asked.
    fn dir(&mut self, comps: &[Vec<u8>], create: bool, entry: &[u8]) -> Result<Arc<OwnedFd>> {
        let key = join(comps);
        if let Some(fd) = self.dir_cache.get(&key) {
            return Ok(Arc::clone(fd));
        }
        let fd = match self.root.dir(comps, create) {
            Ok(fd) => fd
                .try_clone_to_owned()
                .map_err(|e| self.fs_err(entry, "open parent", e))?,
            Err(e) => return Err(self.fs_err(entry, "open parent", e)),
        };
        let fd = Arc::new(fd);
        if self.dir_cache.len() > 64 {
            self.dir_cache.clear();
        }
        self.dir_cache.insert(key, Arc::clone(&fd));
        Ok(fd)
    }

    fn mark_written(&mut self, comps: &[Vec<u8>]) {
        self.written.insert(join(comps));
        for i in (1..comps.len()).rev() {
            if !self.ancestors.insert(join(&comps[..i])) {
                break;
            }
        }
    }

    fn keep_fn(&self) -> impl Fn(&[u8]) -> Keep + '_ {
        // A path this layer wrote, or above one, stays (its lower children are still pruned); the rest goes.
        move |p: &[u8]| {
            if self.written.contains(p) || self.ancestors.contains(p) {
                Keep::Descend
            } else {
                Keep::Remove
            }
        }
    }

    /// Removes whatever is at `name` in `dir` so a new entry can take its place (a directory is kept when
    /// `keep_dir`). Returns true when an existing directory was kept.
    fn clear(&mut self, dir: BorrowedFd<'_>, name: &[u8], keep_dir: bool, entry: &[u8]) -> Result<bool> {
        // The entry's own path and its ancestors are not in flight (checked before each entry), so a stat needs
        // no drain; a removal does (files below the removed path may still be in flight).
        let st = match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(self.fs_err(entry, "stat existing", e)),
        };
        if keep_dir && FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Ok(true);
        }
        self.drain()?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let path = entry.to_vec();
            prune(dir, name, &path, &|_| Keep::Remove, 0)
                .map_err(|e| self.fs_err(entry, "remove existing directory", e))?;
        } else {
            unlinkat(dir, name, AtFlags::empty()).map_err(|e| self.fs_err(entry, "remove existing", e))?;
        }
        self.invalidate();
        Ok(false)
    }

    fn ids(&self, meta: &Meta) -> Result<(Option<Uid>, Option<Gid>)> {
        if !self.chown {
            return Ok((None, None));
        }
        let uid = map_id(meta.uid, &self.opts.uid_map)
            .ok_or_else(|| self.invalid(&meta.path, format!("uid {} has no mapping in uid_map", meta.uid)))?;
        let gid = map_id(meta.gid, &self.opts.gid_map)
            .ok_or_else(|| self.invalid(&meta.path, format!("gid {} has no mapping in gid_map", meta.gid)))?;
        let uid = u32::try_from(uid).map_err(|_| self.invalid(&meta.path, format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid).map_err(|_| self.invalid(&meta.path, format!("gid {gid} out of range")))?;
        Ok((Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))))
    }

    fn set_xattrs(&mut self, fd: BorrowedFd<'_>, meta: &Meta) {
        for (k, v) in &meta.xattrs {
            let name = String::from_utf8_lossy(k).into_owned();
            if k.starts_with(b"trusted.overlay.") {
                // Overlay metadata from an archive could redirect a mount; only imgcore writes these.
                self.stats.skipped.push((
                    entry_name(&meta.path),
                    format!("xattr {name}: overlayfs metadata is not taken from archives"),
                ));
                continue;
            }
            if let Err(e) = fsetxattr(fd, k.as_slice(), v, XattrFlags::empty()) {
                self.stats
                    .skipped
                    .push((entry_name(&meta.path), format!("xattr {name}: {}", io::Error::from(e))));
            }
        }
    }

    fn entry(&mut self, meta: &Meta, data: &mut dyn Read) -> Result<()> {
        if self.opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(CoreError::Interrupted);
        }
        let comps = clean(&meta.path).ok_or_else(|| self.unsafe_path(&meta.path, "escapes the root (\"..\")"))?;
        let Some((name, parent)) = comps.split_last() else {
            if meta.kind == Kind::Dir {
                // "./": the root itself; its metadata stays the caller's.
                return Ok(());
            }
            return Err(self.unsafe_path(&meta.path, "names the root directory itself"));
        };
        let name = name.clone();
        if name.starts_with(WH_PREFIX) {
            self.drain()?;
            return self.whiteout(meta, parent, &name);
        }
        if meta.kind == Kind::Hardlink {
            self.drain()?;
        } else {
            self.drain_if_pending(&comps)?;
        }
        self.mark_written(&comps);
        let pdir = self.dir(parent, true, &meta.path)?;
        let pdir = pdir.as_fd();
        match meta.kind {
            Kind::File if self.pool.enabled() && meta.size <= POOL_MAX_FILE && meta.sparse.is_none() => {
                let pdir = self.dir(parent, true, &meta.path)?;
                self.submit_file(pdir, &name, &comps, meta, data)
            }
            Kind::File => self.file(pdir, &name, meta, data),
            Kind::Dir => self.directory(pdir, &name, &comps, meta),
            Kind::Symlink => self.symlink(pdir, &name, meta),
            Kind::Hardlink => self.hardlink(pdir, &name, &comps, meta),
            Kind::Char | Kind::Block | Kind::Fifo => self.special(pdir, &name, meta),
            Kind::Other(t) => {
                self.stats.skipped.push((
                    entry_name(&meta.path),
                    format!("unsupported entry type {:?} ({})", t as char, type_name(t)),
                ));
                Ok(())
            }
        }
    }

    fn whiteout(&mut self, meta: &Meta, parent: &[Vec<u8>], name: &[u8]) -> Result<()> {
        self.stats.whiteouts += 1;
        if name == WH_OPAQUE {
            let pdir = self.dir(parent, true, &meta.path)?;
            if self.opts.overlay {
                let fd = openat(
                    pdir.as_fd(),
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.fs_err(&meta.path, "open opaque directory", e))?;
                fsetxattr(&fd, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                    .map_err(|e| self.fs_err(&meta.path, "set trusted.overlay.opaque (needs root)", e))?;
                return Ok(());
            }
            // Opaque: hide every lower child of the directory (its own entries from this layer stay).
            let ppath = join(parent);
            let mut names = Vec::new();
            let rd = openat(
                pdir.as_fd(),
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.fs_err(&meta.path, "open opaque directory", e))?;
            for ent in
                rustix::fs::Dir::read_from(&rd).map_err(|e| self.fs_err(&meta.path, "read opaque directory", e))?
            {
                let ent = ent.map_err(|e| self.fs_err(&meta.path, "read opaque directory", e))?;
                let n = ent.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(n.to_vec());
                }
            }
            for child in names {
                let mut cpath = ppath.clone();
                if !cpath.is_empty() {
                    cpath.push(b'/');
                }
                cpath.extend_from_slice(&child);
                let r = {
                    let keep = self.keep_fn();
                    prune(pdir.as_fd(), &child, &cpath, &keep, 0)
                };
                r.map_err(|e| self.fs_err(&meta.path, "apply opaque whiteout", e))?;
            }
            self.invalidate();
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): meaningless here, as docker treats it.
            self.stats
                .skipped
                .push((entry_name(&meta.path), "aufs metadata entry".into()));
            return Ok(());
        }
        let target = &name[WH_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
            return Err(self.unsafe_path(&meta.path, "whiteout names no entry of its directory"));
        }
        if self.opts.overlay {
            let pdir = self.dir(parent, true, &meta.path)?;
            self.clear(pdir.as_fd(), target, false, &meta.path)?;
            mknodat(
                pdir.as_fd(),
                target,
                FileType::CharacterDevice,
                Mode::empty(),
                makedev(0, 0),
            )
            .map_err(|e| self.fs_err(&meta.path, "create overlay whiteout (char 0/0, needs root)", e))?;
            return Ok(());
        }
        let pdir = match self.root.dir(parent, false) {
            Ok(fd) => fd
                .try_clone_to_owned()
                .map_err(|e| self.fs_err(&meta.path, "open parent", e))?,
            // Nothing below: nothing to hide.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return Ok(()),
            Err(e) => return Err(self.fs_err(&meta.path, "open parent", e)),
        };
        let mut tpath = join(parent);
        if !tpath.is_empty() {
            tpath.push(b'/');
        }
        tpath.extend_from_slice(target);
        let r = {
            let keep = self.keep_fn();
            prune(pdir.as_fd(), target, &tpath, &keep, 0)
        };
        r.map_err(|e| self.fs_err(&meta.path, "apply whiteout", e))?;
        self.invalidate();
        Ok(())
    }

    fn submit_file(
        &mut self,
        pdir: Arc<OwnedFd>,
        name: &[u8],
        comps: &[Vec<u8>],
        meta: &Meta,
        data: &mut dyn Read,
    ) -> Result<()> {
        let mut buf = Vec::with_capacity(meta.size as usize);
        if let Err(e) = data.read_to_end(&mut buf) {
            if let Some(err) = self.decoder_errors.as_ref().and_then(ErrorSlot::take) {
                return Err(err);
            }
            return Err(self.invalid(&meta.path, format!("reading entry data: {e}")));
        }
        if buf.len() as u64 != meta.size {
            if let Some(err) = self.decoder_errors.as_ref().and_then(ErrorSlot::take) {
                return Err(err);
            }
            return Err(self.invalid(
                &meta.path,
                format!("truncated: entry data ends after {} of {} bytes", buf.len(), meta.size),
            ));
        }
        let owner = self.ids(meta)?;
        let create_mode = meta.mode & 0o777;
        let chmod = meta.mode & 0o7777 != create_mode & !self.umask || owner.0.is_some() && meta.mode & 0o6000 != 0;
        self.pending.insert(join(comps));
        for i in (1..comps.len()).rev() {
            if !self.pending_dirs.insert(join(&comps[..i])) {
                break;
            }
        }
        self.pool.submit(Job {
            pdir,
            name: name.to_vec(),
            path: meta.path.clone(),
            data: buf,
            mode: meta.mode & 0o7777,
            chmod,
            owner,
            xattrs: meta.xattrs.clone(),
            mtime: (meta.mtime, meta.mtime_nsec),
            ctx: Arc::clone(&self.ctx_arc),
        })?;
        self.stats.files += 1;
        Ok(())
    }

    fn file(&mut self, pdir: BorrowedFd<'_>, name: &[u8], meta: &Meta, data: &mut dyn Read) -> Result<()> {
        let create_mode = meta.mode & 0o777;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match openat(pdir, name, flags, Mode::from_raw_mode(create_mode)) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                self.clear(pdir, name, false, &meta.path)?;
                openat(pdir, name, flags, Mode::from_raw_mode(create_mode))
                    .map_err(|e| self.fs_err(&meta.path, "create", e))?
            }
            Err(e) => return Err(self.fs_err(&meta.path, "create", e)),
        };
        let file = std::fs::File::from(fd);
        // Segments of the file that the data fills: all of it, or a sparse file's map (the rest are holes).
        let whole = [(0, meta.size)];
        let segments: &[(u64, u64)] = meta.sparse.as_ref().map_or(&whole[..], |s| &s.map);
        let mut written = 0u64;
        let mut end = 0u64;
        for &(offset, len) in segments {
            let mut pos = offset;
            let stop = offset + len;
            while pos < stop {
                // Whole buffers, so every write starts on a block boundary of the file and zero blocks line up.
                let want = usize::try_from(stop - pos).map_or(self.buf.len(), |n| n.min(self.buf.len()));
                let mut n = 0;
                while n < want {
                    match data.read(&mut self.buf[n..want]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            if let Some(err) = self.decoder_errors.as_ref().and_then(ErrorSlot::take) {
                                return Err(err);
                            }
                            return Err(self.invalid(&meta.path, format!("reading entry data: {e}")));
                        }
                    }
                }
                if n == 0 {
                    break;
                }
                if let Some(last) =
                    write_holey(&file, pos, &self.buf[..n]).map_err(|e| self.fs_err(&meta.path, "write", e))?
                {
                    end = last;
                }
                pos += n as u64;
                written += n as u64;
                if self.opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(CoreError::Interrupted);
                }
            }
            if pos < stop {
                break;
            }
        }
        if written != meta.size {
            if let Some(err) = self.decoder_errors.as_ref().and_then(ErrorSlot::take) {
                return Err(err);
            }
            return Err(self.invalid(
                &meta.path,
                format!("truncated: entry data ends after {written} of {} bytes", meta.size),
            ));
        }
        let size = meta.file_size();
        if end < size {
            // Trailing zeros or a trailing hole: the length, not written blocks.
            file.set_len(size)
                .map_err(|e| self.fs_err(&meta.path, "set length", e))?;
        }
        let (uid, gid) = self.ids(meta)?;
        if uid.is_some() || gid.is_some() {
            fchown(&file, uid, gid).map_err(|e| self.fs_err(&meta.path, "chown", e))?;
        }
        if meta.mode & 0o7777 != create_mode & !self.umask || uid.is_some() && meta.mode & 0o6000 != 0 {
            fchmod(&file, Mode::from_raw_mode(meta.mode & 0o7777)).map_err(|e| self.fs_err(&meta.path, "chmod", e))?;
        }
        if !meta.xattrs.is_empty() {
            self.set_xattrs(file.as_fd(), meta);
        }
        futimens(&file, &ts(meta.mtime, meta.mtime_nsec)).map_err(|e| self.fs_err(&meta.path, "set mtime", e))?;
        self.stats.files += 1;
        Ok(())
    }

    fn directory(&mut self, pdir: BorrowedFd<'_>, name: &[u8], comps: &[Vec<u8>], meta: &Meta) -> Result<()> {
        // Created owner-writable; the real mode is applied at the end of the layer.
        let mode = Mode::from_raw_mode(0o700);
        match mkdirat(pdir, name, mode) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                if !self.clear(pdir, name, true, &meta.path)? {
                    mkdirat(pdir, name, mode).map_err(|e| self.fs_err(&meta.path, "mkdir", e))?;
                }
            }
            Err(e) => return Err(self.fs_err(&meta.path, "mkdir", e)),
        }
        let (uid, gid) = self.ids(meta)?;
        if uid.is_some() || gid.is_some() {
            chownat(pdir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.fs_err(&meta.path, "chown", e))?;
        }
        if !meta.xattrs.is_empty() {
            let fd = openat(
                pdir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.fs_err(&meta.path, "open directory", e))?;
            self.set_xattrs(fd.as_fd(), meta);
        }
        self.dirs.insert(
            join(comps),
            DirFix {
                mode: meta.mode & 0o7777,
                mtime: (meta.mtime, meta.mtime_nsec),
            },
        );
        self.stats.dirs += 1;
        Ok(())
    }

    fn symlink(&mut self, pdir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<()> {
        if meta.link.is_empty() {
            return Err(self.invalid(&meta.path, "symlink with an empty target"));
        }
        // The target is stored as it is (absolute targets are legitimate in images and meant inside the root).
        match symlinkat(meta.link.as_slice(), pdir, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.clear(pdir, name, false, &meta.path)?;
                symlinkat(meta.link.as_slice(), pdir, name).map_err(|e| self.fs_err(&meta.path, "symlink", e))?;
            }
            Err(e) => return Err(self.fs_err(&meta.path, "symlink", e)),
        }
        self.after_node(pdir, name, meta)?;
        self.stats.symlinks += 1;
        Ok(())
    }

    /// Owner, xattr report and mtime of a node created by name (symlink, device, FIFO).
    fn after_node(&mut self, pdir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<()> {
        let (uid, gid) = self.ids(meta)?;
        if uid.is_some() || gid.is_some() {
            chownat(pdir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.fs_err(&meta.path, "chown", e))?;
        }
        for (k, _) in &meta.xattrs {
            self.stats.skipped.push((
                entry_name(&meta.path),
                format!(
                    "xattr {} on a {} is not applied",
                    String::from_utf8_lossy(k),
                    meta.kind.name()
                ),
            ));
        }
        utimensat(pdir, name, &ts(meta.mtime, meta.mtime_nsec), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.fs_err(&meta.path, "set mtime", e))?;
        Ok(())
    }

    fn hardlink(&mut self, pdir: BorrowedFd<'_>, name: &[u8], comps: &[Vec<u8>], meta: &Meta) -> Result<()> {
        let tcomps =
            clean(&meta.link).ok_or_else(|| self.unsafe_path(&meta.path, "hardlink target escapes the root"))?;
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(self.unsafe_path(&meta.path, "hardlink to the root directory"));
        };
        if tcomps == comps {
            return Ok(());
        }
        let tdir = match self.dir(tparent, false, &meta.path) {
            Ok(fd) => fd,
            Err(CoreError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Err(self.invalid(
                    &meta.path,
                    format!("hardlink target {:?} does not exist", entry_name(&meta.link)),
                ));
            }
            Err(e) => return Err(e),
        };
        let link = |s: &Self| {
            linkat(tdir.as_fd(), tname.as_slice(), pdir, name, AtFlags::empty()).map_err(|e| match e {
                Errno::NOENT => s.invalid(
                    &meta.path,
                    format!("hardlink target {:?} does not exist", entry_name(&meta.link)),
                ),
                Errno::PERM => s.invalid(
                    &meta.path,
                    format!("hardlink target {:?} is a directory", entry_name(&meta.link)),
                ),
                e => s.fs_err(&meta.path, "hardlink", e),
            })
        };
        match linkat(tdir.as_fd(), tname.as_slice(), pdir, name, AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.clear(pdir, name, false, &meta.path)?;
                link(self)?;
            }
            Err(_) => link(self)?,
        }
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn special(&mut self, pdir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<()> {
        if !self.opts.allow_devices {
            let why = if meta.kind == Kind::Fifo {
                "(needs allow_devices)"
            } else {
                "(needs root and allow_devices)"
            };
            self.stats
                .skipped
                .push((entry_name(&meta.path), format!("{} {why}", special_name(meta.kind))));
            return Ok(());
        }
        let (ft, dev) = match meta.kind {
            Kind::Char => (FileType::CharacterDevice, makedev(meta.dev.0, meta.dev.1)),
            Kind::Block => (FileType::BlockDevice, makedev(meta.dev.0, meta.dev.1)),
            _ => (FileType::Fifo, 0),
        };
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let created = match mknodat(pdir, name, ft, mode, dev) {
            Err(Errno::EXIST) => {
                self.clear(pdir, name, false, &meta.path)?;
                mknodat(pdir, name, ft, mode, dev)
            }
            other => other,
        };
        match created {
            Ok(()) => {}
            Err(Errno::PERM) => {
                self.stats.skipped.push((
                    entry_name(&meta.path),
                    format!("{} (needs root: mknod not permitted)", special_name(meta.kind)),
                ));
                return Ok(());
            }
            Err(e) => return Err(self.fs_err(&meta.path, "mknod", e)),
        }
        self.after_node(pdir, name, meta)
    }

    /// Applies deferred directory modes and mtimes, deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        self.drain()?;
        let mut dirs: Vec<(Vec<u8>, DirFix)> = self.dirs.drain().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.split(|&b| b == b'/').count()));
        self.invalidate();
        for (path, fix) in dirs {
            let comps = clean(&path).unwrap_or_default();
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            let Ok(pdir) = self.root.dir(parent, false) else {
                continue;
            };
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match openat(pdir, name.as_slice(), flags, Mode::empty()) {
                Ok(fd) => fd,
                // Replaced later in the layer by a non-directory: nothing to fix.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(self.fs_err(&path, "open directory", e)),
            };
            fchmod(&fd, Mode::from_raw_mode(fix.mode)).map_err(|e| self.fs_err(&path, "chmod", e))?;
            futimens(&fd, &ts(fix.mtime.0, fix.mtime.1)).map_err(|e| self.fs_err(&path, "set mtime", e))?;
        }
        Ok(())
    }

    fn layer(&mut self, src: &Path) -> Result<LayerStats> {
        let mut pipe = Pipeline::start(src, self.opts.max_bytes)?;
        self.decoder_errors = Some(pipe.errors());
        let ctx = self.ctx.clone();
        let entries = for_each_entry(
            &mut pipe,
            &ctx,
            self.opts.max_entries,
            self.opts.max_bytes,
            |meta, data| self.entry(meta, data),
        )?;
        self.finish_dirs()?;
        let summary = pipe.finish()?;
        let mut stats = std::mem::take(&mut self.stats);
        stats.entries = entries;
        stats.digest = summary.digest.to_string();
        stats.diff_id = summary.diff_id.to_string();
        stats.compression = summary.compression.name();
        stats.bytes = summary.bytes;
        stats.compressed_bytes = summary.compressed_bytes;
        // NOTE: the content was already written; on a mismatch the caller must discard `dest`.
        for (what, expected, actual) in [
            ("digest", &self.opts.expected_digest, &summary.digest),
            ("diff_id", &self.opts.expected_diff_id, &summary.diff_id),
        ] {
            if let Some(expected) = expected {
                if expected != actual {
                    return Err(CoreError::DigestMismatch {
                        context: format!("{ctx}: {what}"),
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
            }
        }
        Ok(stats)
    }
}

/// Writer threads: two where the machine has the cores, none (serial) when `IMGCORE_WRITERS=0`.
fn writer_threads() -> usize {
    if let Some(v) = std::env::var_os("IMGCORE_WRITERS") {
        return v.to_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

fn layer_ctx(src: &Path) -> String {
    format!("extract {}", src.display())
}

/// Extracts one layer blob (tar, tar+gzip or tar+zstd, detected from its bytes) into `dest`.
///
/// On `DigestMismatch` the entries have already been written: the caller must discard `dest`.
pub fn extract_layer(src: &Path, dest: &Path, opts: &ExtractOptions) -> Result<LayerStats> {
    let mut ex = Extractor::new(dest, opts, layer_ctx(src))?;
    ex.layer(src)
}

/// Unpacks a stack of layers, lowest first, into one root filesystem (flatten form).
///
/// `expected_diff_ids`, when not empty, must have one entry per layer.
pub fn unpack_layers(
    layers: &[PathBuf],
    dest: &Path,
    opts: &ExtractOptions,
    expected_diff_ids: &[Digest],
) -> Result<Vec<LayerStats>> {
    if !expected_diff_ids.is_empty() && expected_diff_ids.len() != layers.len() {
        return Err(CoreError::InvalidArchive {
            context: format!("unpack {}", dest.display()),
            reason: format!(
                "{} layers but {} expected diff_ids",
                layers.len(),
                expected_diff_ids.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(layers.len());
    let mut layer_opts = opts.clone();
    layer_opts.overlay = false;
    let mut ex = Extractor::new(dest, &layer_opts, String::new())?;
    for (i, src) in layers.iter().enumerate() {
        ex.reset_layer(format!("extract layer {} ({})", i, src.display()));
        let stats = ex.layer(src)?;
        if let Some(expected) = expected_diff_ids.get(i) {
            if expected.to_string() != stats.diff_id {
                return Err(CoreError::DigestMismatch {
                    context: format!("extract layer {} ({}): diff_id", i, src.display()),
                    expected: expected.to_string(),
                    actual: stats.diff_id,
                });
            }
        }
        out.push(stats);
    }
    Ok(out)
}
