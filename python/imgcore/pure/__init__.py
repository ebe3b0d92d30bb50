"""Pure-Python twins of every ``imgcore._core`` entry point, with the same signatures and results.

They are the oracle of the property tests and the baseline of the benchmarks; nothing in imgcore's own
workflow calls them. Built on the standard library only (hashlib, tarfile, os.walk).
"""

from __future__ import annotations

from imgcore.pure.digest import Digest, Hasher, hash_files, sha256, sha256_file, sha256_files

__all__ = ["Digest", "Hasher", "hash_files", "sha256", "sha256_file", "sha256_files"]
