"""imgcore: Docker/OCI container images as a Python library and command-line tool, with Rust hot paths."""

from __future__ import annotations

from imgcore import errors
from imgcore._core import (
    Change,
    Digest,
    Hasher,
    LayerResult,
    __version__,
    diff,
    hash_files,
    sha256,
    sha256_file,
    sha256_files,
    write_layer,
)

__all__ = [
    "Change",
    "Digest",
    "Hasher",
    "LayerResult",
    "__version__",
    "diff",
    "errors",
    "hash_files",
    "sha256",
    "sha256_file",
    "sha256_files",
    "write_layer",
]
