//! `inspect_blob`: what a layer blob is (digest, `diff_id`, compression, sizes), measured by the Rust decoder.

use std::path::PathBuf;

use imgcore_core::archive::blob;
use imgcore_core::archive::extract::DEFAULT_MAX_BYTES;
use pyo3::prelude::*;

use crate::errors::detached;

/// Decodes the blob at `src` once and returns `(digest, diff_id, compression, compressed_bytes, bytes)`.
#[pyfunction]
#[pyo3(signature = (src, *, max_bytes = DEFAULT_MAX_BYTES))]
pub fn inspect_blob(py: Python<'_>, src: PathBuf, max_bytes: u64) -> PyResult<(String, String, String, u64, u64)> {
    let s = detached(py, move || blob::inspect(&src, max_bytes))?;
    Ok((
        s.digest.to_string(),
        s.diff_id.to_string(),
        s.compression.name().to_owned(),
        s.compressed_bytes,
        s.bytes,
    ))
}
