"""imgcore: Docker/OCI container images as a Python library and command-line tool, with Rust hot paths."""

from __future__ import annotations

from imgcore import errors
from imgcore._core import (
    Change,
    Digest,
    Hasher,
    LayerResult,
    LayerStats,
    __version__,
    diff,
    extract_layer,
    hash_files,
    layer_index,
    sha256,
    sha256_file,
    sha256_files,
    unpack_layers,
    write_layer,
)

__all__ = [
    "Change",
    "Digest",
    "Hasher",
    "LayerResult",
    "LayerStats",
    "__version__",
    "diff",
    "errors",
    "extract_layer",
    "hash_files",
    "layer_index",
    "sha256",
    "sha256_file",
    "sha256_files",
    "unpack_layers",
    "write_layer",
]
