//! Layer archives: decoding, confined extraction with OCI whiteouts, and the merged union index.
pub mod blob;
pub mod decode;
pub mod extract;
pub mod figures;
pub mod index;
pub mod reader;
pub mod root;
pub mod table;
pub mod tree;
