"""``export``: a container's merged root filesystem as a deterministic tar (``docker export``).

Invariants: entries are in sorted path order with relative names, numeric owners and no user/group names;
hardlinks stay links, devices and FIFOs are kept, sockets skipped, symlinks stored and never followed; xattrs go
in ``SCHILY.xattr`` records (overlayfs' own left out); the walk is iterative, so no depth exhausts the stack.

The walk goes through directory descriptors (``openat`` with ``O_NOFOLLOW``, each directory checked by
``fstat`` to be the one ``lstat`` saw) and opens every file relative to its parent's descriptor, checked the
same way: a container process that swaps a file or any parent directory for a symlink while the tar is written
(docker's CVE-2018-15664) gets :class:`~imgcore.errors.InvalidTree`, never host content into the tar. At most
:data:`_OPEN_DIRS` directory descriptors are held; deeper ones are re-opened through ``..``, checked by inode.
``cp`` out of a container (:mod:`imgcore.containers.copy`) archives with the same walker.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from imgcore.containers.manager import Containers
from imgcore.errors import InvalidTree
from imgcore.store import ContentStore

__all__ = ["TarWriter", "export", "walk_at", "write_tree_tar"]


def _open_same(path: Path, st: os.stat_result) -> BinaryIO:
    """``path`` opened for reading only if it is still the regular file the walk saw (a container process may
    swap it, or a parent, for a symlink to a host file: docker's CVE-2018-15664); never follows the last link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise InvalidTree(f"export: {path}: replaced by a symlink while it was being read") from None
    return _checked(fd, st, str(path))


def _checked(fd: int, st: os.stat_result, shown: str) -> BinaryIO:
    now = os.fstat(fd)
    if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise InvalidTree(f"export: {shown}: replaced while it was being read (not the file the walk saw)")
    return os.fdopen(fd, "rb")


def _open_at(dirfd: int, name: str, st: os.stat_result, shown: str) -> BinaryIO:
    """``name`` in directory ``dirfd`` opened for reading if it is still the regular file ``st`` describes."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise InvalidTree(f"export: {shown}: replaced by a symlink while it was being read") from None
    return _checked(fd, st, shown)


_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_DIRS = 64  # directory descriptors held at most; deeper levels are re-opened through ".."


def _open_dir_at(dirfd: int, name: str, st: os.stat_result, shown: str) -> int:
    """Directory ``name`` in ``dirfd``, if it is still the directory ``st`` describes (never a symlink)."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise InvalidTree(f"export: {shown}: replaced while it was being read (no longer a directory)") from None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise InvalidTree(f"export: {shown}: replaced while it was being read (not the directory the walk saw)")
    return fd


class _Frame:
    __slots__ = ("fd", "key", "names", "prefix")

    def __init__(self, fd: int, key: tuple[int, int], prefix: str) -> None:
        self.fd, self.key, self.prefix = fd, key, prefix
        self.names = sorted(os.listdir(fd), reverse=True)


def walk_at(top: int, prefix: str = "") -> Iterator[tuple[int, str, str, os.stat_result]]:
    """Every entry below the directory open at ``top``, depth first in sorted path order (``a``, ``a/x``, ``b``):
    ``(parent_fd, name, prefix + relative path, lstat)``; ``parent_fd`` is valid until the next item. Iterative;
    symlinks are never followed; a directory swapped while walked raises ``InvalidTree``."""
    st = os.fstat(top)
    frames = [_Frame(os.dup(top), (st.st_dev, st.st_ino), prefix)]
    try:
        while frames:
            fr = frames[-1]
            if not fr.names:
                frames.pop()
                if frames and frames[-1].fd < 0:
                    up = os.open("..", _DIR_FLAGS, dir_fd=fr.fd)
                    now = os.fstat(up)
                    if (now.st_dev, now.st_ino) != frames[-1].key:
                        os.close(up)
                        raise InvalidTree(f"export: {fr.prefix}: moved while it was being read")
                    frames[-1].fd = up
                os.close(fr.fd)
                continue
            name = fr.names.pop()
            try:
                est = os.stat(name, dir_fd=fr.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the listing
            rel = fr.prefix + name
            yield fr.fd, name, rel, est
            if stat.S_ISDIR(est.st_mode):
                try:
                    fd = _open_dir_at(fr.fd, name, est, rel)
                except FileNotFoundError:
                    continue
                frames.append(_Frame(fd, (est.st_dev, est.st_ino), rel + "/"))
                if len(frames) > _OPEN_DIRS:
                    old = frames[-_OPEN_DIRS - 1]
                    if old.fd >= 0:
                        os.close(old.fd)
                        old.fd = -1
    finally:
        for fr in frames:
            if fr.fd >= 0:
                os.close(fr.fd)


class TarWriter:
    """Adds entries to a PAX tar as ``export`` writes them: numeric owners, hardlinks as links, devices and FIFOs
    kept, sockets skipped, xattrs as ``SCHILY.xattr`` records; every file opened relative to its parent's
    descriptor and checked to be the inode the walk saw."""

    def __init__(self, tf: tarfile.TarFile) -> None:
        self.tf = tf
        self.links: dict[tuple[int, int], str] = {}
        self.count = 0

    def add(self, dirfd: int, name: str, rel: str, st: os.stat_result, content: BinaryIO | None = None) -> None:
        """Adds ``name`` in ``dirfd`` (its lstat ``st``) as ``rel``; ``content`` is the file already opened and
        checked (the top entry of ``cp``), else a regular file is opened here."""
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        fileobj = content
        if stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
                if fileobj is not None:
                    fileobj.close()
                fileobj = None
            else:
                if st.st_nlink > 1:
                    self.links[key] = rel
                info.type, info.size = tarfile.REGTYPE, st.st_size
                if fileobj is None:
                    fileobj = _open_at(dirfd, name, st, rel)
        elif stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dirfd)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets cannot be archived
        pax: dict[str, str] = {}
        where = f"/proc/self/fd/{dirfd}/{name}" if name else f"/proc/self/fd/{dirfd}"  # the entry itself
        with contextlib.suppress(OSError):
            for xname in sorted(os.listxattr(where, follow_symlinks=False)):
                if xname.startswith(_SKIP_XATTR_PREFIXES):
                    continue
                value = os.getxattr(where, xname, follow_symlinks=False)
                pax[f"SCHILY.xattr.{xname}"] = value.decode("utf-8", "surrogateescape")
        info.pax_headers = pax
        try:
            self.tf.addfile(info, fileobj)
        finally:
            if fileobj is not None:
                fileobj.close()
        self.count += 1


def write_tree_tar(root: str | os.PathLike[str], out: BinaryIO) -> int:
    """Writes the tree under ``root`` as a deterministic PAX tar: entries in sorted path order, names relative
    (``etc/passwd``), numeric owners without user/group names, hardlinks kept as links, devices and FIFOs kept,
    sockets skipped, xattrs as ``SCHILY.xattr`` records (overlayfs' own left out). Symlinks are stored, never
    followed. Returns the number of entries."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(2, "no such directory", str(base))
    top = os.open(base, _DIR_FLAGS)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            writer = TarWriter(tf)
            for dirfd, name, rel, st in walk_at(top):
                writer.add(dirfd, name, rel, st)
    finally:
        os.close(top)
    return writer.count


def export(store: ContentStore, container: str, out: BinaryIO) -> int:
    """``docker export``: the container's root filesystem, flattened (the merged view), as a tar on ``out``.
    Returns the number of entries."""
    cs = Containers(store)
    c = cs.get(container)
    was_mounted = os.path.ismount(c.rootfs)
    rootfs = cs.mount(c)
    try:
        return write_tree_tar(rootfs, out)
    finally:
        if not was_mounted:
            cs.unmount(c)  # leave the container as we found it, as docker export does
