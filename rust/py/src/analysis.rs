//! `layer_tables`: the per-layer file tables of image analysis, handed to numpy without copying; `image_pass`:
//! the image-wide passes over them (union replay, dive's figures), reading the numpy arrays in place.
//!
//! Each column is a Rust `Vec` moved into a numpy array (`IntoPyArray` takes ownership of the buffer), so the
//! tables cross the boundary once, whole, with no per-row Python object. The layers are read in parallel
//! without the GIL. `image_pass` hands back per-row arrays and dive's inefficient paths as columns (never a
//! Python object per path); it checks every column's length and every index and string offset before reading.

use std::path::PathBuf;

use imgcore_core::archive::extract::{DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES};
use imgcore_core::archive::figures::{self, TableRef};
use imgcore_core::archive::table::{self, LayerTable};
use imgcore_core::digest::Digest;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{detached, to_pyerr};

fn to_dict(py: Python<'_>, t: LayerTable) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    if let Some(s) = t.summary {
        d.set_item("digest", s.digest.to_string())?;
        // Only a plain tar's diff_id is known (its digest); a compressed stream is not hashed by the table.
        let known = s.compression == imgcore_core::compression::Compression::None;
        d.set_item("diff_id", if known { s.diff_id.to_string() } else { String::new() })?;
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

/// One layer's columns as borrowed numpy arrays (kept alive, and read-only, while the pass runs).
struct Columns<'py> {
    path: PyReadonlyArray1<'py, u32>,
    kind: PyReadonlyArray1<'py, u8>,
    size: PyReadonlyArray1<'py, u64>,
    mode: PyReadonlyArray1<'py, u32>,
    uid: PyReadonlyArray1<'py, u32>,
    gid: PyReadonlyArray1<'py, u32>,
    mtime: PyReadonlyArray1<'py, i64>,
    sha256: PyReadonlyArray1<'py, u8>,
    link: PyReadonlyArray1<'py, i32>,
    xattr_hash: PyReadonlyArray1<'py, u64>,
    strings: PyReadonlyArray1<'py, u8>,
    offsets: PyReadonlyArray1<'py, u64>,
}

/// Column `key` of a table dict as a borrowed numpy array; errors name the entry point (`who`).
pub(crate) fn column<'py, T: numpy::Element>(
    d: &Bound<'py, PyDict>,
    key: &str,
    who: &str,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    d.get_item(key)?
        .ok_or_else(|| PyValueError::new_err(format!("{who}: column {key:?} missing")))?
        .extract::<PyReadonlyArray1<'py, T>>()
        .map_err(|e| PyValueError::new_err(format!("{who}: column {key:?}: {e}")))
}

fn not_contiguous(e: numpy::AsSliceError) -> PyErr {
    PyValueError::new_err(format!("image_pass: {e}"))
}

impl<'py> Columns<'py> {
    fn of(d: &Bound<'py, PyDict>) -> PyResult<Self> {
        Ok(Columns {
            path: column(d, "path", "image_pass")?,
            kind: column(d, "kind", "image_pass")?,
            size: column(d, "size", "image_pass")?,
            mode: column(d, "mode", "image_pass")?,
            uid: column(d, "uid", "image_pass")?,
            gid: column(d, "gid", "image_pass")?,
            mtime: column(d, "mtime", "image_pass")?,
            sha256: column(d, "sha256", "image_pass")?,
            link: column(d, "link", "image_pass")?,
            xattr_hash: column(d, "xattr_hash", "image_pass")?,
            strings: column(d, "strings", "image_pass")?,
            offsets: column(d, "offsets", "image_pass")?,
        })
    }

    /// The columns as a table, lengths checked (indexes and string offsets are not: [`Columns::table`]).
    fn table_unchecked(&self) -> PyResult<TableRef<'_>> {
        let t = TableRef {
            path: self.path.as_slice().map_err(not_contiguous)?,
            kind: self.kind.as_slice().map_err(not_contiguous)?,
            size: self.size.as_slice().map_err(not_contiguous)?,
            mode: self.mode.as_slice().map_err(not_contiguous)?,
            uid: self.uid.as_slice().map_err(not_contiguous)?,
            gid: self.gid.as_slice().map_err(not_contiguous)?,
            mtime: self.mtime.as_slice().map_err(not_contiguous)?,
            sha256: self.sha256.as_slice().map_err(not_contiguous)?,
            link: self.link.as_slice().map_err(not_contiguous)?,
            xattr_hash: self.xattr_hash.as_slice().map_err(not_contiguous)?,
            strings: self.strings.as_slice().map_err(not_contiguous)?,
            offsets: self.offsets.as_slice().map_err(not_contiguous)?,
        };
        let n = t.kind.len();
        let lens = [
            t.path.len(),
            t.size.len(),
            t.mode.len(),
            t.uid.len(),
            t.gid.len(),
            t.mtime.len(),
        ];
        if lens.iter().any(|&l| l != n) || t.link.len() != n || t.xattr_hash.len() != n || t.sha256.len() != 32 * n {
            return Err(PyValueError::new_err("analysis table: columns of unequal length"));
        }
        Ok(t)
    }

    /// The columns as a table with every index and string offset checked.
    fn table(&self) -> PyResult<TableRef<'_>> {
        let t = self.table_unchecked()?;
        if !TableRef::strings_are_valid(t.strings, t.offsets) {
            return Err(PyValueError::new_err(
                "image_pass: the string table is not NUL-separated at its offsets",
            ));
        }
        let m = t.offsets.len();
        if t.path.iter().any(|&p| p as usize >= m)
            || t.link
                .iter()
                .any(|&l| l < -1 || l >= 0 && l.unsigned_abs() as usize >= m)
        {
            return Err(PyValueError::new_err(
                "image_pass: an index points outside the string table",
            ));
        }
        Ok(t)
    }
}

/// The `--json` text of rows `start..stop` of one layer's file list, entries joined by `", "`, each as
/// `json.dumps` writes it (`changes`/`shadowed_by`: the layer's arrays from `image_pass`). Only the lengths and
/// the rows' own indexes are checked (a chunk costs its rows, not its layer); string offsets are not, so a
/// table whose string table is not the reader's gives wrong text, never a crash.
#[pyfunction]
pub fn file_list_json(
    py: Python<'_>,
    table: Bound<'_, PyDict>,
    changes: PyReadonlyArray1<'_, u8>,
    shadowed_by: PyReadonlyArray1<'_, i32>,
    start: usize,
    stop: usize,
) -> PyResult<String> {
    let cols = Columns::of(&table)?;
    let xattrs: PyReadonlyArray1<'_, u8> = column(&table, "xattrs", "image_pass")?;
    let t = cols.table_unchecked()?;
    let (xattrs, changes, shadowed_by) = (
        xattrs.as_slice().map_err(not_contiguous)?,
        changes.as_slice().map_err(not_contiguous)?,
        shadowed_by.as_slice().map_err(not_contiguous)?,
    );
    let n = t.kind.len();
    if xattrs.len() != n || changes.len() != n || shadowed_by.len() != n || start > stop || stop > n {
        return Err(PyValueError::new_err(
            "file_list_json: columns of unequal length or rows outside the table",
        ));
    }
    let m = t.offsets.len();
    if (start..stop).any(|r| t.path[r] as usize >= m || t.link[r] >= 0 && t.link[r].unsigned_abs() as usize >= m) {
        return Err(PyValueError::new_err(
            "file_list_json: an index points outside the string table",
        ));
    }
    let text = detached(py, move || {
        Ok(figures::file_list_json(&t, xattrs, changes, shadowed_by, start..stop))
    })?;
    // Only ASCII is written (every other code point is escaped).
    String::from_utf8(text).map_err(|e| PyValueError::new_err(format!("file_list_json: {e}")))
}

/// dive's inefficient paths as columns: NUL-joined paths, their start offsets, references, cumulative sizes.
type Inefficient<'py> = (
    Bound<'py, PyArray1<u8>>,
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<i64>>,
);

/// What `image_pass` returns: per-layer `changes`, `shadowed_by`, `prev_layer`, `prev_row` arrays, dive's sums
/// (its inefficient paths as columns, never one Python object per path), and per-layer `path_id` arrays.
type PassResult<'py> = (
    Vec<Bound<'py, PyArray1<u8>>>,
    Vec<Bound<'py, PyArray1<i32>>>,
    Vec<Bound<'py, PyArray1<i32>>>,
    Vec<Bound<'py, PyArray1<u32>>>,
    (i64, i64, Inefficient<'py>),
    Vec<Bound<'py, PyArray1<u32>>>,
);

/// The image-wide passes over per-layer tables (bottom first): the union replay and dive's figures.
#[pyfunction]
pub fn image_pass<'py>(py: Python<'py>, tables: Vec<Bound<'py, PyDict>>) -> PyResult<PassResult<'py>> {
    let cols = tables.iter().map(Columns::of).collect::<PyResult<Vec<_>>>()?;
    let refs = cols.iter().map(Columns::table).collect::<PyResult<Vec<_>>>()?;
    let (m, d) = detached(py, move || Ok(figures::image_pass(&refs)))?;
    Ok((
        m.changes.into_iter().map(|v| v.into_pyarray(py)).collect(),
        m.shadowed_by.into_iter().map(|v| v.into_pyarray(py)).collect(),
        m.prev_layer.into_iter().map(|v| v.into_pyarray(py)).collect(),
        m.prev_row.into_iter().map(|v| v.into_pyarray(py)).collect(),
        (
            d.minimum,
            d.discovered,
            (
                d.paths.into_pyarray(py),
                d.offsets.into_pyarray(py),
                d.refs.into_pyarray(py),
                d.sizes.into_pyarray(py),
            ),
        ),
        m.path_id.into_iter().map(|v| v.into_pyarray(py)).collect(),
    ))
}
