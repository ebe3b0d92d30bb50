//! Blob inspection: the digest, `diff_id`, compression and both sizes of a layer blob, from one streaming pass
//! through the same decoder that extraction uses (so every reader of a layer agrees on what it is).
//!
//! Invariants: the compression is detected from the bytes, never from a media type; memory stays bounded by
//! the decoder's chunk pipeline whatever the blob's size; the uncompressed size never exceeds `max_bytes`; a
//! corrupt or truncated stream is an error, as in extraction.

use std::io;
use std::path::Path;

use crate::archive::decode::{Pipeline, StreamSummary};
use crate::error::{CoreError, Result};

/// Decodes the whole blob at `path` and returns what it measured.
pub fn inspect(path: &Path, max_bytes: u64) -> Result<StreamSummary> {
    let mut pipeline = Pipeline::start(path, max_bytes)?;
    loop {
        let n = match pipeline.peek() {
            Ok(buf) => buf.len(),
            Err(e) => return Err(pipeline.take_error().unwrap_or_else(|| decode_failed(path, &e))),
        };
        if n == 0 {
            break;
        }
        pipeline.consume(n);
    }
    if let Some(e) = pipeline.take_error() {
        return Err(e);
    }
    pipeline.finish()
}

fn decode_failed(path: &Path, e: &io::Error) -> CoreError {
    CoreError::InvalidArchive {
        context: path.display().to_string(),
        reason: format!("cannot decode the blob: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_and_gzip_agree_on_the_diff_id() {
        let dir = std::env::temp_dir().join(format!("imgcore-blob-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tar = vec![0u8; 2048];
        let plain = dir.join("plain");
        std::fs::write(&plain, &tar).unwrap();
        let gz = dir.join("gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&tar).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let a = inspect(&plain, 1 << 20).unwrap();
        let b = inspect(&gz, 1 << 20).unwrap();
        assert_eq!(a.diff_id, b.diff_id);
        assert_eq!(a.digest, a.diff_id);
        assert_ne!(b.digest, b.diff_id);
        assert_eq!((a.bytes, b.bytes), (2048, 2048));
        assert!(inspect(&gz, 1000).is_err(), "max_bytes is enforced");
        std::fs::write(&gz, b"\x1f\x8b\x08\x00garbage").unwrap();
        assert!(inspect(&gz, 1 << 20).is_err(), "a corrupt stream is an error");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
