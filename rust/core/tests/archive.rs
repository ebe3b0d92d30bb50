//! Extraction end to end without Python: union semantics of a small stack, confinement, typed errors.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use imgcore_core::archive::extract::{extract_layer, unpack_layers, ExtractOptions};
use imgcore_core::archive::index::layer_index;
use imgcore_core::CoreError;

struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("imgcore-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Sym(&'a str, &'a str),
}

/// Writes a tar with raw names (the `tar` crate's builder refuses `..`, so headers are filled by hand).
fn tar(path: &Path, entries: &[E<'_>]) {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, kind, data, link): (&str, tar::EntryType, &[u8], &str) = match e {
            E::Dir(n) => (n, tar::EntryType::Directory, b"", ""),
            E::File(n, d) => (n, tar::EntryType::Regular, d, ""),
            E::Sym(n, t) => (n, tar::EntryType::Symlink, b"", t),
        };
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    fs::File::create(path).unwrap().write_all(&out).unwrap();
}

#[test]
fn stack_applies_whiteouts_and_opaque_dirs() {
    let t = Tmp::new("stack");
    let (l0, l1, dest) = (t.0.join("l0.tar"), t.0.join("l1.tar"), t.0.join("root"));
    fs::create_dir(&dest).unwrap();
    tar(
        &l0,
        &[
            E::Dir("etc"),
            E::File("etc/a", b"a"),
            E::File("etc/b", b"b"),
            E::Dir("opt"),
            E::File("opt/x", b"x"),
        ],
    );
    tar(
        &l1,
        &[
            E::Dir("etc"),
            E::File("etc/.wh.a", b""),
            E::Dir("opt"),
            E::File("opt/new", b"n"),
            E::File("opt/.wh..wh..opq", b""),
        ],
    );
    let stats = unpack_layers(&[l0.clone(), l1.clone()], &dest, &ExtractOptions::default(), &[]).unwrap();
    assert_eq!(stats[1].whiteouts, 2);
    assert!(!dest.join("etc/a").exists());
    assert_eq!(fs::read(dest.join("etc/b")).unwrap(), b"b");
    assert!(!dest.join("opt/x").exists(), "opaque dir hides lower children");
    assert_eq!(
        fs::read(dest.join("opt/new")).unwrap(),
        b"n",
        "the layer's own entries stay, whatever their order"
    );
    let index = layer_index(&[l0, l1], u64::MAX, u64::MAX).unwrap();
    let paths: Vec<String> = index
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    assert_eq!(paths, ["etc", "etc/b", "opt", "opt/new"]);
    assert_eq!(index[3].layer, 1);
}

#[test]
fn dotdot_is_unsafe_and_nothing_escapes() {
    let t = Tmp::new("dotdot");
    let (l, dest) = (t.0.join("l.tar"), t.0.join("root"));
    fs::create_dir(&dest).unwrap();
    tar(&l, &[E::File("../escaped", b"x")]);
    let err = extract_layer(&l, &dest, &ExtractOptions::default()).unwrap_err();
    assert!(
        matches!(err, CoreError::UnsafePath { ref entry, .. } if entry == "../escaped"),
        "{err}"
    );
    assert!(!t.0.join("escaped").exists());
}

#[test]
fn symlink_parent_stays_inside() {
    let t = Tmp::new("symlink");
    let (l, dest) = (t.0.join("l.tar"), t.0.join("root"));
    fs::create_dir(&dest).unwrap();
    tar(&l, &[E::Sym("up", "../../../.."), E::File("up/pwned", b"x")]);
    extract_layer(&l, &dest, &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(dest.join("pwned")).unwrap(), b"x");
    assert!(!t.0.join("pwned").exists());
}

#[test]
fn truncated_stream_is_invalid_archive() {
    let t = Tmp::new("trunc");
    let (l, dest) = (t.0.join("l.tar"), t.0.join("root"));
    fs::create_dir(&dest).unwrap();
    tar(&l, &[E::File("big", &[7u8; 4000])]);
    let data = fs::read(&l).unwrap();
    fs::write(&l, &data[..2048]).unwrap();
    let err = extract_layer(&l, &dest, &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, CoreError::InvalidArchive { .. }), "{err}");
    assert!(err.to_string().contains("big"), "{err}");
}
