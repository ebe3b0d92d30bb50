//! Layer diff entry points: `diff`, `write_layer`, and the `Change` / `LayerResult` value types.
//!
//! Invariant: arguments are converted to owned Rust values (paths, change lists) before the GIL is released;
//! the walk and the layer writing run detached, and results come back in one batch.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use imgcore_core::diff::{self as core_diff, ChangeKind, Compression, DiffOptions, LayerOptions};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use crate::errors::detached;

/// One change: `kind` is `"A"`, `"C"` or `"D"`, `path` is absolute inside the image (`/etc/passwd`).
#[pyclass(name = "Change", module = "imgcore._core", frozen, eq, hash, ord)]
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PyChange {
    #[pyo3(get)]
    kind: String,
    #[pyo3(get)]
    path: OsString,
    #[pyo3(get)]
    metadata_only: bool,
}

impl PyChange {
    fn from_core(c: &core_diff::Change) -> Self {
        let mut path = OsString::from("/");
        path.push(c.path.as_os_str());
        PyChange {
            kind: c.kind.letter().to_string(),
            path,
            metadata_only: c.metadata_only,
        }
    }

    fn to_core(&self) -> PyResult<core_diff::Change> {
        let kind = ChangeKind::from_letter(&self.kind).ok_or_else(|| {
            PyValueError::new_err(format!("change kind must be 'A', 'C' or 'D', got {:?}", self.kind))
        })?;
        let bytes = self.path.as_bytes();
        if !bytes.starts_with(b"/") {
            return Err(PyValueError::new_err(format!(
                "change path must be absolute, got {:?}",
                self.path
            )));
        }
        Ok(core_diff::Change {
            kind,
            path: PathBuf::from(OsString::from_vec(bytes[1..].to_vec())),
            metadata_only: self.metadata_only,
        })
    }
}

#[pymethods]
impl PyChange {
    #[new]
    #[pyo3(signature = (kind, path, metadata_only = false))]
    fn new(kind: String, path: PathBuf, metadata_only: bool) -> PyResult<Self> {
        let c = PyChange {
            kind,
            path: path.into_os_string(),
            metadata_only,
        };
        c.to_core()?;
        Ok(c)
    }

    fn __repr__(&self) -> String {
        format!(
            "Change({:?}, {:?}, metadata_only={})",
            self.kind,
            self.path,
            if self.metadata_only { "True" } else { "False" }
        )
    }

    /// `(kind, path, metadata_only)`, so a change unpacks and compares like a tuple.
    fn astuple<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [
                self.kind.clone().into_pyobject(py)?.into_any(),
                self.path.clone().into_pyobject(py)?.into_any(),
                pyo3::types::PyBool::new(py, self.metadata_only).to_owned().into_any(),
            ],
        )
    }

    fn __str__(&self) -> String {
        format!("{} {}", self.kind, self.path.to_string_lossy())
    }
}

/// The layer `write_layer` wrote.
#[pyclass(name = "LayerResult", module = "imgcore._core", frozen)]
pub struct PyLayerResult {
    /// Digest of the blob as stored (compressed).
    #[pyo3(get)]
    digest: String,
    /// Digest of the uncompressed tar, for `rootfs.diff_ids`.
    #[pyo3(get)]
    diff_id: String,
    /// Blob size in bytes.
    #[pyo3(get)]
    size: u64,
    /// Uncompressed tar size.
    #[pyo3(get)]
    uncompressed_size: u64,
    /// OCI media type of the blob.
    #[pyo3(get)]
    media_type: String,
    /// `"gzip"`, `"zstd"` or `"none"`.
    #[pyo3(get)]
    compression: String,
    changes: Vec<PyChange>,
    /// Tar entries (PAX headers not counted).
    #[pyo3(get)]
    entries: u64,
    /// Whiteout and opaque-marker entries.
    #[pyo3(get)]
    whiteouts: u64,
    /// Hardlink entries.
    #[pyo3(get)]
    hardlinks: u64,
    /// Number of `A` changes.
    #[pyo3(get)]
    added: u64,
    /// Number of `C` changes.
    #[pyo3(get)]
    changed: u64,
    /// Number of `D` changes.
    #[pyo3(get)]
    deleted: u64,
}

#[pymethods]
impl PyLayerResult {
    /// The change set that was written.
    #[getter]
    fn changes(&self) -> Vec<PyChange> {
        self.changes.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "LayerResult(digest={:?}, diff_id={:?}, size={}, changes={})",
            self.digest,
            self.diff_id,
            self.size,
            self.changes.len()
        )
    }
}

/// `base` is one path (str or os.PathLike) or a sequence of them.
fn base_paths(base: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if base.is_instance_of::<PyString>() || base.hasattr("__fspath__")? {
        return Ok(vec![base.extract::<PathBuf>()?]);
    }
    let paths: Vec<PathBuf> = base
        .try_iter()
        .map_err(|_| PyTypeError::new_err("base must be a path or a list of paths"))?
        .map(|item| item.and_then(|i| i.extract::<PathBuf>()))
        .collect::<PyResult<_>>()?;
    if paths.is_empty() {
        return Err(PyValueError::new_err("base must name at least one directory"));
    }
    Ok(paths)
}

/// Accepts `Change` objects (ours or the pure twin's: anything with `kind`/`path`) or `(kind, path[, metadata_only])`.
fn change_list(changes: &Bound<'_, PyAny>) -> PyResult<Vec<core_diff::Change>> {
    let mut out = Vec::new();
    for item in changes.try_iter()? {
        let item = item?;
        let c = if let Ok(c) = item.cast::<PyChange>() {
            c.get().clone()
        } else if item.hasattr("kind")? && item.hasattr("path")? {
            let md = if item.hasattr("metadata_only")? {
                item.getattr("metadata_only")?.is_truthy()?
            } else {
                false
            };
            PyChange {
                kind: item.getattr("kind")?.extract()?,
                path: item.getattr("path")?.extract::<PathBuf>()?.into_os_string(),
                metadata_only: md,
            }
        } else if let Ok(t) = item.cast::<PyTuple>() {
            let md = if t.len() > 2 {
                t.get_item(2)?.is_truthy()?
            } else {
                false
            };
            PyChange {
                kind: t.get_item(0)?.extract()?,
                path: t.get_item(1)?.extract::<PathBuf>()?.into_os_string(),
                metadata_only: md,
            }
        } else {
            return Err(PyTypeError::new_err(
                "changes must hold Change objects or (kind, path) tuples",
            ));
        };
        out.push(c.to_core()?);
    }
    Ok(out)
}

/// Compares `target` with `base` and returns the sorted change list.
#[pyfunction]
#[pyo3(signature = (base, target, *, overlay = false, paranoid = false))]
pub fn diff(
    py: Python<'_>,
    base: &Bound<'_, PyAny>,
    target: PathBuf,
    overlay: bool,
    paranoid: bool,
) -> PyResult<Vec<PyChange>> {
    let base = base_paths(base)?;
    let opts = DiffOptions { overlay, paranoid };
    let changes = detached(py, move || core_diff::diff(&base, &target, opts))?;
    Ok(changes.iter().map(PyChange::from_core).collect())
}

fn source_date_epoch(arg: Option<i64>) -> PyResult<Option<i64>> {
    if arg.is_some() {
        return Ok(arg);
    }
    match std::env::var_os("SOURCE_DATE_EPOCH") {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .to_str()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| PyValueError::new_err(format!("SOURCE_DATE_EPOCH={v:?}: not an integer number of seconds"))),
    }
}

/// Writes the change set between `base` and `target` to `out` as an OCI layer blob.
#[pyfunction]
#[pyo3(signature = (base, target, out, *, overlay = false, paranoid = false, compression = "gzip", level = None, source_date_epoch = None, changes = None))]
#[allow(clippy::too_many_arguments)]
pub fn write_layer(
    py: Python<'_>,
    base: &Bound<'_, PyAny>,
    target: PathBuf,
    out: PathBuf,
    overlay: bool,
    paranoid: bool,
    compression: &str,
    level: Option<i32>,
    source_date_epoch: Option<i64>,
    changes: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyLayerResult> {
    let base = base_paths(base)?;
    let codec = Compression::parse(compression).ok_or_else(|| {
        PyValueError::new_err(format!(
            "compression must be 'gzip', 'zstd' or 'none', got {compression:?}"
        ))
    })?;
    if let Some(l) = level {
        let ok = match codec {
            Compression::Gzip => (0..=9).contains(&l),
            Compression::Zstd => (1..=22).contains(&l),
            Compression::None => true,
        };
        if !ok {
            return Err(PyValueError::new_err(format!(
                "level {l} is out of range for {compression}"
            )));
        }
    }
    let sde = self::source_date_epoch(source_date_epoch)?;
    let changes = changes.map(change_list).transpose()?;
    let opts = DiffOptions { overlay, paranoid };
    let layer = LayerOptions {
        compression: codec,
        level,
        source_date_epoch: sde,
        threads: None,
    };
    let r = detached(py, move || {
        core_diff::write_layer(&base, &target, &out, changes, opts, &layer)
    })?;
    let changes: Vec<PyChange> = r.changes.iter().map(PyChange::from_core).collect();
    let count = |k: &str| changes.iter().filter(|c| c.kind == k).count() as u64;
    Ok(PyLayerResult {
        digest: r.digest.to_string(),
        diff_id: r.diff_id.to_string(),
        size: r.size,
        uncompressed_size: r.uncompressed_size,
        media_type: r.compression.media_type().to_owned(),
        compression: r.compression.name().to_owned(),
        added: count("A"),
        changed: count("C"),
        deleted: count("D"),
        changes,
        entries: r.entries,
        whiteouts: r.whiteouts,
        hardlinks: r.hardlinks,
    })
}
