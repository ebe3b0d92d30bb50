//! The one place where core errors become Python exceptions, and the helper every entry point uses to run
//! core work without the GIL (polars' `enter_polars`).
//!
//! Invariant: exceptions are defined in Python (`imgcore/errors.py`) and only imported here, so they stay
//! picklable and documented; OS errors become the matching `OSError` subclass with the path as filename.

use std::panic::{catch_unwind, AssertUnwindSafe};

use imgcore_core::CoreError;
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::IntoPyObjectExt;

pyo3::import_exception!(imgcore.errors, InvalidDigest);
pyo3::import_exception!(imgcore.errors, DigestMismatch);
pyo3::import_exception!(imgcore.errors, SizeMismatch);
pyo3::import_exception!(imgcore.errors, UnsafeArchiveEntry);
pyo3::import_exception!(imgcore.errors, InvalidArchive);
pyo3::import_exception!(imgcore.errors, LimitExceeded);
pyo3::import_exception!(imgcore.errors, InternalError);
pyo3::import_exception!(imgcore.errors, InvalidTree);

/// Builds an exception of type `T` with `message` and keyword attributes.
fn with_attrs<T: pyo3::PyTypeInfo>(py: Python<'_>, message: String, attrs: &[(&str, Py<PyAny>)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let kwargs = PyDict::new(py);
        for (k, v) in attrs {
            kwargs.set_item(k, v)?;
        }
        let value = py.get_type::<T>().call((message.clone(),), Some(&kwargs))?;
        Ok(PyErr::from_value(value))
    };
    build().unwrap_or_else(|e| e)
}

/// A Python value for an exception attribute (None if it cannot be converted, which plain data never fails).
fn attr<'py>(py: Python<'py>, value: impl IntoPyObjectExt<'py>) -> Py<PyAny> {
    value.into_py_any(py).unwrap_or_else(|_| py.None())
}

/// Maps a core error to its Python exception.
pub fn to_pyerr(py: Python<'_>, err: CoreError) -> PyErr {
    let message = err.to_string();
    match err {
        CoreError::InvalidDigest { .. } => InvalidDigest::new_err(message),
        CoreError::DigestMismatch { expected, actual, .. } => with_attrs::<DigestMismatch>(
            py,
            message,
            &[("expected", attr(py, expected)), ("actual", attr(py, actual))],
        ),
        CoreError::SizeMismatch { expected, actual, .. } => with_attrs::<SizeMismatch>(
            py,
            message,
            &[("expected", attr(py, expected)), ("actual", attr(py, actual))],
        ),
        CoreError::UnsafePath { entry, .. } => {
            with_attrs::<UnsafeArchiveEntry>(py, message, &[("entry", attr(py, entry))])
        }
        CoreError::InvalidArchive { .. } => InvalidArchive::new_err(message),
        CoreError::LimitExceeded { .. } => LimitExceeded::new_err(message),
        CoreError::Io { path, source } => match source.raw_os_error() {
            // OSError(errno, strerror, filename) picks the subclass (FileNotFoundError, ...) from errno.
            Some(errno) => PyOSError::new_err((errno, source.to_string(), path.display().to_string())),
            None => PyOSError::new_err(format!("{}: {source}", path.display())),
        },
        CoreError::InvalidTree { path, .. } => {
            with_attrs::<InvalidTree>(py, message, &[("path", attr(py, path.into_os_string()))])
        }
        CoreError::Interrupted => PyKeyboardInterrupt::new_err(message),
        // `CoreError` is non_exhaustive; a variant added later without a mapping is still an imgcore error.
        #[allow(unreachable_patterns)]
        _ => InternalError::new_err(message),
    }
}

/// Runs `f` without the GIL, maps its error, turns a panic into `InternalError` (never an abort) and lets a
/// pending Ctrl-C surface as `KeyboardInterrupt`.
pub fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, CoreError> + Send,
    T: Send,
{
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    py.check_signals()?;
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(to_pyerr(py, err)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(InternalError::new_err(format!(
                "internal error (a bug in imgcore, please report it): {what}"
            )))
        }
    }
}
