"""Small filesystem helpers shared by the store and the container state: atomic writes, file locks, removal.

Invariant: :func:`rmtree` is iterative and works through directory descriptors (``*at`` calls, ``O_NOFOLLOW``),
so no depth of tree exhausts the stack or hits ``PATH_MAX``, and it never follows a symlink or leaves its
file system.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from imgcore._json import read_json_file
from imgcore.errors import DiskFull, ImgcoreError, InvalidManifest

__all__ = ["atomic_write", "atomic_write_json", "disk_full_is_an_error", "fsync_dir", "locked", "read_json", "rmtree"]


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


def read_json(path: Path, *, error: type[ImgcoreError] = InvalidManifest) -> Any:
    """A state file's JSON, bounded in size, depth and number length (``error``, by default ``InvalidManifest``, a
    ``ValueError``, when it is malformed or too large): state files are outside data too, they can be planted or
    truncated."""
    return read_json_file(path, f"state file {path}", error=error)


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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _rmtree_fd(top: int, dev: int) -> None:
    """Empties the directory open at ``top`` (which the caller closes): depth first with an explicit stack of
    (descriptor, subdirectories still to remove); a subdirectory on another file system (a mount) is left, so
    the ``rmdir`` of its parent fails with ``EBUSY`` rather than anything being removed across the mount."""
    stack: list[tuple[int, list[str]]] = []
    fd = top
    try:
        while True:
            subdirs: list[str] = []
            with os.scandir(fd) as it:
                for e in it:
                    try:
                        is_dir = e.is_dir(follow_symlinks=False)
                    except OSError:
                        is_dir = False
                    if not is_dir:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(e.name, dir_fd=fd)
                    else:
                        subdirs.append(e.name)
            stack.append((fd, subdirs))
            fd = -1
            while stack:
                parent, pending = stack[-1]
                if not pending:
                    stack.pop()
                    if stack:
                        os.close(parent)
                        up, rest = stack[-1]
                        os.rmdir(rest.pop(), dir_fd=up)
                    continue
                name = pending[-1]
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=parent)
                except FileNotFoundError:
                    pending.pop()
                    continue
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    pending.pop()  # swapped for a file or symlink since the listing: unlink the entry itself
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=parent)
                    continue
                if os.fstat(child).st_dev != dev:
                    os.close(child)
                    raise OSError(errno.EBUSY, "a mount point is in the way", name)
                fd = child
                break
            if fd == -1:
                return
    finally:
        if fd not in (-1, top):
            os.close(fd)
        for d, _ in stack:
            if d != top:
                os.close(d)


def rmtree(path: Path, *, ignore_errors: bool = False) -> None:
    """Removes ``path`` and everything below it (a symlink is removed as the link); a missing ``path`` is fine.

    Unlike ``shutil.rmtree`` on Python 3.11 (recursive), any depth works. With ``ignore_errors``, what cannot
    be removed is left and no ``OSError`` escapes."""
    try:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            path.unlink(missing_ok=True)
            return
        fd = os.open(path, _DIR_FLAGS)
        try:
            _rmtree_fd(fd, st.st_dev)
        finally:
            os.close(fd)
        path.rmdir()
    except OSError:
        if not ignore_errors:
            raise


_P = ParamSpec("_P")
_T = TypeVar("_T")
_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_is_an_error(what: str) -> Callable[[Callable[_P, _T]], Callable[_P, _T]]:
    """Decorates a workflow (``pull``, ``load``, ``commit``, ``import``, ``create``) so that a full file system is
    :class:`~imgcore.errors.DiskFull` naming the command and the store (its ``store`` argument: a value with a
    ``root``), instead of a bare ``OSError``. The workflow itself removes what it half-wrote."""

    def decorate(fn: Callable[_P, _T]) -> Callable[_P, _T]:
        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            try:
                return fn(*args, **kwargs)
            except DiskFull:
                raise
            except OSError as e:
                if e.errno not in _FULL:
                    raise
                holders = [kwargs.get("store"), *args]  # the store, or an object holding it (``self.store``)
                store = next((h for h in holders if hasattr(h, "root")), None)
                store = store or next(
                    (getattr(h, "store", None) for h in holders if hasattr(getattr(h, "store", None), "root")), None
                )
                root = getattr(store, "root", None)
                writing = f" (writing {e.filename})" if e.filename else ""
                raise DiskFull(f"{what}: no space left on device in {root or 'the store'}{writing}: free some "
                               "space and run it again", path=str(root) if root else None,
                               file=e.filename) from None  # fmt: skip

        return wrapper

    return decorate
