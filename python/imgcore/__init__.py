"""imgcore: Docker/OCI container images as a Python library and command-line tool, with Rust hot paths."""

from __future__ import annotations

from imgcore import errors
from imgcore._core import (
    Digest,
    Hasher,
    LayerStats,
    __version__,
    extract_layer,
    hash_files,
    layer_index,
    sha256,
    sha256_file,
    sha256_files,
    unpack_layers,
)

__all__ = [
    "Digest",
    "Hasher",
    "LayerStats",
    "__version__",
    "errors",
    "extract_layer",
    "hash_files",
    "layer_index",
    "sha256",
    "sha256_file",
    "sha256_files",
    "unpack_layers",
]
