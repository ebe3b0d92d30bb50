//! imgcore-core: the pure-Rust engine behind imgcore.
//!
//! Invariants: nothing in this crate knows about Python (the binding lives in `imgcore-py`), and nothing
//! decides policy (which layers, which tags): it hashes, reads and writes what it is told to, and reports
//! every failure as a [`CoreError`] that names what and where.

pub mod archive;
pub mod compression;
pub mod diff;
pub mod digest;
pub mod error;

pub use error::{CoreError, Result};
