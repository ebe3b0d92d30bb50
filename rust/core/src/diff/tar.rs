//! Tar header encoding, byte for byte what Python's `tarfile` writes in `PAX_FORMAT` (the pure-Python twin
//! uses `tarfile` itself, so both produce the same `diff_id`).
//!
//! Invariants: the ustar block never carries a truncated value that a reader would use: a name or link
//! longer than 100 bytes or not ASCII, an id >= 8^7, a size or mtime outside 0..8^11 goes into a PAX `x`
//! record (ids and times then read 0 in the ustar block, as tarfile does). PAX records come in a fixed order:
//! xattrs (`SCHILY.xattr.*`, sorted), `path`, `linkpath`, `uid`, `gid`, `size`, `mtime`.

/// Tar block size.
pub const BLOCK: usize = 512;
/// tarfile pads the archive to a multiple of 20 blocks.
pub const RECORD: usize = 20 * BLOCK;

/// Entry type flags.
pub mod flag {
    /// Regular file.
    pub const REG: u8 = b'0';
    /// Hard link.
    pub const LNK: u8 = b'1';
    /// Symbolic link.
    pub const SYM: u8 = b'2';
    /// Character device.
    pub const CHR: u8 = b'3';
    /// Block device.
    pub const BLK: u8 = b'4';
    /// Directory.
    pub const DIR: u8 = b'5';
    /// FIFO.
    pub const FIFO: u8 = b'6';
    /// PAX extended header.
    pub const PAX: u8 = b'x';
}

/// One entry's header fields.
pub struct Header<'a> {
    /// Path inside the archive (directories end with `/`).
    pub name: &'a [u8],
    /// Permission bits.
    pub mode: u32,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Payload size.
    pub size: u64,
    /// Modification time, whole seconds.
    pub mtime: i64,
    /// Type flag.
    pub typeflag: u8,
    /// Link target (symlinks, hardlinks).
    pub linkname: &'a [u8],
    /// Device major (character and block devices).
    pub devmajor: u64,
    /// Device minor.
    pub devminor: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// `"%0*o" % (digits - 1, n) + NUL`, or `None` when it does not fit.
fn octal(field: &mut [u8], n: u64) {
    let digits = field.len() - 1;
    let s = format!("{n:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// tarfile's `stn(s, length, "ascii", "replace")`: non-ASCII characters (and undecodable bytes) become `?`.
fn ascii_replace(s: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for chunk in s.utf8_chunks() {
        for ch in chunk.valid().chars() {
            out.push(if ch.is_ascii() { ch as u8 } else { b'?' });
        }
        out.extend(std::iter::repeat_n(b'?', chunk.invalid().len()));
    }
    out.truncate(len);
    out
}

/// One raw 512-byte ustar block as tarfile's `_create_header` builds it.
#[allow(clippy::too_many_arguments)]
fn block(
    name: &[u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: &[u8],
    dev: Option<(u64, u64)>,
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let n = ascii_replace(name, 100);
    b[..n.len()].copy_from_slice(&n);
    octal(&mut b[100..108], u64::from(mode & 0o7777));
    octal(&mut b[108..116], uid);
    octal(&mut b[116..124], gid);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], mtime);
    b[148..156].copy_from_slice(b"        ");
    b[156] = typeflag;
    let l = ascii_replace(linkname, 100);
    b[157..157 + l.len()].copy_from_slice(&l);
    b[257..265].copy_from_slice(b"ustar\x0000");
    if let Some((major, minor)) = dev {
        octal(&mut b[329..337], major);
        octal(&mut b[337..345], minor);
    }
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let s = format!("{sum:06o}\0");
    b[148..155].copy_from_slice(s.as_bytes());
    b
}

/// Appends the header (PAX record block first when needed) of `h` to `out`.
pub fn encode(h: &Header<'_>, out: &mut Vec<u8>) {
    const ID_MAX: u64 = 8u64.pow(7);
    const NUM_MAX: u64 = 8u64.pow(11);
    let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (k, v) in h.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        pax.push((key, v.clone()));
    }
    let needs_text = |s: &[u8]| !s.is_ascii() || s.len() > 100;
    if needs_text(h.name) {
        pax.push((b"path".to_vec(), h.name.to_vec()));
    }
    if needs_text(h.linkname) {
        pax.push((b"linkpath".to_vec(), h.linkname.to_vec()));
    }
    let mut num = |key: &str, v: i128, max: u64| -> u64 {
        match u64::try_from(v) {
            Ok(n) if n < max => n,
            _ => {
                pax.push((key.as_bytes().to_vec(), v.to_string().into_bytes()));
                0
            }
        }
    };
    let uid = num("uid", i128::from(h.uid), ID_MAX);
    let gid = num("gid", i128::from(h.gid), ID_MAX);
    let size = num("size", i128::from(h.size), NUM_MAX);
    let mtime = num("mtime", i128::from(h.mtime), NUM_MAX);
    if !pax.is_empty() {
        let binary = pax.iter().any(|(_, v)| std::str::from_utf8(v).is_err());
        let mut records = Vec::new();
        if binary {
            records.extend_from_slice(b"21 hdrcharset=BINARY\n");
        }
        for (k, v) in &pax {
            let l = k.len() + v.len() + 3;
            let mut p = 0usize;
            loop {
                let n = l + p.to_string().len();
                if n == p {
                    break;
                }
                p = n;
            }
            records.extend_from_slice(p.to_string().as_bytes());
            records.push(b' ');
            records.extend_from_slice(k);
            records.push(b'=');
            records.extend_from_slice(v);
            records.push(b'\n');
        }
        out.extend_from_slice(&block(
            b"././@PaxHeader",
            0,
            0,
            0,
            records.len() as u64,
            0,
            flag::PAX,
            b"",
            None,
        ));
        out.extend_from_slice(&records);
        pad(out, records.len());
    }
    let dev = matches!(h.typeflag, flag::CHR | flag::BLK).then_some((h.devmajor, h.devminor));
    out.extend_from_slice(&block(
        h.name, h.mode, uid, gid, size, mtime, h.typeflag, h.linkname, dev,
    ));
}

/// Zero padding after `len` payload bytes up to the next block boundary.
pub fn pad(out: &mut Vec<u8>, len: usize) {
    let rem = len % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

/// The end-of-archive marker plus tarfile's padding to a whole record, given the bytes written so far.
pub fn trailer(written: u64) -> Vec<u8> {
    let total = written + 2 * BLOCK as u64;
    let rem = (total % RECORD as u64) as usize;
    let pad = if rem == 0 { 0 } else { RECORD - rem };
    vec![0u8; 2 * BLOCK + pad]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr<'a>(name: &'a [u8], link: &'a [u8], xattrs: &'a [(Vec<u8>, Vec<u8>)]) -> Header<'a> {
        Header {
            name,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 1_700_000_000,
            typeflag: flag::REG,
            linkname: link,
            devmajor: 0,
            devminor: 0,
            xattrs,
        }
    }

    #[test]
    fn short_name_is_one_block_with_valid_checksum() {
        let mut out = Vec::new();
        encode(&hdr(b"etc/passwd", b"", &[]), &mut out);
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[..10], b"etc/passwd");
        assert_eq!(&out[100..108], b"0000644\0");
        let mut copy = out.clone();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&x| u32::from(x)).sum();
        assert_eq!(&out[148..156], format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn long_name_gets_pax_path() {
        let name = "d/".repeat(60);
        let mut out = Vec::new();
        encode(&hdr(name.as_bytes(), b"", &[]), &mut out);
        assert_eq!(out.len(), 3 * BLOCK);
        assert_eq!(out[156], flag::PAX);
        let rec = format!("{} path={name}\n", name.len() + 10); // "130 path=...\n" counts its own 3 digits
        assert_eq!(&out[BLOCK..BLOCK + rec.len()], rec.as_bytes());
    }

    #[test]
    fn pax_record_length_counts_itself() {
        // "9 a=bcd\n" is 8 bytes: the length field must include its own digits (99 -> 100 boundary).
        let xattrs = vec![(b"user.k".to_vec(), vec![b'v'; 79])];
        let mut out = Vec::new();
        encode(&hdr(b"f", b"", &xattrs), &mut out);
        let body = &out[BLOCK..];
        let text = std::str::from_utf8(&body[..=body.iter().position(|&b| b == b'\n').unwrap_or(0)]).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), text.len());
    }

    #[test]
    fn trailer_pads_to_record() {
        assert_eq!(trailer(512).len() + 512, RECORD);
        assert_eq!(
            (trailer(RECORD as u64 * 3 - 1024).len() as u64 + RECORD as u64 * 3 - 1024) % RECORD as u64,
            0
        );
    }
}
