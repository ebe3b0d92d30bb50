//! Fuzz target: any bytes as a layer blob through the reader, the extractor (flatten and overlay forms) and
//! the union index. Invariants checked: no panic or abort (libFuzzer reports those), and nothing outside
//! `dest` changes: a canary tree beside it and the sandbox's listing are compared after every input.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use imgcore_core::archive::extract::{extract_layer, ExtractOptions};
use imgcore_core::archive::index::layer_index;
use libfuzzer_sys::fuzz_target;

fn sandbox() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("imgcore-fuzz-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("canary/sub")).unwrap();
        fs::write(dir.join("canary/secret"), b"canary").unwrap();
        fs::write(dir.join("canary/sub/deep"), b"deep").unwrap();
        dir
    })
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if rel == "dest" || rel == "layer" {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
                out.push((rel, Vec::new()));
            } else {
                out.push((rel, fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let dir = sandbox();
    let before = listing(dir);
    let blob = dir.join("layer");
    fs::write(&blob, data).unwrap();
    let opts = ExtractOptions { max_bytes: 32 << 20, max_entries: 4096, ..ExtractOptions::default() };
    for overlay in [false, true] {
        let dest = dir.join("dest");
        let _ = fs::remove_dir_all(&dest);
        if dest.exists() {
            // Read-only leftovers (mode 0 dirs) are fine for root; make sure the next run starts clean.
            std::process::Command::new("rm").arg("-rf").arg(&dest).status().unwrap();
        }
        fs::create_dir(&dest).unwrap();
        let _ = extract_layer(&blob, &dest, &ExtractOptions { overlay, ..opts.clone() });
        assert_eq!(listing(dir), before, "extraction changed something outside dest");
    }
    let _ = layer_index(&[blob.clone(), blob], 32 << 20, 4096);
});
