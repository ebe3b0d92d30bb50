//! The compressions of OCI layers: one enum for the reader (detected from the bytes) and the writer (chosen).
//!
//! Invariant: a layer's compression is always decided from its first bytes when reading, never from a file name
//! or a media type; bzip2 and xz are recognised only to refuse them clearly.

use crate::error::{CoreError, Result};

/// A layer's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// zstd (RFC 8878), possibly several frames.
    Zstd,
}

impl Compression {
    /// Parses `gzip`, `zstd` or `none`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "none" => Some(Compression::None),
            _ => None,
        }
    }

    /// The name `parse` accepts (also `LayerStats.compression`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Detects the compression from the first bytes of a blob.
    pub fn detect(head: &[u8], context: &str) -> Result<Self> {
        match head {
            [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(Compression::Zstd),
            [b'B', b'Z', b'h', ..] => Err(unsupported(context, "bzip2")),
            [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Err(unsupported(context, "xz")),
            _ => Ok(Compression::None),
        }
    }
}

fn unsupported(context: &str, what: &str) -> CoreError {
    CoreError::InvalidArchive {
        context: context.to_owned(),
        reason: format!("{what} compression is not supported (OCI layers are tar, tar+gzip or tar+zstd)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_detection() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::parse(c.name()), Some(c));
        }
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8], "x").unwrap(), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd], "x").unwrap(),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"etc/", "x").unwrap(), Compression::None);
        assert!(Compression::detect(b"BZh9", "x")
            .unwrap_err()
            .to_string()
            .contains("bzip2"));
    }
}
