#![allow(clippy::cast_precision_loss, clippy::unwrap_used)] // a measuring tool
//! Measures decode throughput of a blob through the pipeline: `cargo run --release --example inflate_speed FILE`.
use std::io::Read;
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).unwrap_or_default();
    let t = Instant::now();
    let mut p = imgcore_core::archive::decode::Pipeline::start(std::path::Path::new(&path), u64::MAX).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = p.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    let s = p.finish().unwrap();
    let dt = t.elapsed().as_secs_f64();
    eprintln!(
        "{} {} bytes in {dt:.3}s = {:.0} MB/s ({})",
        s.compression.name(),
        n,
        n as f64 / dt / 1e6,
        imgcore_core::archive::decode::gzip_backend()
    );
}
