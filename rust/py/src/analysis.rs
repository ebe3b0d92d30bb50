//! `layer_tables`: the per-layer file tables of image analysis, handed to numpy without copying.
//!
//! Each column is a Rust `Vec` moved into a numpy array (`IntoPyArray` takes ownership of the buffer), so the
//! tables cross the boundary once, whole, with no per-row Python object. The layers are read in parallel
//! without the GIL.

use std::path::PathBuf;

use imgcore_core::archive::extract::{DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES};
use imgcore_core::archive::table::{self, LayerTable};
use imgcore_core::digest::Digest;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{detached, to_pyerr};

fn to_dict(py: Python<'_>, t: LayerTable) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    if let Some(s) = t.summary {
        d.set_item("digest", s.digest.to_string())?;
        d.set_item("diff_id", s.diff_id.to_string())?;
        d.set_item("compression", s.compression.name())?;
        d.set_item("compressed_bytes", s.compressed_bytes)?;
        d.set_item("bytes", s.bytes)?;
    }
    d.set_item("path", t.path.into_pyarray(py))?;
    d.set_item("kind", t.kind.into_pyarray(py))?;
    d.set_item("size", t.size.into_pyarray(py))?;
    d.set_item("mode", t.mode.into_pyarray(py))?;
    d.set_item("uid", t.uid.into_pyarray(py))?;
    d.set_item("gid", t.gid.into_pyarray(py))?;
    d.set_item("mtime", t.mtime.into_pyarray(py))?;
    d.set_item("sha256", t.sha256.into_pyarray(py))?;
    d.set_item("link", t.link.into_pyarray(py))?;
    d.set_item("xattrs", t.xattrs.into_pyarray(py))?;
    d.set_item("xattr_hash", t.xattr_hash.into_pyarray(py))?;
    d.set_item("strings", t.strings.into_pyarray(py))?;
    d.set_item("offsets", t.offsets.into_pyarray(py))?;
    Ok(d)
}

/// Reads each `(blob, expected digest)` once, in parallel, and returns one dict of columns per layer.
#[pyfunction]
#[pyo3(signature = (layers, *, max_bytes = DEFAULT_MAX_BYTES, max_entries = DEFAULT_MAX_ENTRIES))]
pub fn layer_tables(
    py: Python<'_>,
    layers: Vec<(PathBuf, Option<String>)>,
    max_bytes: u64,
    max_entries: u64,
) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let mut owned = Vec::with_capacity(layers.len());
    for (src, digest) in layers {
        let d = digest
            .map(|s| Digest::parse(&s))
            .transpose()
            .map_err(|e| to_pyerr(py, e))?;
        owned.push((src, d));
    }
    let results = detached(py, move || Ok(table::layer_tables(&owned, max_bytes, max_entries)))?;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        out.push(to_dict(py, r.map_err(|e| to_pyerr(py, e))?)?);
    }
    Ok(out)
}
