//! The one error type of the core crate.
//!
//! Invariant: every variant carries the data a user needs to act (which path, which digest, which entry);
//! the Python binding maps each variant to exactly one `imgcore.errors` exception in one place.

use std::path::PathBuf;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A digest string is not `algorithm:hex` with a supported algorithm and the right length.
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest { value: String, reason: String },
    /// Content hashed to something other than what was expected.
    #[error("{context}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        context: String,
        expected: String,
        actual: String,
    },
    /// Content had another length than expected.
    #[error("{context}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        context: String,
        expected: u64,
        actual: u64,
    },
    /// An archive entry would land (or reach through a link) outside the root.
    #[error("{context}: entry {entry:?} {reason}")]
    UnsafePath {
        context: String,
        entry: String,
        reason: String,
    },
    /// An archive is malformed (truncated, corrupt header, bad compression stream).
    #[error("{context}: {reason}")]
    InvalidArchive { context: String, reason: String },
    /// A limit (bytes, entries) guarding against archive bombs was exceeded.
    #[error("{context}: limit exceeded: {reason}")]
    LimitExceeded { context: String, reason: String },
    /// An operating-system error on a path.
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A filesystem tree that a diff or layer cannot represent (unsupported overlayfs feature, a file that
    /// changed while it was being read, a bad change list).
    #[error("{path}: {reason}", path = path.display())]
    InvalidTree { path: PathBuf, reason: String },
    /// The operation was interrupted (Ctrl-C) and stopped cleanly.
    #[error("interrupted")]
    Interrupted,
}

/// Result alias of the core crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl CoreError {
    /// Wraps an `io::Error` with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Adds a path to an `io::Result`.
pub trait IoContext<T> {
    /// Maps the error to [`CoreError::Io`] with `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| CoreError::io(path, e))
    }
}
