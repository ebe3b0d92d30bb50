//! Tar entry reading with our own handling of the extension headers (GNU `L`/`K`, PAX `x`/`g`) and GNU sparse
//! files (old GNU `S` headers with their extension blocks, PAX sparse 0.0, 0.1 and 1.0).
//!
//! The `tar` crate parses each 512-byte header's fields (numeric fields, base-256 included, ustar prefixes);
//! the stream itself (header blocks, data spans, padding) is walked here, so the PAX `size` record decides how
//! many bytes an entry has, as POSIX says. Extension records are read with size caps, so a hostile "long name"
//! of gigabytes can never be buffered. Invariants: every [`Meta`] handed to the callback has its final path and
//! link name (PAX beats GNU beats ustar; `GNU.sparse.name` beats all), PAX uid/gid/mtime applied, and `size`
//! equal to the bytes that follow for the callback (a sparse file's segments, its map already consumed); a
//! sparse map is sorted, non-overlapping, inside the real size and describes exactly the member's data, or the
//! entry is refused; no claimed size exceeds `max_bytes`; the callback must not read more than `size` bytes; a
//! stream that ends without the end-of-archive marker is reported as truncated; the entry count never exceeds
//! the caller's limit.

use std::io::{self, Read};

use tar::{EntryType, Header};

use super::decode::{ErrorSlot, Pipeline};
use crate::error::{CoreError, Result};

/// Largest GNU long name / long link record accepted.
const MAX_LONG_NAME: u64 = 64 * 1024;
/// Largest PAX extended header accepted (xattrs can be large, e.g. ACLs and capabilities).
const MAX_PAX: u64 = 8 * 1024 * 1024;
/// Most entries a GNU sparse map may have (16 bytes each in memory: 16 MiB at most).
pub const MAX_SPARSE_ENTRIES: u64 = 1 << 20;

/// The layout of a GNU sparse file: data segments `(offset, length)` in file order, the rest holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sparse {
    /// The file's real size.
    pub real_size: u64,
    /// Data segments, sorted, not overlapping, inside `real_size`, none empty.
    pub map: Vec<(u64, u64)>,
}

/// The kind of a tar entry, as imgcore treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file (`0`, `\0`, `7`).
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to an earlier path.
    Hardlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
    /// Anything else (GNU sparse, volume labels, vendor types): skipped and reported.
    Other(u8),
}

impl Kind {
    /// The short name used in indexes and Python tuples.
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Hardlink => "hardlink",
            Kind::Char => "char",
            Kind::Block => "block",
            Kind::Fifo => "fifo",
            Kind::Other(_) => "other",
        }
    }
}

/// One entry's metadata, extension headers applied.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The raw (untrusted) path.
    pub path: Vec<u8>,
    /// The raw link target (symlinks and hardlinks).
    pub link: Vec<u8>,
    /// Entry kind.
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds part.
    pub mtime_nsec: u32,
    /// Data bytes that follow for the callback to read (PAX `size` applied; a sparse file's segments only).
    pub size: u64,
    /// Device numbers.
    pub dev: (u32, u32),
    /// Extended attributes from `SCHILY.xattr.*`.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a GNU sparse file, its map; `size` is then the sum of the segments' lengths.
    pub sparse: Option<Box<Sparse>>,
}

impl Meta {
    /// The size of the file as it is on disk once extracted (the real size of a sparse file).
    pub fn file_size(&self) -> u64 {
        self.sparse.as_ref().map_or(self.size, |s| s.real_size)
    }
}

/// What an entry's last path component says about whiteouts (OCI image spec, "Whiteouts").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary name.
    No,
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// Another `.wh..wh.` name (aufs bookkeeping such as `.wh..wh.plnk`): nothing an OCI union applies.
    Aufs,
    /// `.wh.NAME`: removes `NAME` of the same directory.
    Removes(&'a [u8]),
}

/// Classifies a name; a whiteout of `""`, `.` or `..` is an error (it names no entry of its directory).
pub fn whiteout(name: &[u8]) -> std::result::Result<Whiteout<'_>, &'static str> {
    if !name.starts_with(b".wh.") {
        return Ok(Whiteout::No);
    }
    if name == b".wh..wh..opq" {
        return Ok(Whiteout::Opaque);
    }
    if name.starts_with(b".wh..wh.") {
        return Ok(Whiteout::Aufs);
    }
    match &name[4..] {
        b"" | b"." | b".." => Err("whiteout names no entry of its directory"),
        target => Ok(Whiteout::Removes(target)),
    }
}

/// Names the entry in error messages: `entry "a/b"` (lossy UTF-8, control characters escaped by Debug).
pub fn entry_name(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn invalid(ctx: &str, reason: String) -> CoreError {
    CoreError::InvalidArchive {
        context: ctx.to_owned(),
        reason,
    }
}

/// Parses a PAX time `secs[.frac]` (may be negative).
fn pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().ok()?;
    if secs < 0 && nsec > 0 {
        // -1.25 means 1.25 s before the epoch: -2 s + 0.75 s.
        return Some((secs - 1, 1_000_000_000 - nsec));
    }
    Some((secs, nsec))
}

/// Splits PAX extended-header records (`"%d %s=%s\n"`, the length counting the whole record). Values may hold
/// any byte, newlines included (binary xattrs such as `security.capability`): records are cut by their length
/// prefix, never at a newline (POSIX pax; tarfile, GNU tar and Go read them so).
fn pax_records(data: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), String>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let sp = rest.iter().position(|&b| b == b' ').ok_or("no length")?;
            let len: usize = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("bad length")?;
            if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
                return Err("length out of range");
            }
            let body = &rest[sp + 1..len - 1];
            let eq = body.iter().position(|&b| b == b'=').ok_or("no '='")?;
            let rec = (&body[..eq], &body[eq + 1..]);
            rest = &rest[len..];
            Ok(rec)
        })();
        if parsed.is_err() {
            rest = &[];
        }
        Some(parsed.map_err(str::to_owned))
    })
}

fn read_capped(r: &mut impl Read, size: u64, cap: u64, what: &str, ctx: &str) -> Result<Vec<u8>> {
    if size > cap {
        return Err(invalid(
            ctx,
            format!("{what} of {size} bytes exceeds the {cap}-byte limit"),
        ));
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(size)
        .read_to_end(&mut buf)
        .map_err(|e| invalid(ctx, format!("reading {what}: {e}")))?;
    if (buf.len() as u64) < size {
        return Err(invalid(ctx, format!("truncated {what}: {} of {size} bytes", buf.len())));
    }
    Ok(buf)
}

fn strip_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Context for an error at entry `idx` (after entry `last`).
fn where_(ctx: &str, idx: u64, last: &[u8]) -> String {
    if last.is_empty() {
        format!("{ctx}: tar entry #{idx}")
    } else {
        format!("{ctx}: tar entry #{idx} (after {:?})", entry_name(last))
    }
}

/// Maps an I/O error from the tar layer, preferring the decoder thread's own error (the real cause).
pub fn stream_error(errors: &ErrorSlot, ctx: &str, e: &io::Error) -> CoreError {
    if let Some(err) = errors.take() {
        return err;
    }
    invalid(ctx, format!("corrupt tar stream: {e}"))
}

/// Reads up to a full 512-byte block; returns how many bytes were read (less than 512 only at the end).
fn read_block(r: &mut Pipeline, block: &mut [u8; 512]) -> io::Result<usize> {
    let mut got = 0;
    while got < block.len() {
        let avail = r.peek()?;
        if avail.is_empty() {
            break;
        }
        let n = avail.len().min(block.len() - got);
        block[got..got + n].copy_from_slice(&avail[..n]);
        r.consume(n);
        got += n;
    }
    Ok(got)
}

/// Skips `n` bytes of the stream without copying them; returns how many were there.
fn skip(r: &mut Pipeline, mut n: u64) -> io::Result<u64> {
    let want = n;
    while n > 0 {
        let avail = r.peek()?;
        if avail.is_empty() {
            break;
        }
        let k = usize::try_from(n).map_or(avail.len(), |n| n.min(avail.len()));
        r.consume(k);
        n -= k as u64;
    }
    Ok(want - n)
}

/// Rounds up to whole 512-byte blocks.
fn blocks(n: u64) -> Option<u64> {
    n.checked_add(511).map(|v| v & !511)
}

fn header_checksum_ok(block: &[u8; 512], stored: u32) -> bool {
    // Two plain sums (a chained iterator does not vectorise; this runs once per entry).
    let sum = |bytes: &[u8]| bytes.iter().map(|&b| u32::from(b)).sum::<u32>();
    sum(&block[..148]) + sum(&block[156..]) + 8 * 32 == stored
}

/// A numeric header field as the tar crate reads it (and GNU tar writes it): base-256 when the first byte's
/// high bit is set (the last 8 bytes; of an 8-byte field all but that bit), else octal text up to the first NUL
/// with blanks around it. Parsed here without the crate's UTF-8 and string work: it runs five times per entry.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        let (mut v, skip) = if field.len() == 8 {
            (u64::from(field[0] ^ 0x80), 1)
        } else {
            (0, field.len().saturating_sub(8))
        };
        for &b in &field[skip..] {
            v = (v << 8) | u64::from(b);
        }
        return Some(v);
    }
    octal(field)
}

/// Octal text up to the first NUL, blanks trimmed, an optional `+` (what `u64::from_str_radix(_, 8)` takes).
fn octal(field: &[u8]) -> Option<u64> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = field[..end].trim_ascii();
    let digits = text.strip_prefix(b"+").unwrap_or(text);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |v, &b| {
        (b'0'..=b'7')
            .contains(&b)
            .then(|| v.checked_mul(8)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// A header field for an error message.
fn field_text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    format!("{:?}", String::from_utf8_lossy(&field[..end]))
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The PAX records of one entry that shape its data: the size and the GNU sparse keys.
#[derive(Default)]
struct PaxSparse {
    /// `GNU.sparse.size` (0.x) or `GNU.sparse.realsize` (1.0).
    real_size: Option<u64>,
    numblocks: Option<u64>,
    /// `GNU.sparse.offset`/`GNU.sparse.numbytes` (0.0) or `GNU.sparse.map` (0.1), flattened.
    numbers: Vec<u64>,
    name: Option<Vec<u8>>,
    major: Option<Vec<u8>>,
    minor: Option<Vec<u8>>,
}

/// Checks a sparse map against its bounds: sorted, not overlapping, inside `real_size`, describing exactly the
/// `stored` data bytes of the member (to the block), and at most [`MAX_SPARSE_ENTRIES`] entries.
/// Zero-length entries (GNU tar ends every map with `real_size,0`) are dropped.
fn check_sparse(pairs: &[u64], real_size: u64, stored: u64) -> std::result::Result<Sparse, String> {
    if pairs.len() % 2 != 0 {
        return Err("sparse map has an odd count of numbers".into());
    }
    let mut map = Vec::with_capacity(pairs.len() / 2);
    let mut end = 0u64;
    let mut data = 0u64;
    for pair in pairs.chunks_exact(2) {
        let (off, len) = (pair[0], pair[1]);
        if off > real_size {
            return Err(format!(
                "sparse map entry at offset {off} lies beyond the file's size {real_size}"
            ));
        }
        if len == 0 {
            continue;
        }
        let stop = off
            .checked_add(len)
            .filter(|&s| s <= real_size)
            .ok_or_else(|| format!("sparse map entry {off}+{len} runs past the file's size {real_size}"))?;
        if off < end {
            return Err(format!(
                "sparse map entries overlap or are out of order at offset {off}"
            ));
        }
        end = stop;
        data += len;
        map.push((off, len));
    }
    if data > stored {
        return Err(format!(
            "sparse map describes {data} data bytes but the member holds {stored}"
        ));
    }
    if blocks(data) != blocks(stored) {
        return Err(format!(
            "the member holds {stored} data bytes but its sparse map describes only {data}"
        ));
    }
    Ok(Sparse { real_size, map })
}

/// Reads a GNU sparse 1.0 map from the start of the member's data: decimal numbers, one a line (the count, then
/// offset/length pairs), padded to a block. Returns the numbers and the bytes consumed (whole blocks).
fn read_sparse_10(pipe: &mut Pipeline, stored: u64, ctx: &str) -> Result<(Vec<u64>, u64)> {
    let err = |reason: String| invalid(ctx, reason);
    let mut consumed = 0u64;
    let mut line: Vec<u8> = Vec::with_capacity(24);
    let mut numbers = Vec::new();
    let mut want: Option<u64> = None;
    loop {
        if let Some(w) = want {
            if numbers.len() as u64 == w * 2 {
                break;
            }
        }
        if consumed >= stored {
            return Err(err("sparse 1.0 map runs past the member's data".into()));
        }
        let avail = pipe.peek().map_err(|e| err(format!("reading the sparse map: {e}")))?;
        let Some(&b) = avail.first() else {
            return Err(err("truncated sparse 1.0 map".into()));
        };
        pipe.consume(1);
        consumed += 1;
        if b == b'\n' {
            let n = parse_u64(&line).ok_or_else(|| {
                err(format!(
                    "bad number {:?} in the sparse 1.0 map",
                    String::from_utf8_lossy(&line)
                ))
            })?;
            line.clear();
            if want.is_none() {
                if n > MAX_SPARSE_ENTRIES {
                    return Err(CoreError::LimitExceeded {
                        context: ctx.to_owned(),
                        reason: format!("sparse map of {n} entries exceeds the {MAX_SPARSE_ENTRIES}-entry limit"),
                    });
                }
                want = Some(n);
            } else {
                numbers.push(n);
            }
        } else {
            if line.len() >= 20 {
                return Err(err("overlong number in the sparse 1.0 map".into()));
            }
            line.push(b);
        }
    }
    let pad = blocks(consumed).unwrap_or(consumed) - consumed;
    if pad > stored - consumed {
        return Err(err("sparse 1.0 map runs past the member's data".into()));
    }
    let skipped = skip(pipe, pad).map_err(|e| err(format!("reading the sparse map: {e}")))?;
    if skipped != pad {
        return Err(err("truncated sparse 1.0 map".into()));
    }
    Ok((numbers, consumed + pad))
}

/// Reads an old GNU sparse header's map: the four slots in the header, then extension blocks while flagged.
fn read_sparse_gnu(pipe: &mut Pipeline, header: &Header, errors: &ErrorSlot, ctx: &str) -> Result<(Vec<u64>, u64)> {
    let bad = |reason: String| invalid(ctx, reason);
    let gnu = header
        .as_gnu()
        .ok_or_else(|| bad("GNU sparse entry without a GNU header".into()))?;
    let real = gnu
        .real_size()
        .map_err(|e| bad(format!("corrupt sparse real size: {e}")))?;
    let mut numbers = Vec::new();
    let mut push = |s: &tar::GnuSparseHeader| -> Result<()> {
        if s.is_empty() {
            return Ok(());
        }
        let off = s.offset().map_err(|e| bad(format!("corrupt sparse map offset: {e}")))?;
        let len = s.length().map_err(|e| bad(format!("corrupt sparse map length: {e}")))?;
        if numbers.len() as u64 >= MAX_SPARSE_ENTRIES * 2 {
            return Err(CoreError::LimitExceeded {
                context: ctx.to_owned(),
                reason: format!("sparse map exceeds the {MAX_SPARSE_ENTRIES}-entry limit"),
            });
        }
        numbers.extend([off, len]);
        Ok(())
    };
    for s in &gnu.sparse {
        push(s)?;
    }
    let mut extended = gnu.is_extended();
    let mut ext = tar::GnuExtSparseHeader::new();
    while extended {
        let block: &mut [u8; 512] = ext.as_mut_bytes();
        let got = read_block(pipe, block).map_err(|e| stream_error(errors, ctx, &e))?;
        if got != 512 {
            return Err(bad("truncated GNU sparse extension header".into()));
        }
        for s in ext.sparse() {
            push(s)?;
        }
        extended = ext.is_extended();
    }
    Ok((numbers, real))
}

#[allow(clippy::too_many_lines)] // one linear pass over the header kinds reads best as one function
/// Calls `f(meta, data)` for each entry of the tar stream in `pipe`, in order. `max_bytes` bounds the size an
/// entry may claim (PAX size, sparse real size), on top of the pipeline's own cap on decoded bytes.
pub fn for_each_entry(
    pipe: &mut Pipeline,
    ctx: &str,
    max_entries: u64,
    max_bytes: u64,
    mut f: impl FnMut(&Meta, &mut dyn Read) -> Result<()>,
) -> Result<u64> {
    let mut count = 0u64;
    let mut last: Vec<u8> = Vec::new();
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut pax: Option<Vec<u8>> = None;
    let errors = pipe.errors();
    let mut header = Header::new_old();
    let mut idx = 0u64;
    loop {
        idx += 1;
        let here = |last: &[u8]| where_(ctx, idx, last);
        let block: &mut [u8; 512] = header.as_mut_bytes();
        let got = read_block(pipe, block).map_err(|e| stream_error(&errors, &here(&last), &e))?;
        if got == 0 {
            break;
        }
        if got < 512 {
            if let Some(err) = errors.take() {
                return Err(err);
            }
            return Err(invalid(
                &here(&last),
                "corrupt tar stream: truncated header block".into(),
            ));
        }
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let raw = header.as_bytes();
        let cksum = octal(&raw[148..156])
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                let text = field_text(&raw[148..156]);
                invalid(
                    &here(&last),
                    format!("corrupt tar stream: header checksum {text} is not a number"),
                )
            })?;
        if !header_checksum_ok(raw, cksum) {
            return Err(invalid(
                &here(&last),
                "corrupt tar stream: archive header checksum mismatch".into(),
            ));
        }
        let etype = header.entry_type();
        let hsize = number(&raw[124..136]).ok_or_else(|| {
            let text = field_text(&raw[124..136]);
            invalid(
                &here(&last),
                format!("corrupt header field size: {text} is not a number"),
            )
        })?;
        let span =
            |stored: u64| blocks(stored).ok_or_else(|| invalid(&here(&last), format!("entry size {stored} overflows")));
        match etype {
            EntryType::GNULongName | EntryType::GNULongLink | EntryType::XHeader => {
                let (cap, what) = match etype {
                    EntryType::XHeader => (MAX_PAX, "PAX header"),
                    EntryType::GNULongName => (MAX_LONG_NAME, "GNU long name"),
                    _ => (MAX_LONG_NAME, "GNU long link"),
                };
                let data = read_capped(&mut *pipe, hsize, cap, what, &here(&last))?;
                let pad = span(hsize)? - hsize;
                if skip(pipe, pad).map_err(|e| stream_error(&errors, &here(&last), &e))? != pad {
                    return Err(invalid(&here(&last), format!("truncated {what}")));
                }
                match etype {
                    EntryType::XHeader => pax = Some(data),
                    EntryType::GNULongName => long_name = Some(strip_nuls(data)),
                    _ => long_link = Some(strip_nuls(data)),
                }
                continue;
            }
            EntryType::XGlobalHeader => {
                // Global PAX records (e.g. git's comment) carry nothing imgcore applies; the data is skipped.
                let n = span(hsize)?;
                if skip(pipe, n).map_err(|e| stream_error(&errors, &here(&last), &e))? != n {
                    return Err(invalid(&here(&last), "truncated PAX global header".into()));
                }
                continue;
            }
            _ => {}
        }
        count += 1;
        if count > max_entries {
            return Err(CoreError::LimitExceeded {
                context: ctx.to_owned(),
                reason: format!("more than {max_entries} entries (max_entries)"),
            });
        }
        let mut path = long_name.take().unwrap_or_else(|| header.path_bytes().into_owned());
        let mut link = long_link.take().unwrap_or_else(|| {
            header
                .link_name_bytes()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default()
        });
        // The header's name, for errors: made into text only when one is reported.
        let name_for_err = path.clone();
        let entry_ctx = || format!("{ctx}: entry {:?}", entry_name(&name_for_err));
        let bad =
            |what: &str, e: &dyn std::fmt::Display| invalid(&entry_ctx(), format!("corrupt header field {what}: {e}"));
        let raw = header.as_bytes();
        let field = |what: &str, at: std::ops::Range<usize>, parse: fn(&[u8]) -> Option<u64>| {
            parse(&raw[at.clone()]).ok_or_else(|| bad(what, &format!("{} is not a number", field_text(&raw[at]))))
        };
        #[allow(clippy::cast_possible_truncation)] // the tar crate's `mode()`: the field's low 32 bits
        let mode = field("mode", 100..108, octal)? as u32 & 0o7777;
        let mut uid = field("uid", 108..116, number)?;
        let mut gid = field("gid", 116..124, number)?;
        let mut mtime = i64::try_from(field("mtime", 136..148, number)?).unwrap_or(i64::MAX);
        let mut mtime_nsec = 0u32;
        let mut xattrs = Vec::new();
        // Bytes of data in the stream: the header field, or the PAX size record, which wins (POSIX pax; Go, GNU
        // tar and Python write files of 8 GiB and more so, with anything in the header field).
        let mut stored = hsize;
        let mut ps = PaxSparse::default();
        if let Some(records) = pax.take() {
            for rec in pax_records(&records) {
                let (key, val) = rec.map_err(|e| bad("PAX record", &e))?;
                let num = |what: &str| parse_u64(val).ok_or_else(|| bad(what, &String::from_utf8_lossy(val)));
                match key {
                    b"path" => path = val.to_vec(),
                    b"linkpath" => link = val.to_vec(),
                    b"uid" => uid = num("PAX uid")?,
                    b"gid" => gid = num("PAX gid")?,
                    b"mtime" => {
                        (mtime, mtime_nsec) =
                            pax_time(val).ok_or_else(|| bad("PAX mtime", &String::from_utf8_lossy(val)))?;
                    }
                    b"size" => stored = num("PAX size")?,
                    b"GNU.sparse.size" | b"GNU.sparse.realsize" => ps.real_size = Some(num("PAX sparse size")?),
                    b"GNU.sparse.numblocks" => {
                        let n = num("PAX sparse numblocks")?;
                        if n > MAX_SPARSE_ENTRIES {
                            return Err(CoreError::LimitExceeded {
                                context: entry_ctx(),
                                reason: format!(
                                    "sparse map of {n} entries exceeds the {MAX_SPARSE_ENTRIES}-entry limit"
                                ),
                            });
                        }
                        ps.numblocks = Some(n);
                    }
                    b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                        if ps.numbers.len() as u64 >= MAX_SPARSE_ENTRIES * 2 {
                            return Err(CoreError::LimitExceeded {
                                context: entry_ctx(),
                                reason: format!("sparse map exceeds the {MAX_SPARSE_ENTRIES}-entry limit"),
                            });
                        }
                        let expect_offset = ps.numbers.len() % 2 == 0;
                        if expect_offset != (key == b"GNU.sparse.offset") {
                            return Err(invalid(
                                &entry_ctx(),
                                "sparse 0.0 map: offset and numbytes records out of order".into(),
                            ));
                        }
                        ps.numbers.push(num("PAX sparse map")?);
                    }
                    b"GNU.sparse.map" => {
                        let mut nums = Vec::new();
                        for v in val.split(|&b| b == b',') {
                            if nums.len() as u64 >= MAX_SPARSE_ENTRIES * 2 {
                                return Err(CoreError::LimitExceeded {
                                    context: entry_ctx(),
                                    reason: format!("sparse map exceeds the {MAX_SPARSE_ENTRIES}-entry limit"),
                                });
                            }
                            nums.push(
                                parse_u64(v).ok_or_else(|| bad("PAX sparse map", &String::from_utf8_lossy(val)))?,
                            );
                        }
                        ps.numbers = nums;
                    }
                    b"GNU.sparse.name" => ps.name = Some(val.to_vec()),
                    b"GNU.sparse.major" => ps.major = Some(val.to_vec()),
                    b"GNU.sparse.minor" => ps.minor = Some(val.to_vec()),
                    k if k.starts_with(b"SCHILY.xattr.") => {
                        xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), val.to_vec()));
                    }
                    _ => {}
                }
            }
        }
        // From here on errors name the entry as extracted (PAX path, or the sparse file's real name).
        let final_name = ps.name.clone().unwrap_or_else(|| path.clone());
        let entry_ctx = || format!("{ctx}: entry {:?}", entry_name(&final_name));
        if stored > max_bytes {
            return Err(CoreError::LimitExceeded {
                context: entry_ctx(),
                reason: format!("entry of {stored} bytes exceeds the {max_bytes}-byte limit (max_bytes)"),
            });
        }
        // Header-only types carry no data whatever their size says (Go's isHeaderOnlyType, tarfile likewise).
        if matches!(
            etype,
            EntryType::Directory
                | EntryType::Symlink
                | EntryType::Link
                | EntryType::Char
                | EntryType::Block
                | EntryType::Fifo
        ) {
            stored = 0;
        }
        let total = span(stored)?;
        let mut kind = match etype {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::Fifo => Kind::Fifo,
            other => Kind::Other(other.as_byte()),
        };
        // Old tars mark directories only by a trailing slash on a regular entry.
        if kind == Kind::File && etype != EntryType::GNUSparse && path.last() == Some(&b'/') {
            kind = Kind::Dir;
        }
        // GNU sparse files: the map comes from the old GNU header ('S'), PAX records (0.0, 0.1) or the start of
        // the data (1.0); `size` becomes the data bytes that follow.
        let mut data_left = stored;
        let mut sparse = None;
        let is_10 = ps.major.as_deref() == Some(b"1") && ps.minor.as_deref() == Some(b"0");
        let sparse_err = |reason: String| invalid(&entry_ctx(), reason);
        let sparse_numbers = if kind != Kind::File {
            None
        } else if etype == EntryType::GNUSparse {
            Some(read_sparse_gnu(pipe, &header, &errors, &entry_ctx())?)
        } else if is_10 {
            let real = ps
                .real_size
                .ok_or_else(|| sparse_err("sparse 1.0 entry without GNU.sparse.realsize".into()))?;
            let (nums, used) = read_sparse_10(pipe, stored, &entry_ctx())?;
            data_left = stored - used;
            Some((nums, real))
        } else if ps.numblocks.is_some() || !ps.numbers.is_empty() {
            let real = ps
                .real_size
                .ok_or_else(|| sparse_err("sparse 0.x entry without GNU.sparse.size".into()))?;
            if ps.numblocks.is_some_and(|n| n * 2 != ps.numbers.len() as u64) {
                return Err(sparse_err(format!(
                    "sparse map announces {} entries but lists {} numbers",
                    ps.numblocks.unwrap_or(0),
                    ps.numbers.len()
                )));
            }
            Some((std::mem::take(&mut ps.numbers), real))
        } else {
            None
        };
        if let Some((nums, real)) = sparse_numbers {
            if real > max_bytes {
                return Err(CoreError::LimitExceeded {
                    context: entry_ctx(),
                    reason: format!("sparse file of {real} bytes exceeds the {max_bytes}-byte limit (max_bytes)"),
                });
            }
            let map = check_sparse(&nums, real, data_left).map_err(sparse_err)?;
            sparse = Some(Box::new(map));
            if let Some(name) = ps.name.take() {
                path = name;
            }
        }
        let dev = if matches!(kind, Kind::Char | Kind::Block) {
            (
                header.device_major().map_err(|e| bad("devmajor", &e))?.unwrap_or(0),
                header.device_minor().map_err(|e| bad("devminor", &e))?.unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        if path.is_empty() {
            return Err(invalid(&here(&last), "entry with an empty name".into()));
        }
        let data_size = sparse
            .as_ref()
            .map_or(data_left, |s| s.map.iter().map(|&(_, l)| l).sum());
        let meta = Meta {
            path,
            link,
            kind,
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            size: data_size,
            dev,
            xattrs,
            sparse,
        };
        let map_len = stored - data_left; // the map blocks of a sparse 1.0 file, already read
        let mut data = (&mut *pipe).take(data_size);
        f(&meta, &mut data)?;
        let rest = total - map_len - (data_size - data.limit());
        if skip(pipe, rest).map_err(|e| stream_error(&errors, &here(&last), &e))? != rest {
            if let Some(err) = errors.take() {
                return Err(err);
            }
            return Err(invalid(
                &entry_ctx(),
                format!("truncated: entry data ends before its {stored} bytes"),
            ));
        }
        last = meta.path;
    }
    if long_name.is_some() || long_link.is_some() || pax.is_some() {
        return Err(invalid(
            ctx,
            "extension header at the end of the archive describes no entry".into(),
        ));
    }
    if pipe.eof_seen() {
        if let Some(err) = pipe.take_error() {
            return Err(err);
        }
        return Err(invalid(
            ctx,
            format!(
                "truncated tar stream: no end-of-archive marker after entry {:?}",
                entry_name(&last)
            ),
        ));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::{number, octal, pax_time};

    #[test]
    fn pax_records_keep_newlines_in_values() {
        let data = b"28 SCHILY.xattr.user.a=\x01\n\x00\xff\n12 path=a/b\n";
        let recs: Vec<_> = super::pax_records(data).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            recs,
            vec![
                (&b"SCHILY.xattr.user.a"[..], &b"\x01\n\x00\xff"[..]),
                (&b"path"[..], &b"a/b"[..])
            ]
        );
        assert!(super::pax_records(b"99 path=x\n").next().unwrap().is_err());
        assert!(super::pax_records(b"x path=x\n").next().unwrap().is_err());
    }

    #[test]
    fn sparse_maps_are_checked() {
        use super::check_sparse;
        let ok = check_sparse(&[1024, 512, 8192, 0], 8192, 512).unwrap();
        assert_eq!(ok.map, vec![(1024, 512)]);
        assert_eq!(ok.real_size, 8192);
        // Within the last block: the member's padding.
        assert!(check_sparse(&[0, 500], 4096, 512).is_ok());
        for (nums, real, stored, why) in [
            (&[0u64, 1024, 512, 1024][..], 4096, 2048, "overlap"),
            (&[2048, 512, 0, 512][..], 4096, 1024, "out of order"),
            (&[0, 512, 4000, 512][..], 4096, 1024, "past the file's size"),
            (&[9000, 0][..], 4096, 0, "beyond"),
            (&[0, 4096][..], 8192, 512, "member holds 512"),
            (&[0, 512][..], 8192, 4096, "describes only"),
            (&[0, 512, 1024][..], 4096, 512, "odd"),
            (&[u64::MAX, 2][..], u64::MAX, 2, "past the file's size"),
        ] {
            let err = check_sparse(nums, real, stored).unwrap_err();
            assert!(err.contains(why), "{nums:?}: {err}");
        }
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(b"1700000000.123456789"), Some((1_700_000_000, 123_456_789)));
        assert_eq!(pax_time(b"5"), Some((5, 0)));
        assert_eq!(pax_time(b"5.5"), Some((5, 500_000_000)));
        assert_eq!(pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(pax_time(b"x"), None);
    }

    #[test]
    fn numeric_fields_read_as_the_tar_crate_reads_them() {
        let eight: [&[u8]; 11] = [
            b"0000644\0",
            b"   644 \0",
            b"+17\0\0\0\0\0",
            b"\0\0\0\0\0\0\0\0",
            b"0000009\0",
            b"7777777\0",
            b"12 34\0\0\0",
            b"-1\0\0\0\0\0\0",
            &[0x80, 0, 0, 0, 0, 0, 1, 2],
            &[0xff; 8],
            b"        ",
        ];
        for f in eight {
            let mut h = tar::Header::new_gnu();
            h.as_mut_bytes()[108..116].copy_from_slice(f);
            assert_eq!(number(f), h.uid().ok(), "{f:?}");
            h.as_mut_bytes()[100..108].copy_from_slice(f);
            if f[0] & 0x80 == 0 {
                assert_eq!(octal(f).map(|v| v as u32), h.mode().ok(), "{f:?}");
            }
        }
        let twelve: [&[u8]; 4] = [
            b"00000001750\0",
            &[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1],
            b"77777777777\0",
            b"0000000175x\0",
        ];
        for f in twelve {
            let mut h = tar::Header::new_gnu();
            h.as_mut_bytes()[124..136].copy_from_slice(f);
            assert_eq!(number(f), h.entry_size().ok(), "{f:?}");
        }
    }
}
