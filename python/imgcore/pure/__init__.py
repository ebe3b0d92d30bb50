"""Pure-Python twins of every ``imgcore._core`` entry point, with the same signatures and results.

They are the oracle of the property tests and the baseline of the benchmarks; nothing in imgcore's own
workflow calls them. Built on the standard library only (hashlib, tarfile, os.walk).
"""

from __future__ import annotations

from imgcore.pure.analysis import file_list_json, image_pass, layer_tables
from imgcore.pure.archive import LayerStats, extract_layer, layer_index, unpack_layers
from imgcore.pure.blob import inspect_blob
from imgcore.pure.diff import Change, LayerResult, diff, write_layer
from imgcore.pure.digest import Digest, Hasher, hash_files, sha256, sha256_file, sha256_files
from imgcore.pure.tree import merged_tree

__all__ = [
    "Change",
    "Digest",
    "Hasher",
    "LayerResult",
    "LayerStats",
    "diff",
    "extract_layer",
    "file_list_json",
    "hash_files",
    "image_pass",
    "inspect_blob",
    "layer_index",
    "layer_tables",
    "merged_tree",
    "sha256",
    "sha256_file",
    "sha256_files",
    "unpack_layers",
    "write_layer",
]
