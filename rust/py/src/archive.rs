//! Layer entry points: `extract_layer`, `unpack_layers`, `layer_index` and the `LayerStats` result.
//!
//! Arguments are converted to owned Rust values before the GIL is released; each call is one coarse,
//! GIL-free unit of work that returns plain data.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use imgcore_core::archive::extract::{self, ExtractOptions, IdMap, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES};
use imgcore_core::archive::index;
use imgcore_core::digest::Digest;
use pyo3::prelude::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use imgcore_core::CoreError;

use crate::errors::{detached, to_pyerr, InternalError};

/// Runs `f` on a worker thread without the GIL, waking every 100 ms to let Python handle signals: on Ctrl-C
/// the `cancel` flag stops the work between entries and `KeyboardInterrupt` is raised once it has stopped.
fn cancellable<T, F>(py: Python<'_>, cancel: &Arc<AtomicBool>, f: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, CoreError> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("imgcore-layers".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(outcome);
        });
    if let Err(e) = spawned {
        return Err(InternalError::new_err(format!("cannot start a thread: {e}")));
    }
    let mut interrupted: Option<PyErr> = None;
    let mut rx = Some(rx);
    loop {
        // The receiver is moved into the GIL-free closure and back (it is `Send` but not `Sync`).
        let Some(r) = rx.take() else {
            return Err(InternalError::new_err("internal error: the layer thread vanished"));
        };
        let (received, r) = py.detach(move || (r.recv_timeout(Duration::from_millis(100)), r));
        rx = Some(r);
        match received {
            Ok(Ok(Ok(value))) => return interrupted.map_or(Ok(value), Err),
            Ok(Ok(Err(err))) => return Err(interrupted.unwrap_or_else(|| to_pyerr(py, err))),
            Ok(Err(_)) => {
                return Err(InternalError::new_err(
                    "internal error (a bug in imgcore, please report it): panic",
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if interrupted.is_none() {
                    if let Err(e) = py.check_signals() {
                        cancel.store(true, Ordering::Relaxed);
                        interrupted = Some(e);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(InternalError::new_err("internal error: the layer thread vanished"));
            }
        }
    }
}

/// What one layer extraction did (frozen).
#[pyclass(name = "LayerStats", module = "imgcore._core", frozen, get_all, eq)]
#[derive(Clone, PartialEq)]
pub struct PyLayerStats {
    digest: String,
    diff_id: String,
    compression: String,
    entries: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    hardlinks: u64,
    whiteouts: u64,
    bytes: u64,
    compressed_bytes: u64,
    skipped: Vec<(String, String)>,
}

impl From<extract::LayerStats> for PyLayerStats {
    fn from(s: extract::LayerStats) -> Self {
        PyLayerStats {
            digest: s.digest,
            diff_id: s.diff_id,
            compression: s.compression.to_owned(),
            entries: s.entries,
            files: s.files,
            dirs: s.dirs,
            symlinks: s.symlinks,
            hardlinks: s.hardlinks,
            whiteouts: s.whiteouts,
            bytes: s.bytes,
            compressed_bytes: s.compressed_bytes,
            skipped: s.skipped,
        }
    }
}

#[pymethods]
impl PyLayerStats {
    fn __repr__(&self) -> String {
        format!(
            "LayerStats(digest='{}', diff_id='{}', compression='{}', entries={}, files={}, dirs={}, symlinks={}, \
             hardlinks={}, whiteouts={}, bytes={}, compressed_bytes={}, skipped={})",
            self.digest,
            self.diff_id,
            self.compression,
            self.entries,
            self.files,
            self.dirs,
            self.symlinks,
            self.hardlinks,
            self.whiteouts,
            self.bytes,
            self.compressed_bytes,
            self.skipped.len()
        )
    }
}

fn id_maps(maps: Option<Vec<(u64, u64, u64)>>) -> Vec<IdMap> {
    maps.unwrap_or_default()
        .into_iter()
        .map(|(inner, outer, count)| IdMap { inner, outer, count })
        .collect()
}

fn digest_arg(py: Python<'_>, d: Option<String>) -> PyResult<Option<Digest>> {
    d.map(|s| Digest::parse(&s)).transpose().map_err(|e| to_pyerr(py, e))
}

fn force_walk() -> bool {
    std::env::var_os("IMGCORE_FORCE_WALK").is_some_and(|v| v == "1")
}

/// Extracts one layer blob into `dest`; see `imgcore.extract_layer`.
#[pyfunction]
#[pyo3(signature = (src, dest, *, overlay = false, expected_digest = None, expected_diff_id = None, same_owner = None,
    uid_map = None, gid_map = None, allow_devices = false, max_bytes = DEFAULT_MAX_BYTES, max_entries = DEFAULT_MAX_ENTRIES))]
#[allow(clippy::too_many_arguments)]
pub fn extract_layer(
    py: Python<'_>,
    src: PathBuf,
    dest: PathBuf,
    overlay: bool,
    expected_digest: Option<String>,
    expected_diff_id: Option<String>,
    same_owner: Option<bool>,
    uid_map: Option<Vec<(u64, u64, u64)>>,
    gid_map: Option<Vec<(u64, u64, u64)>>,
    allow_devices: bool,
    max_bytes: u64,
    max_entries: u64,
) -> PyResult<PyLayerStats> {
    let opts = ExtractOptions {
        overlay,
        expected_digest: digest_arg(py, expected_digest)?,
        expected_diff_id: digest_arg(py, expected_diff_id)?,
        same_owner,
        uid_map: id_maps(uid_map),
        gid_map: id_maps(gid_map),
        allow_devices,
        max_bytes,
        max_entries,
        force_walk: force_walk(),
        cancel: Some(Arc::new(AtomicBool::new(false))),
    };
    let cancel = opts.cancel.clone().unwrap_or_default();
    cancellable(py, &cancel, move || {
        extract::extract_layer(&src, &dest, &opts).map(PyLayerStats::from)
    })
}

/// Unpacks layers (lowest first) into one root filesystem; see `imgcore.unpack_layers`.
#[pyfunction]
#[pyo3(signature = (layers, dest, *, same_owner = None, uid_map = None, gid_map = None, allow_devices = false,
    max_bytes = DEFAULT_MAX_BYTES, max_entries = DEFAULT_MAX_ENTRIES, expected_diff_ids = None))]
#[allow(clippy::too_many_arguments)]
pub fn unpack_layers(
    py: Python<'_>,
    layers: Vec<PathBuf>,
    dest: PathBuf,
    same_owner: Option<bool>,
    uid_map: Option<Vec<(u64, u64, u64)>>,
    gid_map: Option<Vec<(u64, u64, u64)>>,
    allow_devices: bool,
    max_bytes: u64,
    max_entries: u64,
    expected_diff_ids: Option<Vec<String>>,
) -> PyResult<Vec<PyLayerStats>> {
    let expected = expected_diff_ids
        .unwrap_or_default()
        .iter()
        .map(|s| Digest::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| to_pyerr(py, e))?;
    let opts = ExtractOptions {
        same_owner,
        uid_map: id_maps(uid_map),
        gid_map: id_maps(gid_map),
        allow_devices,
        max_bytes,
        max_entries,
        force_walk: force_walk(),
        cancel: Some(Arc::new(AtomicBool::new(false))),
        ..ExtractOptions::default()
    };
    let cancel = opts.cancel.clone().unwrap_or_default();
    cancellable(py, &cancel, move || {
        extract::unpack_layers(&layers, &dest, &opts, &expected)
            .map(|v| v.into_iter().map(PyLayerStats::from).collect())
    })
}

/// One row of `layer_index`: (path, type, mode, uid, gid, size, mtime, linkname, layer).
type IndexRow = (OsString, &'static str, u32, u64, u64, u64, i64, OsString, usize);

/// The merged union view of a layer stack, without extracting; see `imgcore.layer_index`.
#[pyfunction]
#[pyo3(signature = (layers, *, max_bytes = DEFAULT_MAX_BYTES, max_entries = DEFAULT_MAX_ENTRIES))]
pub fn layer_index(py: Python<'_>, layers: Vec<PathBuf>, max_bytes: u64, max_entries: u64) -> PyResult<Vec<IndexRow>> {
    detached(py, move || {
        Ok(index::layer_index(&layers, max_bytes, max_entries)?
            .into_iter()
            .map(|e| {
                (
                    OsString::from_vec(e.path),
                    e.kind.name(),
                    e.mode,
                    e.uid,
                    e.gid,
                    e.size,
                    e.mtime,
                    OsString::from_vec(e.link),
                    e.layer,
                )
            })
            .collect())
    })
}

/// Which gzip inflate this build uses (`isa-l` or `zlib-rs`).
#[pyfunction]
pub fn gzip_backend() -> &'static str {
    imgcore_core::archive::decode::gzip_backend()
}
