"""``cp``: files between the host and a container's root filesystem, with ``docker cp``'s semantics.

Invariants:
- every path inside the container is resolved with the container's root as ``/`` (``openat2(RESOLVE_IN_ROOT)``,
  else an ``O_NOFOLLOW`` walk: :func:`imgcore.runtime.spec.open_in_root`), so a symlink in the container (even
  ``/x -> /etc`` or ``../../..``) can never make ``cp`` read or write outside that root;
- writes into the container go through the confined layer extractor (:func:`imgcore._core.extract_layer`) into
  the resolved directory: the last component is never followed, existing entries are replaced, not written
  through; device nodes and FIFOs from a host tar are skipped;
- reads out of the container archive what the resolved path holds; symlinks below it are archived as symlinks,
  never followed;
- directories: ``cp SRC DIR`` copies into ``DIR/basename(SRC)`` when ``DIR`` exists, else makes ``DIR`` a copy of
  ``SRC``; ``-`` is a tar stream on stdin (into an existing directory) or stdout.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from imgcore._core import extract_layer
from imgcore.errors import InvalidArgument
from imgcore.runtime.spec import open_in_root

__all__ = ["copy_from_container", "copy_to_container"]


def _is_dir_in_root(root: Path, path: str) -> bool:
    try:
        fd = open_in_root(root, path, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return False
    os.close(fd)
    return True


def _extract_into(root: Path, directory: str, tar_path: Path) -> None:
    """Extracts ``tar_path`` into ``directory`` (resolved inside ``root``), confined."""
    try:
        fd = open_in_root(root, directory, os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError:
        raise InvalidArgument(f"Could not find the file {directory} in container") from None
    except NotADirectoryError:
        raise InvalidArgument(f"{directory}: not a directory in the container") from None
    try:
        extract_layer(str(tar_path), f"/proc/self/fd/{fd}", same_owner=False)
    finally:
        os.close(fd)


def copy_to_container(root: Path, source: str | BinaryIO, dest: str) -> None:
    """``docker cp SRC CONTAINER:DEST``: ``source`` is a host path or a tar stream (``cp - CONTAINER:DIR``)."""
    dest = posixpath.normpath("/" + dest)
    with tempfile.TemporaryDirectory(prefix="imgcore-cp-") as tmp:
        tar_path = Path(tmp) / "in.tar"
        if not isinstance(source, str):
            with tar_path.open("wb") as f:
                shutil.copyfileobj(source, f)
            if not _is_dir_in_root(root, dest):
                raise InvalidArgument(f"Could not find the file {dest} in container (a tar needs a directory)")
            _extract_into(root, dest, tar_path)
            return
        src = Path(source)
        if not src.exists() and not src.is_symlink():
            raise InvalidArgument(f"no such file or directory: {source}")
        if _is_dir_in_root(root, dest):
            directory = dest
            dot = source.rstrip("/").endswith("/.") or source == "."  # SRC/. copies the directory's content
            name = "." if dot else src.name
        else:
            if source.endswith("/") and not src.is_dir():
                raise InvalidArgument(f"{source}: not a directory")
            directory, name = posixpath.dirname(dest) or "/", posixpath.basename(dest)
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(str(src), arcname=name or ".")
        _extract_into(root, directory, tar_path)


def copy_from_container(root: Path, source: str, dest: str | BinaryIO) -> None:
    """``docker cp CONTAINER:SRC DEST``: ``dest`` is a host path or a binary stream for a tar (``-``)."""
    source = posixpath.normpath("/" + source)
    try:
        fd = open_in_root(root, source, os.O_PATH)
    except FileNotFoundError:
        raise InvalidArgument(f"Could not find the file {source} in container") from None
    try:
        real = str(Path(f"/proc/self/fd/{fd}").readlink())
    finally:
        os.close(fd)
    top = str(Path(root).resolve())
    if real != top and not real.startswith(top.rstrip("/") + "/"):  # cannot happen: resolution is confined
        raise InvalidArgument(f"{source}: resolves outside the container")
    name = posixpath.basename(source) or "."
    if not isinstance(dest, str):
        with tarfile.open(fileobj=dest, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            tf.add(real, arcname=name)
        return
    out = Path(dest)
    if out.is_dir():
        directory, arc = out, name
    else:
        if not out.parent.is_dir():
            raise InvalidArgument(f"{dest}: its parent directory does not exist")
        directory, arc = out.parent, out.name
    with tempfile.TemporaryDirectory(prefix="imgcore-cp-") as tmp:
        tar_path = Path(tmp) / "out.tar"
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(real, arcname=arc)
        with contextlib.suppress(FileNotFoundError):
            if (directory / arc).is_file() and Path(real).is_dir():
                raise InvalidArgument(f"cannot copy a directory to a file: {dest}")
        extract_layer(str(tar_path), str(directory), same_owner=os.geteuid() == 0)
