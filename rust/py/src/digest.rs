//! Digest entry points: `sha256`, `sha256_file`, `sha256_files`, `hash_files`, `Digest` and `Hasher`.

use std::path::PathBuf;
use std::sync::Mutex;

use imgcore_core::digest::{self, Algorithm, Digest, Hasher};
use imgcore_core::CoreError;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{detached, to_pyerr, InternalError};

/// Below this many bytes, releasing the GIL costs more than it saves.
const DETACH_MIN: usize = 64 * 1024;

/// Bytes borrowed from `bytes` (immutable, so safe to read without the GIL) or copied from another buffer.
enum Data<'py> {
    Borrowed(Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

impl Data<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Data::Borrowed(b) => b.as_bytes(),
            Data::Owned(v) => v,
        }
    }
}

fn bytes_of<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Data<'py>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Data::Borrowed(b.clone()));
    }
    // bytearray, memoryview, numpy arrays...: may change under us, so copy first (the pyo3 boundary rule).
    let buf = PyBuffer::<u8>::get(obj)?;
    Ok(Data::Owned(buf.to_vec(obj.py())?))
}

fn hash_slice(py: Python<'_>, alg: Algorithm, bytes: &[u8]) -> PyResult<String> {
    if bytes.len() < DETACH_MIN {
        return Ok(digest::hash_bytes(alg, bytes).to_string());
    }
    detached(py, || Ok(digest::hash_bytes(alg, bytes).to_string()))
}

/// `sha256(data) -> "sha256:<hex>"` for any bytes-like object.
#[pyfunction]
pub fn sha256(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
    let d = bytes_of(data)?;
    hash_slice(py, Algorithm::Sha256, d.as_slice())
}

/// `sha256_file(path) -> "sha256:<hex>"`, streamed, without the GIL.
#[pyfunction]
pub fn sha256_file(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    detached(py, move || {
        digest::hash_file(Algorithm::Sha256, &path).map(|(d, _)| d.to_string())
    })
}

/// `sha256_files(paths) -> list[str]`, hashed on all cores; the first failure raises.
#[pyfunction]
pub fn sha256_files(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Vec<String>> {
    detached(py, move || {
        digest::hash_files(Algorithm::Sha256, &paths)
            .into_iter()
            .map(|r| r.map(|(d, _)| d.to_string()))
            .collect()
    })
}

/// One file's outcome: `(digest, size, error)`.
type FileHash = (Option<String>, u64, Option<String>);

/// `hash_files(paths, algorithm="sha256") -> list[(digest | None, size, error | None)]`: never raises per
/// file, so a verifier can report every bad one.
#[pyfunction]
#[pyo3(signature = (paths, algorithm = "sha256"))]
pub fn hash_files(py: Python<'_>, paths: Vec<PathBuf>, algorithm: &str) -> PyResult<Vec<FileHash>> {
    let alg = Algorithm::parse(algorithm).map_err(|e| to_pyerr(py, e))?;
    detached(py, move || {
        Ok(digest::hash_files(alg, &paths)
            .into_iter()
            .map(|r| match r {
                Ok((d, n)) => (Some(d.to_string()), n, None),
                Err(e) => (None, 0, Some(e.to_string())),
            })
            .collect())
    })
}

/// A validated `algorithm:hex` digest.
#[pyclass(name = "Digest", module = "imgcore._core", frozen)]
pub struct PyDigest(Digest);

#[pymethods]
impl PyDigest {
    #[new]
    fn new(py: Python<'_>, value: &str) -> PyResult<Self> {
        Digest::parse(value).map(PyDigest).map_err(|e| to_pyerr(py, e))
    }

    /// The algorithm name, `sha256` or `sha512`.
    #[getter]
    fn algorithm(&self) -> &'static str {
        self.0.algorithm().name()
    }

    /// The lowercase hex part.
    #[getter]
    fn hex(&self) -> &str {
        self.0.hex()
    }

    /// The first 12 hex characters (docker's short ID).
    #[getter]
    fn short(&self) -> &str {
        &self.0.hex()[..12]
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Digest('{}')", self.0)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{DefaultHasher, Hash, Hasher as _};
        let mut h = DefaultHasher::new();
        self.0.to_string().hash(&mut h);
        h.finish()
    }

    /// Equal to another `Digest` or to its string form.
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        if let Ok(d) = other.cast::<PyDigest>() {
            return d.get().0 == self.0;
        }
        other.extract::<String>().is_ok_and(|s| s == self.0.to_string())
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> (Py<PyAny>, (String,)) {
        (slf.get_type().into_any().unbind(), (slf.get().0.to_string(),))
    }
}

/// An incremental hasher for streams; `update` releases the GIL on large chunks.
#[pyclass(name = "Hasher", module = "imgcore._core", frozen)]
pub struct PyHasher(Mutex<Hasher>);

impl PyHasher {
    fn with<T>(&self, f: impl FnOnce(&mut Hasher) -> T) -> PyResult<T> {
        let mut guard = self
            .0
            .lock()
            .map_err(|_| InternalError::new_err("hasher lock poisoned"))?;
        Ok(f(&mut guard))
    }
}

#[pymethods]
impl PyHasher {
    #[new]
    #[pyo3(signature = (algorithm = "sha256"))]
    fn new(py: Python<'_>, algorithm: &str) -> PyResult<Self> {
        let alg = Algorithm::parse(algorithm).map_err(|e| to_pyerr(py, e))?;
        Ok(PyHasher(Mutex::new(Hasher::new(alg))))
    }

    /// Feeds a bytes-like chunk.
    fn update(&self, py: Python<'_>, chunk: &Bound<'_, PyAny>) -> PyResult<()> {
        let d = bytes_of(chunk)?;
        let bytes = d.as_slice();
        if bytes.len() < DETACH_MIN {
            return self.with(|h| h.update(bytes));
        }
        detached(py, || {
            self.with(|h| h.update(bytes)).map_err(|_| CoreError::Interrupted)
        })
    }

    /// The lowercase hex of what was fed so far.
    fn hexdigest(&self) -> PyResult<String> {
        self.with(|h| h.digest().hex().to_owned())
    }

    /// `algorithm:hex` of what was fed so far.
    fn digest(&self) -> PyResult<String> {
        self.with(|h| h.digest().to_string())
    }

    /// Bytes fed so far.
    #[getter]
    fn size(&self) -> PyResult<u64> {
        self.with(|h| h.len())
    }

    /// The algorithm name.
    #[getter]
    fn algorithm(&self) -> PyResult<&'static str> {
        self.with(|h| h.algorithm().name())
    }
}
