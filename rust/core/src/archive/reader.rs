//! Tar entry reading with our own handling of the extension headers (GNU `L`/`K`, PAX `x`/`g`).
//!
//! The `tar` crate parses each 512-byte header (checksums, numeric fields, ustar prefixes) in raw mode; the
//! extension records are read here with size caps, so a hostile "long name" of gigabytes can never be
//! buffered. Invariants: every [`Meta`] handed to the callback has its final path and link name (PAX beats GNU
//! beats ustar), PAX uid/gid/mtime applied, and `size` equal to the bytes that follow in the stream; the
//! callback must not read more than `size` bytes; a stream that ends without the end-of-archive marker is
//! reported as truncated; the entry count never exceeds the caller's limit.

use std::io::{self, Read};

use tar::{Archive, EntryType};

use super::decode::{ErrorSlot, Pipeline};
use crate::error::{CoreError, Result};

/// Largest GNU long name / long link record accepted.
const MAX_LONG_NAME: u64 = 64 * 1024;
/// Largest PAX extended header accepted (xattrs can be large, e.g. ACLs and capabilities).
const MAX_PAX: u64 = 8 * 1024 * 1024;

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
    /// Data bytes that follow the header.
    pub size: u64,
    /// Device numbers.
    pub dev: (u32, u32),
    /// Extended attributes from `SCHILY.xattr.*`.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
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

#[allow(clippy::too_many_lines)] // one linear pass over the header kinds reads best as one function
/// Calls `f(meta, data)` for each entry of the tar stream in `pipe`, in order.
pub fn for_each_entry(
    pipe: &mut Pipeline,
    ctx: &str,
    max_entries: u64,
    mut f: impl FnMut(&Meta, &mut dyn Read) -> Result<()>,
) -> Result<u64> {
    let mut count = 0u64;
    let mut last: Vec<u8> = Vec::new();
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut pax: Option<Vec<u8>> = None;
    let errors = pipe.errors();
    let mut archive = Archive::new(&mut *pipe);
    let entries = archive
        .entries()
        .map_err(|e| invalid(ctx, format!("corrupt tar stream: {e}")))?
        .raw(true);
    for (i, entry) in entries.enumerate() {
        let idx = i as u64 + 1;
        let mut entry = entry.map_err(|e| stream_error(&errors, &where_(ctx, idx, &last), &e))?;
        let header = entry.header().clone();
        let etype = header.entry_type();
        let hsize = entry.size();
        let here = || where_(ctx, idx, &last);
        match etype {
            EntryType::GNULongName => {
                long_name = Some(strip_nuls(read_capped(
                    &mut entry,
                    hsize,
                    MAX_LONG_NAME,
                    "GNU long name",
                    &here(),
                )?));
                continue;
            }
            EntryType::GNULongLink => {
                long_link = Some(strip_nuls(read_capped(
                    &mut entry,
                    hsize,
                    MAX_LONG_NAME,
                    "GNU long link",
                    &here(),
                )?));
                continue;
            }
            EntryType::XHeader => {
                pax = Some(read_capped(&mut entry, hsize, MAX_PAX, "PAX header", &here())?);
                continue;
            }
            EntryType::XGlobalHeader => {
                // Global PAX records (e.g. git's comment) carry nothing imgcore applies; the data is skipped.
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
        let name_for_err = entry_name(&path);
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            invalid(
                &format!("{ctx}: entry {name_for_err:?}"),
                format!("corrupt header field {what}: {e}"),
            )
        };
        let mode = header.mode().map_err(|e| bad("mode", &e))? & 0o7777;
        let mut uid = header.uid().map_err(|e| bad("uid", &e))?;
        let mut gid = header.gid().map_err(|e| bad("gid", &e))?;
        let mut mtime = i64::try_from(header.mtime().map_err(|e| bad("mtime", &e))?).unwrap_or(i64::MAX);
        let mut mtime_nsec = 0u32;
        let mut xattrs = Vec::new();
        if let Some(records) = pax.take() {
            for rec in pax_records(&records) {
                let (key, val) = rec.map_err(|e| bad("PAX record", &e))?;
                match key {
                    b"path" => path = val.to_vec(),
                    b"linkpath" => link = val.to_vec(),
                    b"uid" | b"gid" => {
                        let n: u64 = std::str::from_utf8(val)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| bad("PAX uid/gid", &String::from_utf8_lossy(val)))?;
                        if key == b"uid" {
                            uid = n;
                        } else {
                            gid = n;
                        }
                    }
                    b"mtime" => {
                        (mtime, mtime_nsec) =
                            pax_time(val).ok_or_else(|| bad("PAX mtime", &String::from_utf8_lossy(val)))?;
                    }
                    b"size" => {
                        let n: Option<u64> = std::str::from_utf8(val).ok().and_then(|s| s.parse().ok());
                        if n != Some(hsize) {
                            return Err(bad(
                                "PAX size",
                                &"a PAX size that differs from the header size is not supported",
                            ));
                        }
                    }
                    k if k.starts_with(b"SCHILY.xattr.") => {
                        xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), val.to_vec()));
                    }
                    _ => {}
                }
            }
        }
        let kind = match etype {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::Fifo => Kind::Fifo,
            other => Kind::Other(other.as_byte()),
        };
        // Old tars mark directories only by a trailing slash on a regular entry.
        let kind = if kind == Kind::File && path.last() == Some(&b'/') {
            Kind::Dir
        } else {
            kind
        };
        let dev = if matches!(kind, Kind::Char | Kind::Block) {
            (
                header.device_major().map_err(|e| bad("devmajor", &e))?.unwrap_or(0),
                header.device_minor().map_err(|e| bad("devminor", &e))?.unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        if path.is_empty() {
            return Err(invalid(&here(), "entry with an empty name".into()));
        }
        let meta = Meta {
            path,
            link,
            kind,
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            size: hsize,
            dev,
            xattrs,
        };
        f(&meta, &mut entry)?;
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
    use super::pax_time;

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
    fn pax_times() {
        assert_eq!(pax_time(b"1700000000.123456789"), Some((1_700_000_000, 123_456_789)));
        assert_eq!(pax_time(b"5"), Some((5, 0)));
        assert_eq!(pax_time(b"5.5"), Some((5, 500_000_000)));
        assert_eq!(pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(pax_time(b"x"), None);
    }
}
