"""Host helpers (runc, bwrap, ...) found by absolute path and run with imgcore's own environment.

Invariants:

- A host helper is never looked up through the caller's or an image's ``PATH``: :func:`which` searches only
  :data:`HOST_PATH`, a fixed list of root-owned system directories, and always returns an absolute path. An
  explicit name with a slash must be absolute (``IMGCORE_RUNTIME=/opt/runc/runc``).
- :func:`host_env` is the whole environment a helper gets: ``PATH`` = :data:`HOST_PATH` and ``LC_ALL=C`` (stable
  messages). Nothing else is inherited -- no ``LD_PRELOAD``/``LD_LIBRARY_PATH``, no ``HOME``, nothing from an image's
  ``Env`` (that goes into the spec's ``process.env`` only, which runc applies inside the container).
- This module is the bottom of the runtime package (only ``imgcore.errors`` and ``imgcore._host``, where
  ``HOST_PATH`` and ``host_env`` are defined for every host helper imgcore runs, below it); choosing the runtime
  (``find_runtime``, ``find_sandbox``) lives in :mod:`imgcore.runtime.runc`, which builds on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgcore._host import HOST_PATH, host_env  # noqa: F401 (host_env: kept importable here)
from imgcore.errors import ImgcoreError

__all__ = [
    "RuntimeUnavailable",
    "find_bwrap",
    "which",
]


class RuntimeUnavailable(ImgcoreError):
    """No usable OCI runtime or sandbox on this host; the message says what is missing and how to get it."""


def which(name: str) -> str:
    """The absolute path of executable ``name``, searched in :data:`HOST_PATH` only.

    Raises :class:`RuntimeUnavailable` when it is not there (or ``name`` is a relative path with a slash).
    """
    if "/" in name:
        if not Path(name).is_absolute():
            raise RuntimeUnavailable(f"host helper {name!r}: a path must be absolute")
        if Path(name).is_file() and os.access(name, os.X_OK):
            return os.path.normpath(name)
        raise RuntimeUnavailable(f"host helper {name}: not an executable file")
    for d in HOST_PATH.split(":"):
        cand = Path(d) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    raise RuntimeUnavailable(f"host helper {name!r} not found in {HOST_PATH} (apt-get install -y {name})")


def find_bwrap() -> str | None:
    """bubblewrap's absolute path, or None when it is not installed."""
    try:
        return which("bwrap")
    except RuntimeUnavailable:
        return None
