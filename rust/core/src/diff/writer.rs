//! Writes a change set as an OCI layer: tar stream → `diff_id` hasher → compressor → digest hasher → file, in
//! one pass.
//!
//! Invariants:
//! - Output bytes never depend on the thread count: gzip compresses fixed 1 MiB slices of the tar stream
//!   independently with libdeflate, each as its own gzip member (RFC 1952 2.2: a gzip file is a series of
//!   members; bgzip's layout; Go's, pgzip's, Python's and GNU gzip's readers all read every member);
//!   zstd always runs its multi-threaded mode with >= 1 worker (whose output is the same for any worker count).
//! - Whiteouts (`.wh.<name>`) and opaque markers (`.wh..wh..opq`, right after its directory) are empty
//!   regular files with mode 0, uid/gid 0 and mtime 0 (clamped like every other mtime).
//! - A regular file is read for exactly the size `lstat` reported; a file that shrinks while being read is an
//!   error, never a short entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use super::meta::{read_full, read_link, Kind, Meta};
use super::tar::{self, flag, Header};
use super::walk::lookup_path;
use super::{Change, ChangeKind, DiffOptions};
use crate::digest::{Digest, Hasher};
use crate::error::{CoreError, IoContext, Result};

/// Size of the independently compressed gzip slices (and of the write buffer for the other codecs).
const SLICE: usize = 1 << 20;

pub use crate::compression::Compression;

/// How to write the layer.
#[derive(Debug, Clone)]
pub struct LayerOptions {
    /// Codec.
    pub compression: Compression,
    /// Codec level (gzip 0-9, default 6; zstd 1-22, default 3).
    pub level: Option<i32>,
    /// Clamp every mtime to at most this many seconds since the epoch.
    pub source_date_epoch: Option<i64>,
    /// Worker threads for compression (`None`: all cores). Never changes the output.
    pub threads: Option<usize>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Gzip,
            level: None,
            source_date_epoch: None,
            threads: None,
        }
    }
}

/// What [`super::write_layer`] produced.
#[derive(Debug, Clone)]
pub struct LayerResult {
    /// Digest of the blob as written (compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Codec used.
    pub compression: Compression,
    /// The change set that was written.
    pub changes: Vec<Change>,
    /// Tar entries written (PAX headers not counted).
    pub entries: u64,
    /// Whiteout and opaque-marker entries among them.
    pub whiteouts: u64,
    /// Hardlink entries among them.
    pub hardlinks: u64,
}

enum Item {
    Entry {
        rel: PathBuf,
        meta: Meta,
        data_from: PathBuf,
    },
    Whiteout {
        rel: PathBuf,
    },
    Opaque {
        dir: PathBuf,
    },
}

/// Turns the change list into layer items (stat'ing only the changed paths).
fn plan(base: &[PathBuf], target: &Path, changes: &[Change], opts: DiffOptions) -> Result<Vec<Item>> {
    let mut items = Vec::with_capacity(changes.len() + 8);
    let mut opaque_dirs: HashSet<&Path> = HashSet::new();
    let under_opaque = |p: &Path, set: &HashSet<&Path>| p.ancestors().skip(1).any(|a| set.contains(a));
    for c in changes {
        let tpath = target.join(&c.path);
        if c.kind == ChangeKind::Deleted {
            if opts.overlay && under_opaque(&c.path, &opaque_dirs) {
                continue; // hidden by the opaque marker already written for an ancestor
            }
            // A deletion of something the target still has would make the image lose it: refuse.
            if let Some(m) = Meta::read_opt(&tpath)?.filter(|m| m.kind != Kind::Socket) {
                if !(opts.overlay && m.is_whiteout()) {
                    return Err(CoreError::InvalidTree {
                        path: tpath,
                        reason: "D change for a path that exists in the target".into(),
                    });
                }
            }
            items.push(Item::Whiteout { rel: c.path.clone() });
            continue;
        }
        let Some(meta) = Meta::read_opt(&tpath)? else {
            return Err(CoreError::InvalidTree {
                path: tpath,
                reason: format!(
                    "{} change for a path that does not exist in the target",
                    c.kind.letter()
                ),
            });
        };
        if meta.kind == Kind::Socket {
            continue;
        }
        if opts.overlay && meta.is_whiteout() {
            return Err(CoreError::InvalidTree {
                path: tpath,
                reason: format!("{} change for an overlayfs whiteout", c.kind.letter()),
            });
        }
        let mut data_from = tpath.clone();
        if opts.overlay && meta.kind == Kind::File && meta.overlay.metacopy {
            match lookup_path(base, &c.path)? {
                Some((lower, _)) if meta.overlay.redirect.is_none() => data_from = lower,
                _ => {
                    return Err(CoreError::InvalidTree {
                        path: tpath,
                        reason: "overlayfs metacopy file whose data is not at the same path in the lower layers".into(),
                    })
                }
            }
        }
        let opaque = opts.overlay && meta.kind == Kind::Dir && meta.overlay.opaque;
        items.push(Item::Entry {
            rel: c.path.clone(),
            meta,
            data_from,
        });
        if opaque {
            opaque_dirs.insert(&c.path);
            items.push(Item::Opaque { dir: c.path.clone() });
        }
    }
    Ok(items)
}

/// Writes the layer.
pub(super) fn write(
    base: &[PathBuf],
    target: &Path,
    out: &Path,
    changes: Vec<Change>,
    opts: DiffOptions,
    layer: &LayerOptions,
) -> Result<LayerResult> {
    let items = plan(base, target, &changes, opts)?;
    let file = File::create(out).at(out)?;
    let threads = layer
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
        .clamp(1, 64);
    let run = || -> Result<LayerResult> {
        Ok(match layer.compression {
            Compression::None => {
                let mut sink = PlainSink {
                    out: BufWriter::with_capacity(SLICE, file),
                    hasher: Hasher::sha256(),
                };
                let stats = produce(&items, layer, &mut |b| sink.write(b), out)?;
                sink.out.flush().at(out)?;
                let digest = sink.hasher.digest();
                finish(
                    stats,
                    digest.clone(),
                    digest,
                    sink.hasher.len(),
                    changes,
                    layer.compression,
                )
            }
            Compression::Zstd => {
                let level = layer.level.unwrap_or(3);
                let hw = HashingWriter {
                    inner: BufWriter::with_capacity(SLICE, file),
                    hasher: Hasher::sha256(),
                };
                let mut enc = zstd::stream::Encoder::new(hw, level).at(out)?;
                enc.multithread(threads as u32).at(out)?;
                enc.include_checksum(true).at(out)?;
                let mut tar_hasher = Hasher::sha256();
                let stats = produce(
                    &items,
                    layer,
                    &mut |b| {
                        tar_hasher.update(b);
                        enc.write_all(b)
                    },
                    out,
                )?;
                let mut hw = enc.finish().at(out)?;
                hw.inner.flush().at(out)?;
                finish(
                    stats,
                    hw.hasher.digest(),
                    tar_hasher.digest(),
                    hw.hasher.len(),
                    changes,
                    layer.compression,
                )
            }
            Compression::Gzip => {
                let level = layer.level.unwrap_or(6).clamp(0, 9);
                let (digest, diff_id, size, stats) = par_gzip(&items, layer, file, out, level, threads)?;
                finish(stats, digest, diff_id, size, changes, layer.compression)
            }
        })
    };
    let result = run();
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

fn finish(
    stats: Stats,
    digest: Digest,
    diff_id: Digest,
    size: u64,
    changes: Vec<Change>,
    compression: Compression,
) -> LayerResult {
    LayerResult {
        digest,
        diff_id,
        size,
        uncompressed_size: stats.bytes,
        compression,
        changes,
        entries: stats.entries,
        whiteouts: stats.whiteouts,
        hardlinks: stats.hardlinks,
    }
}

#[derive(Default, Clone, Copy)]
struct Stats {
    bytes: u64,
    entries: u64,
    whiteouts: u64,
    hardlinks: u64,
}

/// An empty regular file entry (whiteouts, opaque markers).
fn empty(name: &[u8], mtime: i64) -> Header<'_> {
    Header {
        name,
        mode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        mtime,
        typeflag: flag::REG,
        linkname: b"",
        devmajor: 0,
        devminor: 0,
        xattrs: &[],
    }
}

#[allow(clippy::too_many_lines)] // one linear pass over the items; splitting it would scatter the format rules
/// Generates the tar stream of `items` into `sink`, in pieces of about [`SLICE`] bytes.
fn produce(
    items: &[Item],
    layer: &LayerOptions,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    out: &Path,
) -> Result<Stats> {
    let clamp = |t: i64| layer.source_date_epoch.map_or(t, |sde| t.min(sde));
    let mut stats = Stats::default();
    let mut buf: Vec<u8> = Vec::with_capacity(SLICE + 64 * 1024);
    let mut first_link: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut flush = |buf: &mut Vec<u8>, stats: &mut Stats, force: bool| -> Result<()> {
        if force || buf.len() >= SLICE {
            stats.bytes += buf.len() as u64;
            sink(buf).at(out)?;
            buf.clear();
        }
        Ok(())
    };
    for item in items {
        stats.entries += 1;
        match item {
            Item::Whiteout { rel } => {
                let mut name = rel
                    .parent()
                    .map(|p| p.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default();
                if !name.is_empty() {
                    name.push(b'/');
                }
                name.extend_from_slice(b".wh.");
                name.extend_from_slice(rel.file_name().map(OsStrExt::as_bytes).unwrap_or_default());
                tar::encode(&empty(&name, clamp(0)), &mut buf);
                stats.whiteouts += 1;
            }
            Item::Opaque { dir } => {
                let mut name = dir.as_os_str().as_bytes().to_vec();
                name.extend_from_slice(b"/.wh..wh..opq");
                tar::encode(&empty(&name, clamp(0)), &mut buf);
                stats.whiteouts += 1;
            }
            Item::Entry { rel, meta, data_from } => {
                let mut name = rel.as_os_str().as_bytes().to_vec();
                let mut h = Header {
                    name: b"",
                    mode: meta.mode,
                    uid: u64::from(meta.uid),
                    gid: u64::from(meta.gid),
                    size: 0,
                    mtime: clamp(meta.mtime),
                    typeflag: flag::REG,
                    linkname: b"",
                    devmajor: 0,
                    devminor: 0,
                    xattrs: &meta.xattrs,
                };
                let link_target;
                let mut payload = false;
                match meta.kind {
                    Kind::Dir => {
                        name.push(b'/');
                        h.typeflag = flag::DIR;
                    }
                    Kind::Symlink => {
                        link_target = read_link(data_from)?;
                        h.typeflag = flag::SYM;
                        h.linkname = link_target.as_os_str().as_bytes();
                    }
                    Kind::Char | Kind::Block => {
                        h.typeflag = if meta.kind == Kind::Char { flag::CHR } else { flag::BLK };
                        h.devmajor = meta.dev_major();
                        h.devminor = meta.dev_minor();
                    }
                    Kind::Fifo => h.typeflag = flag::FIFO,
                    Kind::Socket => continue,
                    Kind::File => {
                        let key = (meta.dev, meta.ino);
                        if meta.nlink > 1 && first_link.contains_key(&key) {
                            h.typeflag = flag::LNK;
                            h.linkname = &first_link[&key];
                            stats.hardlinks += 1;
                        } else {
                            if meta.nlink > 1 {
                                first_link.insert(key, name.clone());
                            }
                            h.size = meta.size;
                            payload = true;
                        }
                    }
                }
                h.name = &name;
                tar::encode(&h, &mut buf);
                if payload {
                    copy_file(
                        data_from,
                        (meta.dev, meta.ino),
                        meta.size,
                        &mut buf,
                        &mut |b, s| flush(b, s, false),
                        &mut stats,
                    )?;
                    tar::pad(&mut buf, (meta.size % tar::BLOCK as u64) as usize);
                }
            }
        }
        flush(&mut buf, &mut stats, false)?;
    }
    let written = stats.bytes + buf.len() as u64;
    buf.extend_from_slice(&tar::trailer(written));
    flush(&mut buf, &mut stats, true)?;
    Ok(stats)
}

/// Appends exactly `size` bytes of `path` to `buf`, flushing full slices as it goes.
///
/// NOTE: a process inside a running container may swap the file (or a parent directory) for a symlink between
/// the walk's `lstat` and this open, to get host content into the layer (the pattern of docker's
/// CVE-2018-15664). The last component is opened with `O_NOFOLLOW`, and the opened file must be the very inode
/// the walk saw (`expect` = device and inode): anything else is refused, never read.
fn copy_file(
    path: &Path,
    expect: (u64, u64),
    size: u64,
    buf: &mut Vec<u8>,
    flush: &mut dyn FnMut(&mut Vec<u8>, &mut Stats) -> Result<()>,
    stats: &mut Stats,
) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK) // a FIFO swapped in must not block
        .open(path)
        .at(path)?;
    let st = f.metadata().at(path)?;
    if !st.is_file() || (st.dev(), st.ino()) != expect {
        return Err(CoreError::InvalidTree {
            path: path.to_path_buf(),
            reason: "replaced while the layer was being written (it is not the file the walk saw)".into(),
        });
    }
    let mut left = size;
    while left > 0 {
        let room = (SLICE - buf.len().min(SLICE)).max(64 * 1024) as u64;
        let want = left.min(room) as usize;
        let start = buf.len();
        buf.resize(start + want, 0);
        let got = read_full(&mut f, &mut buf[start..]).at(path)?;
        if got < want {
            return Err(CoreError::InvalidTree {
                path: path.to_path_buf(),
                reason: format!("file shrank while being read ({size} bytes expected)"),
            });
        }
        left -= want as u64;
        flush(buf, stats)?;
    }
    Ok(())
}

struct PlainSink {
    out: BufWriter<File>,
    hasher: Hasher,
}

impl PlainSink {
    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.hasher.update(b);
        self.out.write_all(b)
    }
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hasher.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Parallel gzip.

struct Job {
    seq: u64,
    data: Vec<u8>,
}

struct Done {
    seq: u64,
    member: Vec<u8>,
}

/// One slice as a complete gzip member (libdeflate: header with mtime 0, deflate, CRC-32 and length).
fn gzip_member(c: &mut libdeflater::Compressor, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; c.gzip_compress_bound(data.len())];
    let n = c
        .gzip_compress(data, &mut out)
        .map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
    out.truncate(n);
    Ok(out)
}

type GzOut = (Digest, Digest, u64, Stats);

/// Producer (this thread) → `threads` libdeflate workers → an in-order writer thread.
fn par_gzip(items: &[Item], layer: &LayerOptions, file: File, out: &Path, level: i32, threads: usize) -> Result<GzOut> {
    let (job_tx, job_rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(threads * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<io::Result<Done>>(threads * 2);
    let lvl = libdeflater::CompressionLvl::new(level).unwrap_or_default();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            s.spawn(move || {
                let mut c = libdeflater::Compressor::new(lvl);
                loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let done = gzip_member(&mut c, &job.data).map(|member| Done { seq: job.seq, member });
                    if tx.send(done).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let writer = s.spawn(move || -> io::Result<(Digest, u64, u64)> {
            let mut w = HashingWriter {
                inner: BufWriter::with_capacity(SLICE, file),
                hasher: Hasher::sha256(),
            };
            let mut next = 0u64;
            let mut pending: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            for done in done_rx {
                let done = done?;
                pending.insert(done.seq, done.member);
                while let Some(member) = pending.remove(&next) {
                    w.write_all(&member)?;
                    next += 1;
                }
            }
            if !pending.is_empty() {
                return Err(io::Error::other("compression stopped early"));
            }
            w.flush()?;
            Ok((w.hasher.digest(), w.hasher.len(), next))
        });
        let mut tar_hasher = Hasher::sha256();
        let mut seq = 0u64;
        let mut pending: Vec<u8> = Vec::with_capacity(SLICE);
        let mut send = |b: &[u8], last: bool| -> io::Result<()> {
            tar_hasher.update(b);
            let mut b = b;
            while !b.is_empty() {
                let take = (SLICE - pending.len()).min(b.len());
                pending.extend_from_slice(&b[..take]);
                b = &b[take..];
                if pending.len() == SLICE {
                    let data = std::mem::replace(&mut pending, Vec::with_capacity(SLICE));
                    job_tx
                        .send(Job { seq, data })
                        .map_err(|_| io::Error::other("compressor gone"))?;
                    seq += 1;
                }
            }
            if last && !pending.is_empty() {
                let data = std::mem::take(&mut pending);
                job_tx
                    .send(Job { seq, data })
                    .map_err(|_| io::Error::other("compressor gone"))?;
                seq += 1;
            }
            Ok(())
        };
        let stats = produce(items, layer, &mut |b| send(b, false), out);
        let stats = stats.and_then(|st| send(&[], true).at(out).map(|()| st));
        let diff_id = tar_hasher.digest();
        drop(job_tx);
        let written = writer
            .join()
            .map_err(|_| CoreError::io(out, io::Error::other("gzip writer panicked")))?;
        let stats = stats?;
        let (digest, size, members) = written.at(out)?;
        if members != seq {
            return Err(CoreError::io(
                out,
                io::Error::other("gzip: a compressed slice went missing"),
            ));
        }
        Ok((digest, diff_id, size, stats))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn copy(path: &Path, expect: (u64, u64)) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let mut stats = Stats::default();
        copy_file(path, expect, 3, &mut buf, &mut |_, _| Ok(()), &mut stats)?;
        Ok(buf)
    }

    #[test]
    fn a_file_swapped_after_the_walk_is_never_read() {
        let dir = std::env::temp_dir().join(format!("imgcore-swap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"abc").unwrap();
        let host = dir.join("host-secret");
        std::fs::write(&host, b"xyz").unwrap();
        let st = std::fs::symlink_metadata(&file).unwrap();
        assert_eq!(copy(&file, (st.dev(), st.ino())).unwrap(), b"abc");
        // the container swaps the file for a symlink to a host file: refused, not followed
        std::fs::remove_file(&file).unwrap();
        symlink(&host, &file).unwrap();
        assert!(copy(&file, (st.dev(), st.ino())).is_err());
        // ... or for another file (a parent directory swapped the same way lands on another inode)
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, b"abc").unwrap();
        assert!(copy(&host, (st.dev(), st.ino())).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
