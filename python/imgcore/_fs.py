"""Small filesystem helpers shared by the store and the container state: atomic writes and file locks."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imgcore._json import read_json_file

__all__ = ["atomic_write", "atomic_write_json", "fsync_dir", "locked", "read_json"]


def fsync_dir(path: Path) -> None:
    """Makes a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Writes ``data`` to ``path`` so that readers see the old or the new file, never a torn one.

    ``durable`` (the default) also fsyncs the file and its directory, so the new file survives a power loss.
    Files that describe a live process (a container's runtime state, its bundle, ``/etc/hosts``), which a power
    loss ends anyway and which are rewritten at every start, skip that (``durable=False``): two fsyncs cost more
    than the rest of a short ``run``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any, *, durable: bool = True) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode(), durable=durable)


def read_json(path: Path) -> Any:
    """A state file's JSON, bounded in size, depth and number length (``InvalidManifest``, a ``ValueError``,
    when it is malformed or too large): state files are outside data too, they can be planted or truncated."""
    return read_json_file(path, f"state file {path}")


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Holds an advisory ``flock`` on ``path`` (created if missing) for the ``with`` block, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
