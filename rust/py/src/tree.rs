//! `merged_tree`: the explorer's tree as of one layer, from the layer tables and the union replay's fates (numpy
//! arrays read in place), returned as numpy columns in display order (`imgcore_core::archive::tree`).

use imgcore_core::archive::tree::{self, LayerRows};
use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::analysis::column;
use crate::errors::detached;

fn bad(what: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("merged_tree: {what}"))
}

/// One layer's borrowed inputs, kept alive (and read-only) while the tree is built.
struct Inputs<'py> {
    path: PyReadonlyArray1<'py, u32>,
    kind: PyReadonlyArray1<'py, u8>,
    size: PyReadonlyArray1<'py, u64>,
    strings: PyReadonlyArray1<'py, u8>,
    offsets: PyReadonlyArray1<'py, u64>,
    shadowed: PyReadonlyArray1<'py, i32>,
    change: PyReadonlyArray1<'py, u8>,
}

impl Inputs<'_> {
    fn rows(&self) -> PyResult<LayerRows<'_>> {
        let rows = LayerRows {
            path: self.path.as_slice().map_err(bad)?,
            kind: self.kind.as_slice().map_err(bad)?,
            size: self.size.as_slice().map_err(bad)?,
            shadowed: self.shadowed.as_slice().map_err(bad)?,
            change: self.change.as_slice().map_err(bad)?,
            strings: self.strings.as_slice().map_err(bad)?,
            offsets: self.offsets.as_slice().map_err(bad)?,
        };
        let n = rows.kind.len();
        if [rows.path.len(), rows.size.len(), rows.shadowed.len(), rows.change.len()]
            .iter()
            .any(|&l| l != n)
        {
            return Err(bad("columns of unequal length"));
        }
        if rows.path.iter().any(|&p| p as usize >= rows.offsets.len()) {
            return Err(bad("a path index points outside the string table"));
        }
        Ok(rows)
    }
}

/// The merged tree as of layer `index` (tables bottom first, with each layer's `shadowed_by` and `changes`),
/// keeping the marks whose bit is set in `keep` (0: all): a dict of numpy columns.
#[pyfunction]
pub fn merged_tree<'py>(
    py: Python<'py>,
    tables: Vec<Bound<'py, PyDict>>,
    shadowed: Vec<PyReadonlyArray1<'py, i32>>,
    changes: Vec<PyReadonlyArray1<'py, u8>>,
    index: usize,
    keep: u32,
) -> PyResult<Bound<'py, PyDict>> {
    if shadowed.len() != tables.len() || changes.len() != tables.len() {
        return Err(bad("one shadowed_by and one changes array per table"));
    }
    if index >= tables.len() {
        return Err(bad(format!("layer {index} of {}", tables.len())));
    }
    let mut inputs = Vec::with_capacity(tables.len());
    for ((d, sh), ch) in tables.iter().zip(shadowed).zip(changes) {
        inputs.push(Inputs {
            path: column(d, "path", "merged_tree")?,
            kind: column(d, "kind", "merged_tree")?,
            size: column(d, "size", "merged_tree")?,
            strings: column(d, "strings", "merged_tree")?,
            offsets: column(d, "offsets", "merged_tree")?,
            shadowed: sh,
            change: ch,
        });
    }
    let rows = inputs.iter().map(Inputs::rows).collect::<PyResult<Vec<_>>>()?;
    let t = detached(py, move || Ok(tree::merged_tree(&rows, index, keep)))?;
    let d = PyDict::new(py);
    d.set_item("strings", t.strings.into_pyarray(py))?;
    d.set_item("offsets", t.offsets.into_pyarray(py))?;
    d.set_item("kind", t.kind.into_pyarray(py))?;
    d.set_item("size", t.size.into_pyarray(py))?;
    d.set_item("layer", t.layer.into_pyarray(py))?;
    d.set_item("mark", t.mark.into_pyarray(py))?;
    d.set_item("depth", t.depth.into_pyarray(py))?;
    d.set_item("end", t.end.into_pyarray(py))?;
    d.set_item("total", t.total.into_pyarray(py))?;
    Ok(d)
}
