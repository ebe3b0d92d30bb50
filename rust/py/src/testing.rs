//! A test hook: proves that a Rust panic inside a detached call reaches Python as `InternalError`, never as an
//! abort. It does nothing else and has no pure-Python twin (there is nothing to compare).

use imgcore_core::CoreError;
use pyo3::prelude::*;

use crate::errors::detached;

/// Panics without the GIL, through the same path as every entry point.
#[pyfunction]
pub fn _panic_for_tests(py: Python<'_>, message: String) -> PyResult<()> {
    detached(py, move || -> Result<(), CoreError> { panic!("{message}") })
}
