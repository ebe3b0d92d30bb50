"""``cp``: files between the host and a container's root filesystem, with ``docker cp``'s semantics.

Invariants:
- every path inside the container is resolved with the container's root as ``/`` (``openat2(RESOLVE_IN_ROOT)``,
  else an ``O_NOFOLLOW`` walk: :func:`imgcore.runtime.spec.open_in_root`), so a symlink in the container (even
  ``/x -> /etc`` or ``../../..``) can never make ``cp`` read or write outside that root;
- writes into the container go through the confined layer extractor (:func:`imgcore._core.extract_layer`) into
  the resolved directory: the last component is never followed, existing entries are replaced, not written
  through; device nodes and FIFOs from a host tar are skipped;
- reads out of the container archive what the resolved descriptor holds, walking below it through directory
  descriptors with every file opened relative to its parent and checked by inode (export's walker): symlinks
  below it are archived as symlinks, never followed, and a file or parent swapped for a symlink mid-copy is an
  ``InvalidTree`` error, never host content;
- directories: ``cp SRC DIR`` copies into ``DIR/basename(SRC)`` when ``DIR`` exists, else makes ``DIR`` a copy of
  ``SRC``; ``-`` is a tar stream on stdin (into an existing directory) or stdout.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from imgcore._core import extract_layer
from imgcore.containers.export import TarWriter, _checked, walk_at
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


def _archive_from(fd: int, arc: str, out: BinaryIO, *, stream: bool) -> None:
    """Writes what the ``O_PATH`` descriptor ``fd`` (resolved inside the container) holds as a tar named ``arc``:
    the entry itself, then, for a directory, everything below it through directory descriptors
    (:func:`~imgcore.containers.export.walk_at`): no path is resolved again, so a container process that swaps a
    file or a parent for a symlink meanwhile gets ``InvalidTree``, never host content into the copy."""
    st = os.fstat(fd)
    with tarfile.open(fileobj=out, mode="w|" if stream else "w", format=tarfile.PAX_FORMAT) as tf:
        writer = TarWriter(tf)
        if stat.S_ISDIR(st.st_mode):
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            try:
                writer.add(dfd, "", arc, st)
                for dirfd, name, rel, est in walk_at(dfd, arc.rstrip("/") + "/" if arc != "." else ""):
                    writer.add(dirfd, name, rel, est)
            finally:
                os.close(dfd)
            return
        content = None
        if stat.S_ISREG(st.st_mode):  # reopened through the descriptor: the same inode, whatever the path is now
            rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            content = _checked(rfd, st, arc)
        writer.add(fd, "", arc, st, content)


def copy_from_container(root: Path, source: str, dest: str | BinaryIO) -> None:
    """``docker cp CONTAINER:SRC DEST``: ``dest`` is a host path or a binary stream for a tar (``-``)."""
    source = posixpath.normpath("/" + source)
    try:
        fd = open_in_root(root, source, os.O_PATH)
    except FileNotFoundError:
        raise InvalidArgument(f"Could not find the file {source} in container") from None
    try:
        name = posixpath.basename(source) or "."
        if not isinstance(dest, str):
            _archive_from(fd, name, dest, stream=True)
            return
        out = Path(dest)
        if out.is_dir():
            directory, arc = out, name
        else:
            if not out.parent.is_dir():
                raise InvalidArgument(f"{dest}: its parent directory does not exist")
            directory, arc = out.parent, out.name
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        with contextlib.suppress(FileNotFoundError):
            if (directory / arc).is_file() and is_dir:
                raise InvalidArgument(f"cannot copy a directory to a file: {dest}")
        with tempfile.TemporaryDirectory(prefix="imgcore-cp-") as tmp:
            tar_path = Path(tmp) / "out.tar"
            with tar_path.open("wb") as f:
                _archive_from(fd, arc, f, stream=False)
            extract_layer(str(tar_path), str(directory), same_owner=os.geteuid() == 0)
    finally:
        os.close(fd)
