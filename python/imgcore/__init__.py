"""imgcore: Docker/OCI container images as a Python library and command-line tool, with Rust hot paths.

The front door is :class:`Store` (and the :class:`Image`, :class:`Layer` and :class:`Container` values it
returns), with :class:`Registry`, :func:`copy` and :func:`sync` for work between registries; the Rust entry
points (``sha256``, ``extract_layer``, ``diff``, ``write_layer``, ...) are here too. ``Store``, ``Container``,
``ExecResult``, ``Registry``, ``copy`` and ``sync`` are loaded on first use, so ``import imgcore`` (and ``imgcore
--version``) stays as cheap as the extension module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    inspect_blob,
    layer_index,
    sha256,
    sha256_file,
    sha256_files,
    unpack_layers,
    write_layer,
)

if TYPE_CHECKING:
    from imgcore.analysis import Analysis, analyze
    from imgcore.api import Container, ExecResult, Registry, Store, copy, sync
    from imgcore.image.model import Image, Layer

__all__ = [
    "Analysis",
    "Change",
    "Container",
    "Digest",
    "ExecResult",
    "Hasher",
    "Image",
    "Layer",
    "LayerResult",
    "LayerStats",
    "Registry",
    "Store",
    "__version__",
    "analyze",
    "copy",
    "diff",
    "errors",
    "extract_layer",
    "hash_files",
    "inspect_blob",
    "layer_index",
    "sha256",
    "sha256_file",
    "sha256_files",
    "sync",
    "unpack_layers",
    "write_layer",
]

# The front door's names, imported on first access (PEP 562) so that the command line's start-up and
# ``import imgcore`` do not pay for the workflow modules. No cycle hides here: imgcore.api imports this
# package's submodules, never this file's names.
_LAZY = {
    "Store": "imgcore.api",
    "Container": "imgcore.api",
    "ExecResult": "imgcore.api",
    "Registry": "imgcore.api",
    "copy": "imgcore.api",
    "sync": "imgcore.api",
    "Image": "imgcore.image.model",
    "Layer": "imgcore.image.model",
    "Analysis": "imgcore.analysis",
    "analyze": "imgcore.analysis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'imgcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
