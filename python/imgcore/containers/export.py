"""``export``: a container's merged root filesystem as a deterministic tar (``docker export``).

Invariants: entries are in sorted path order with relative names, numeric owners and no user/group names;
hardlinks stay links, devices and FIFOs are kept, sockets skipped, symlinks stored and never followed; xattrs go
in ``SCHILY.xattr`` records (overlayfs' own left out); the walk is iterative, so no depth exhausts the stack.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from imgcore.containers.manager import Containers
from imgcore.errors import InvalidTree
from imgcore.store import ContentStore

__all__ = ["export", "write_tree_tar"]


def _open_same(path: Path, st: os.stat_result) -> BinaryIO:
    """``path`` opened for reading only if it is still the regular file the walk saw (a container process may
    swap it, or a parent, for a symlink to a host file: docker's CVE-2018-15664); never follows the last link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise InvalidTree(f"export: {path}: replaced by a symlink while it was being read") from None
    now = os.fstat(fd)
    if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise InvalidTree(f"export: {path}: replaced while it was being read (not the file the walk saw)")
    return os.fdopen(fd, "rb")


_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")


def write_tree_tar(root: str | os.PathLike[str], out: BinaryIO) -> int:
    """Writes the tree under ``root`` as a deterministic PAX tar: entries in sorted path order, names relative
    (``etc/passwd``), numeric owners without user/group names, hardlinks kept as links, devices and FIFOs kept,
    sockets skipped, xattrs as ``SCHILY.xattr`` records (overlayfs' own left out). Symlinks are stored, never
    followed. Returns the number of entries."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(2, "no such directory", str(base))
    links: dict[tuple[int, int], str] = {}
    count = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:

        def add(path: Path, rel: str) -> None:
            nonlocal count
            st = os.lstat(path)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = info.gname = ""
            info.mtime = int(st.st_mtime)
            fileobj = None
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type, info.linkname = tarfile.LNKTYPE, links[key]
                else:
                    if st.st_nlink > 1:
                        links[key] = rel
                    info.type, info.size = tarfile.REGTYPE, st.st_size
                    fileobj = _open_same(path, st)
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, str(path.readlink())
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            else:
                return  # sockets cannot be archived
            pax: dict[str, str] = {}
            with contextlib.suppress(OSError):
                for name in sorted(os.listxattr(path, follow_symlinks=False)):
                    if name.startswith(_SKIP_XATTR_PREFIXES):
                        continue
                    value = os.getxattr(path, name, follow_symlinks=False)
                    pax[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
            info.pax_headers = pax
            try:
                tf.addfile(info, fileobj)
            finally:
                if fileobj is not None:
                    fileobj.close()
            count += 1

        def children(directory: Path, prefix: str) -> list[tuple[Path, str]]:
            with os.scandir(directory) as it:
                names = sorted(e.name for e in it)
            return [(directory / n, f"{prefix}{n}") for n in reversed(names)]

        # Depth first in sorted order (a, a/x, b), with an explicit stack instead of recursion.
        stack = children(base, "")
        while stack:
            path, rel = stack.pop()
            add(path, rel)
            if path.is_dir() and not path.is_symlink():
                stack.extend(children(path, rel + "/"))

    return count


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
