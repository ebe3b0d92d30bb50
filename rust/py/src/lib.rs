//! The `imgcore._core` extension module. It only registers items; the logic lives in `imgcore-core` and in
//! one file per area here (`digest.rs`, ...), errors are mapped in `errors.rs`.

mod analysis;
mod archive;
mod blob;
mod diff;
mod digest;
mod errors;
mod testing;
mod tree;

use pyo3::prelude::*;

#[pymodule]
mod _core {
    #[pymodule_export]
    use super::analysis::{file_list_json, image_pass, layer_tables};
    #[pymodule_export]
    use super::archive::{extract_layer, gzip_backend, layer_index, unpack_layers, PyLayerStats};
    #[pymodule_export]
    use super::blob::inspect_blob;
    #[pymodule_export]
    use super::diff::{diff, write_layer, PyChange, PyLayerResult};
    #[pymodule_export]
    use super::digest::{hash_files, sha256, sha256_file, sha256_files, PyDigest, PyHasher};

    #[pymodule_export]
    use super::testing::_panic_for_tests;
    #[pymodule_export]
    use super::tree::merged_tree;

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
