//! Layer archives: decoding, confined extraction with OCI whiteouts, and the merged union index.
pub mod decode;
