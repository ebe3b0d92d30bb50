//! Layer blob decoding: compression detection from magic bytes, streaming gzip (ISA-L when built with it,
//! else zlib-rs) and zstd, and the two-thread pipeline that hashes and decompresses on one thread while the
//! caller parses and writes on another.
//!
//! Invariants: the compressed digest covers every byte of the blob and the `diff_id` every byte of the
//! uncompressed stream, both computed in the same pass; memory stays bounded by `CHUNK * (DEPTH + 2)`
//! (`SMALL_CHUNK * (SMALL_DEPTH + 2)` for digest-only readers), plus the compressed blocks read ahead, whatever
//! the blob's size; a corrupt or truncated stream is an error (never a silently short stream); bytes after the
//! last gzip member must be zero padding; the uncompressed size never exceeds `max_bytes`.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::digest::{Digest, Hasher};
use crate::error::{CoreError, IoContext, Result};

/// Size of one decoded chunk handed from the decoder thread to the writer.
pub const CHUNK: usize = 1 << 20;
/// The chunk of digest-only readers (the analysis tables): their consumer hashes and parses as the bytes come,
/// so smaller chunks keep the same pace with a quarter of the memory (two layers are read at once).
const SMALL_CHUNK: usize = 256 << 10;
/// Chunks in flight between the two threads (the reader thread reads `DEPTH + 2` blocks ahead).
const DEPTH: usize = 6;
/// The depth of digest-only readers: their consumer keeps pace, so a short queue loses nothing and two layers
/// read at once hold about 2 MiB, not 20.
const SMALL_DEPTH: usize = 2;

pub use crate::compression::Compression;

/// What the decoder thread measured once the whole blob was read.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    /// Digest of the blob bytes.
    pub digest: Digest,
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Compression detected.
    pub compression: Compression,
    /// Blob size in bytes.
    pub compressed_bytes: u64,
    /// Uncompressed size in bytes.
    pub bytes: u64,
}

/// A reader that hashes everything passing through.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(have_isal)]
mod isal {
    //! Streaming gzip inflate with ISA-L through `isal_shim.c`.
    use std::ffi::c_void;
    use std::io::{self, Read};

    /// An error raised inside the decoder with a message meant for the user.
    fn bad_stream(reason: impl Into<String>) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, reason.into())
    }

    extern "C" {
        fn imgcore_isal_new() -> *mut c_void;
        fn imgcore_isal_reset(state: *mut c_void);
        fn imgcore_isal_free(state: *mut c_void);
        fn imgcore_isal_inflate(
            state: *mut c_void,
            input: *const u8,
            in_len: u32,
            out: *mut u8,
            out_len: u32,
            consumed: *mut u32,
            produced: *mut u32,
            finished: *mut i32,
        ) -> i32;
    }

    const IN_BUF: usize = 256 * 1024;

    #[derive(PartialEq, Eq)]
    enum Phase {
        /// Inside a gzip member.
        Member,
        /// A member just finished; the next byte decides (another member, zero padding, or garbage).
        Between,
        /// Only zero bytes may follow.
        Padding,
    }

    /// A gzip decoder over `R`, multi-member, checking each member's CRC and length.
    pub struct IsalGzReader<R> {
        inner: R,
        state: *mut c_void,
        buf: Box<[u8]>,
        pos: usize,
        len: usize,
        eof: bool,
        phase: Phase,
    }

    // SAFETY: the ISA-L state is plain heap memory owned exclusively by this reader; ISA-L keeps no
    // thread-local or global state for inflate, so moving it to another thread is sound.
    unsafe impl<R: Send> Send for IsalGzReader<R> {}

    impl<R: Read> IsalGzReader<R> {
        pub fn new(inner: R) -> io::Result<Self> {
            // SAFETY: FFI call with no arguments; a null return is handled below.
            let state = unsafe { imgcore_isal_new() };
            if state.is_null() {
                return Err(io::Error::new(io::ErrorKind::OutOfMemory, "isal inflate state"));
            }
            Ok(IsalGzReader {
                inner,
                state,
                buf: vec![0u8; IN_BUF].into_boxed_slice(),
                pos: 0,
                len: 0,
                eof: false,
                phase: Phase::Member,
            })
        }

        fn fill(&mut self) -> io::Result<()> {
            if self.pos == self.len && !self.eof {
                self.pos = 0;
                self.len = loop {
                    match self.inner.read(&mut self.buf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                };
                if self.len == 0 {
                    self.eof = true;
                }
            }
            Ok(())
        }
    }

    impl<R> Drop for IsalGzReader<R> {
        fn drop(&mut self) {
            // SAFETY: `state` came from `imgcore_isal_new` and is freed exactly once, here.
            unsafe { imgcore_isal_free(self.state) }
        }
    }

    impl<R: Read> Read for IsalGzReader<R> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if out.is_empty() {
                return Ok(0);
            }
            loop {
                self.fill()?;
                match self.phase {
                    Phase::Padding => {
                        if self.eof {
                            return Ok(0);
                        }
                        if self.buf[self.pos..self.len].iter().any(|&b| b != 0) {
                            return Err(bad_stream("trailing garbage after the gzip stream"));
                        }
                        self.pos = self.len;
                        continue;
                    }
                    Phase::Between => {
                        if self.eof {
                            return Ok(0);
                        }
                        match self.buf[self.pos] {
                            0x1f => {
                                // SAFETY: `state` is a live ISA-L inflate state owned by self.
                                unsafe { imgcore_isal_reset(self.state) };
                                self.phase = Phase::Member;
                            }
                            0 => self.phase = Phase::Padding,
                            _ => return Err(bad_stream("trailing garbage after the gzip stream")),
                        }
                        continue;
                    }
                    Phase::Member => {}
                }
                let avail = self.len - self.pos;
                let (mut consumed, mut produced, mut finished) = (0u32, 0u32, 0i32);
                let out_len = out.len().min(u32::MAX as usize) as u32;
                // SAFETY: the input slice `buf[pos..len]` and `out` are valid for the lengths passed; ISA-L
                // writes at most `out_len` bytes to `out` and reads at most `avail` bytes of input.
                let ret = unsafe {
                    imgcore_isal_inflate(
                        self.state,
                        self.buf.as_ptr().add(self.pos),
                        avail as u32,
                        out.as_mut_ptr(),
                        out_len,
                        &raw mut consumed,
                        &raw mut produced,
                        &raw mut finished,
                    )
                };
                self.pos += consumed as usize;
                if ret < 0 {
                    let why = match ret {
                        -4 => "invalid gzip header",
                        -5 => "unsupported gzip compression method",
                        -6 => "gzip checksum (CRC32 or length) mismatch",
                        _ => "corrupt deflate data",
                    };
                    return Err(bad_stream(why));
                }
                if finished != 0 {
                    self.phase = Phase::Between;
                }
                if produced > 0 {
                    return Ok(produced as usize);
                }
                if finished == 0 && self.eof && self.pos == self.len {
                    return Err(bad_stream("unexpected end of gzip stream (truncated blob)"));
                }
            }
        }
    }
}

/// A reader over a decompressed blob; errors carry a readable reason.
fn decoder<'a, R: Read + Send + 'a>(compression: Compression, inner: R) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(inner),
        #[cfg(have_isal)]
        Compression::Gzip => Box::new(isal::IsalGzReader::new(inner)?),
        #[cfg(not(have_isal))]
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
    })
}

/// Which inflate implementation this build uses for gzip.
pub fn gzip_backend() -> &'static str {
    if cfg!(have_isal) {
        "isa-l"
    } else {
        "zlib-rs"
    }
}

fn fill_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens a blob and reports its compression.
fn open_blob(path: &Path) -> Result<(File, Compression)> {
    let mut file = File::open(path).at(path)?;
    let mut head = [0u8; 6];
    let n = fill_full(&mut file, &mut head).at(path)?;
    let compression = Compression::detect(&head[..n], &path.display().to_string())?;
    io::Seek::seek(&mut file, io::SeekFrom::Start(0)).at(path)?;
    Ok((file, compression))
}

/// The shared slot where the decoder thread leaves its error, so the writer reports the real cause.
#[derive(Clone, Default)]
pub struct ErrorSlot(Arc<Mutex<Option<CoreError>>>);

impl ErrorSlot {
    fn set(&self, e: CoreError) {
        if let Ok(mut s) = self.0.lock() {
            s.get_or_insert(e);
        }
    }

    /// Takes the decoder's error, if it failed.
    pub fn take(&self) -> Option<CoreError> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }

    fn is_set(&self) -> bool {
        self.0.lock().map_or(true, |s| s.is_some())
    }
}

/// The consuming end of the pipeline: a `Read` over the decoded chunks.
pub struct Pipeline {
    rx: Receiver<Vec<u8>>,
    recycle: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
    consumed: u64,
    error: ErrorSlot,
    handle: Option<JoinHandle<Option<StreamSummary>>>,
    path: PathBuf,
    /// For compressed blobs the `diff_id` is hashed on a third thread that relays the decoded chunks, so
    /// neither decompression nor the writers carry the second hash.
    relay: Option<JoinHandle<Hasher>>,
}

impl Pipeline {
    /// Starts decoding `path` on a new thread; at most `max_bytes` uncompressed bytes are accepted.
    pub fn start(path: &Path, max_bytes: u64) -> Result<Self> {
        Self::spawn::<CHUNK, DEPTH>(path, max_bytes, true)
    }

    /// As [`Pipeline::start`], for readers that need only the blob's digest: a compressed blob's uncompressed
    /// stream is not hashed (one SHA-256 pass less), so the summary's `diff_id` of a compressed blob is
    /// meaningless (a plain tar's is its digest, always known); chunks are [`SMALL_CHUNK`], [`SMALL_DEPTH`]
    /// deep.
    pub fn start_digest_only(path: &Path, max_bytes: u64) -> Result<Self> {
        Self::spawn::<SMALL_CHUNK, SMALL_DEPTH>(path, max_bytes, false)
    }

    fn spawn<const N: usize, const D: usize>(path: &Path, max_bytes: u64, diff_id: bool) -> Result<Self> {
        let (file, compression) = open_blob(path)?;
        let relay_hash = compression != Compression::None && diff_id;
        let (tx, rx) = sync_channel::<Vec<u8>>(D);
        let (recycle, free) = sync_channel::<Vec<u8>>(D + 2);
        let error = ErrorSlot::default();
        let slot = error.clone();
        let owned = path.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("imgcore-decode".into())
            .spawn(
                move || match produce::<N, D>(file, compression, &tx, &free, max_bytes, &owned, false) {
                    Ok(summary) => Some(summary),
                    Err(e) => {
                        slot.set(e);
                        None
                    }
                },
            )
            .at(path)?;
        let (rx, relay) = if relay_hash {
            let (tx2, rx2) = sync_channel::<Vec<u8>>(D);
            let relay = std::thread::Builder::new()
                .name("imgcore-hash".into())
                .spawn(move || {
                    let mut h = Hasher::sha256();
                    for chunk in rx {
                        h.update(&chunk);
                        if tx2.send(chunk).is_err() {
                            break;
                        }
                    }
                    h
                })
                .at(path)?;
            (rx2, Some(relay))
        } else {
            (rx, None)
        };
        Ok(Pipeline {
            rx,
            recycle,
            cur: Vec::new(),
            pos: 0,
            done: false,
            consumed: 0,
            error,
            handle: Some(handle),
            path: path.to_path_buf(),
            relay,
        })
    }

    /// Uncompressed bytes consumed so far (the offset of the next byte).
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// The decoder thread's error, if it failed.
    pub fn take_error(&self) -> Option<CoreError> {
        self.error.take()
    }

    /// A handle on the decoder's error slot (for code that cannot borrow the pipeline).
    pub fn errors(&self) -> ErrorSlot {
        self.error.clone()
    }

    /// True once the decoded stream ended (the decoder sent its last chunk).
    pub fn eof_seen(&self) -> bool {
        self.done && self.pos == self.cur.len()
    }

    /// Reads the rest of the stream, which must be zero blocks only, and returns the summary.
    pub fn finish(mut self) -> Result<StreamSummary> {
        let ctx = self.path.display().to_string();
        loop {
            if self.pos == self.cur.len() && !self.next_chunk() {
                break;
            }
            let rest = &self.cur[self.pos..];
            if let Some(i) = rest.iter().position(|&b| b != 0) {
                return Err(CoreError::InvalidArchive {
                    context: ctx,
                    reason: format!(
                        "trailing garbage after the end-of-archive marker at offset {}",
                        self.consumed + i as u64
                    ),
                });
            }
            self.consumed += rest.len() as u64;
            self.pos = self.cur.len();
        }
        let summary = self.handle.take().and_then(|h| h.join().ok()).flatten();
        match summary {
            Some(mut s) => {
                if let Some(relay) = self.relay.take() {
                    let h = relay.join().map_err(|_| CoreError::InvalidArchive {
                        context: ctx.clone(),
                        reason: "hashing thread failed".into(),
                    })?;
                    s.diff_id = h.digest();
                }
                Ok(s)
            }
            None => Err(self.take_error().unwrap_or_else(|| CoreError::InvalidArchive {
                context: ctx,
                reason: "decoder thread failed".into(),
            })),
        }
    }

    fn next_chunk(&mut self) -> bool {
        if self.done {
            return false;
        }
        if let Ok(chunk) = self.rx.recv() {
            let old = std::mem::replace(&mut self.cur, chunk);
            if old.capacity() > 0 {
                let _ = self.recycle.try_send(old);
            }
            self.pos = 0;
            true
        } else {
            self.done = true;
            false
        }
    }

    /// Borrows the next run of buffered bytes, refilling from the decoder when empty.
    pub fn peek(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.cur.len() {
            if !self.next_chunk() {
                if self.error.is_set() {
                    return Err(io::Error::other("the layer's decoder failed"));
                }
                return Ok(&[]);
            }
        }
        Ok(&self.cur[self.pos..])
    }

    /// Marks `n` peeked bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        self.consumed += n as u64;
    }
}

impl Read for Pipeline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.peek()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Dropping the receiver makes the decoder's next send fail, so it stops; then join it.
        let (_, dummy) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, dummy));
        if let Some(h) = self.relay.take() {
            let _ = h.join();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Reads a blob on its own thread, hashing it, so the decompressor never waits on the compressed digest.
/// Blocks of the blob, or the read error that ended them.
type Blocks = Receiver<io::Result<Vec<u8>>>;

fn spawn_reader(mut file: File, ahead: usize) -> io::Result<(Blocks, JoinHandle<Hasher>)> {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(ahead);
    let handle = std::thread::Builder::new().name("imgcore-read".into()).spawn(move || {
        let mut h = Hasher::sha256();
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    h.update(&buf);
                    if tx.send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
        h
    })?;
    Ok((rx, handle))
}

/// A `Read` over the blocks the reader thread sends.
struct ChannelReader {
    rx: Blocks,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.cur = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = (self.cur.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Decompresses `input` into chunks sent to `tx`; returns the uncompressed byte count (and hashes it when
/// `diff` is given).
fn decode_into<const N: usize>(
    input: &mut (dyn Read + Send),
    compression: Compression,
    tx: &SyncSender<Vec<u8>>,
    free: &Receiver<Vec<u8>>,
    max_bytes: u64,
    path: &Path,
    mut diff: Option<&mut Hasher>,
) -> Result<u64> {
    let ctx = || path.display().to_string();
    // An OS error (it has an errno) is about reading the blob; anything else came from the decoder.
    let stream_err = |e: io::Error| -> CoreError {
        if e.raw_os_error().is_some() {
            CoreError::io(path, e)
        } else {
            CoreError::InvalidArchive {
                context: ctx(),
                reason: format!("bad {} stream: {e}", compression.name()),
            }
        }
    };
    let mut total = 0u64;
    let mut dec = decoder(compression, input).map_err(stream_err)?;
    loop {
        let mut chunk = free.try_recv().unwrap_or_else(|_| vec![0u8; N]);
        chunk.resize(N, 0);
        let n = fill_full(&mut *dec, &mut chunk).map_err(stream_err)?;
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        if let Some(h) = diff.as_deref_mut() {
            h.update(&chunk);
        }
        total += n as u64;
        if total > max_bytes {
            return Err(CoreError::LimitExceeded {
                context: ctx(),
                reason: format!("more than {max_bytes} uncompressed bytes (max_bytes)"),
            });
        }
        if tx.send(chunk).is_err() {
            // The writer stopped (it failed or finished early); nothing more to do.
            return Err(CoreError::Interrupted);
        }
    }
    Ok(total)
}

fn produce<const N: usize, const D: usize>(
    file: File,
    compression: Compression,
    tx: &SyncSender<Vec<u8>>,
    free: &Receiver<Vec<u8>>,
    max_bytes: u64,
    path: &Path,
    hash_decoded: bool,
) -> Result<StreamSummary> {
    if compression == Compression::None {
        // Plain tar: the blob is the tar, one hash serves as digest and diff_id.
        let mut raw = HashingReader {
            inner: file,
            hasher: Hasher::sha256(),
        };
        let bytes = decode_into::<N>(&mut raw, compression, tx, free, max_bytes, path, None)?;
        let digest = raw.hasher.digest();
        return Ok(StreamSummary {
            diff_id: digest.clone(),
            digest,
            compression,
            compressed_bytes: bytes,
            bytes,
        });
    }
    let (rx, reader) = spawn_reader(file, D + 2).at(path)?;
    let mut input = ChannelReader {
        rx,
        cur: Vec::new(),
        pos: 0,
    };
    let mut diff = Hasher::sha256();
    let decoded = decode_into::<N>(
        &mut input,
        compression,
        tx,
        free,
        max_bytes,
        path,
        hash_decoded.then_some(&mut diff),
    );
    // Closing the channel stops the reader at its next block; it is always joined, never left running.
    drop(input);
    let raw = reader.join();
    let bytes = decoded?;
    let raw = raw.map_err(|_| CoreError::InvalidArchive {
        context: path.display().to_string(),
        reason: "reader thread failed".into(),
    })?;
    // Without `hash_decoded` the relay thread fills in the diff_id.
    Ok(StreamSummary {
        digest: raw.digest(),
        diff_id: diff.digest(),
        compression,
        compressed_bytes: raw.len(),
        bytes,
    })
}
