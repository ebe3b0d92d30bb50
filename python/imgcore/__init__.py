"""imgcore: Docker/OCI container images as a Python library and command-line tool, with Rust hot paths."""

from __future__ import annotations

from imgcore import errors
from imgcore._core import Digest, Hasher, __version__, hash_files, sha256, sha256_file, sha256_files

__all__ = [
    "Digest",
    "Hasher",
    "__version__",
    "errors",
    "hash_files",
    "sha256",
    "sha256_file",
    "sha256_files",
]
