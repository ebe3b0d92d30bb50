//! sha256 throughput of the `sha2` crate on this CPU.
use std::time::Instant;
fn main() {
    let buf = vec![7u8; 1 << 20];
    let mut h = imgcore_core::digest::Hasher::sha256();
    let t = Instant::now();
    for _ in 0..500 {
        h.update(&buf);
    }
    let d = h.digest();
    eprintln!("{d} {:.0} MB/s", 500.0 * 1.048_576 / t.elapsed().as_secs_f64());
}
