# ruff: noqa: PTH101, PTH103, PTH108, PTH112, PTH114, PTH115, PTH118, PTH208, PTH211
# (PTH off: the applier and snapshot work on str paths with os.* like the layer tools they stand in for)
"""Helpers for the layer-diff tests: a small whiteout-aware layer applier (tarfile only, independent of the code
under test), a tree snapshot that says exactly what "the same tree" means, and overlayfs mounting."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["apply_layer", "copy_tree", "overlay_mount", "snapshot"]


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def apply_layer(layer: str | os.PathLike[str], root: str | os.PathLike[str]) -> None:
    """Applies an OCI layer onto ``root`` the way docker/umoci do: whiteouts delete lower entries, an opaque
    marker clears a directory's lower children, a non-directory replaces whatever was there, directories merge,
    directory times are restored last."""
    root = os.fspath(root)
    unpacked: set[str] = set()
    dirs: list[tarfile.TarInfo] = []
    with tarfile.open(os.fspath(layer)) as tf:
        for m in tf:
            name = m.name.rstrip("/")
            assert not name.startswith("/"), name
            assert ".." not in name.split("/"), name
            parent, _, base = name.rpartition("/")
            pdir = os.path.join(root, parent) if parent else root
            if base == ".wh..wh..opq":
                for child in os.listdir(pdir):
                    rel = f"{parent}/{child}" if parent else child
                    if rel not in unpacked:
                        _remove(os.path.join(pdir, child))
                continue
            if base.startswith(".wh."):
                _remove(os.path.join(pdir, base[4:]))
                continue
            path = os.path.join(root, name)
            if os.path.lexists(path) and not (m.isdir() and os.path.isdir(path) and not os.path.islink(path)):
                _remove(path)
            if m.isdir():
                os.makedirs(path, exist_ok=True)
                dirs.append(m)
            elif m.isreg():
                src = tf.extractfile(m)
                assert src is not None
                with open(path, "wb") as f:
                    shutil.copyfileobj(src, f)
            elif m.issym():
                os.symlink(m.linkname, path)
            elif m.islnk():
                os.link(os.path.join(root, m.linkname), path)
            elif m.ischr() or m.isblk():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
            elif m.isfifo():
                os.mkfifo(path)
            else:
                raise AssertionError(f"unexpected entry type {m.type!r} for {name}")
            unpacked.add(name)
            if m.islnk():
                continue
            os.chown(path, m.uid, m.gid, follow_symlinks=False)
            if not m.issym():
                os.chmod(path, m.mode)
            for key, value in m.pax_headers.items():
                if key.startswith("SCHILY.xattr."):
                    os.setxattr(path, key[13:], value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            if not m.isdir():
                os.utime(path, ns=(m.mtime * 10**9, int(m.mtime * 10**9)), follow_symlinks=False)
    for m in reversed(dirs):
        path = os.path.join(root, m.name.rstrip("/"))
        os.utime(path, ns=(int(m.mtime) * 10**9, int(m.mtime) * 10**9), follow_symlinks=False)


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for n in names:
        if n.startswith(("trusted.overlay.", "user.overlay.", "security.")):
            continue
        out.append((n, os.getxattr(path, n, follow_symlinks=False)))
    return tuple(sorted(out))


def snapshot(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything a layer must reproduce, per path below ``root`` (the root itself excluded): type, mode,
    owner, mtime in whole seconds (layers carry seconds, as docker's do), content, link target, device, xattrs
    and hardlink partners."""
    root = os.fspath(root)
    out: dict[str, Any] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISSOCK(st.st_mode):
                continue
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    payload: Any = f.read()
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                payload = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                payload = st.st_rdev
            else:
                payload = None
            mode = st.st_mode if not stat.S_ISLNK(st.st_mode) else stat.S_IFLNK
            out[rel] = [mode, st.st_uid, st.st_gid, st.st_mtime_ns // 10**9, payload, _xattrs(path), None]
    for members in inodes.values():
        if len(members) > 1:
            for m in members:
                out[m][6] = tuple(sorted(members))
    return out


def copy_tree(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``cp -a`` (keeps owners, modes, times, xattrs and hardlinks)."""
    subprocess.run(["cp", "-a", "--", f"{os.fspath(src)}/.", os.fspath(dst)], check=True)


@contextmanager
def overlay_mount(lower: list[Path] | Path, upper: Path, work: Path, merged: Path) -> Iterator[Path]:
    """Mounts overlayfs (redirect_dir and metacopy off, docker's defaults) and unmounts on exit."""
    lowers = lower if isinstance(lower, list) else [lower]
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True, capture_output=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)
