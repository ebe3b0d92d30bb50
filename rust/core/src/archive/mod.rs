//! Layer archives: decoding, confined extraction with OCI whiteouts, and the merged union index.
pub mod decode;
pub mod root;
pub mod reader;
pub mod extract;
pub mod index;
