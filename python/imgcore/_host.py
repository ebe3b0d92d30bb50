"""Host helpers: the absolute paths of the host programs imgcore runs, and the environment they run with.

Invariant: a host helper is never found through a PATH (neither the caller's nor an image's) and never sees an
image's environment: it runs by absolute path with :func:`host_env`, a fixed PATH of system directories and the C
locale, and nothing else (no LD_PRELOAD, no LD_LIBRARY_PATH). Where a system call does the job, no helper runs
at all (:func:`umount`).
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["BWRAP", "CP", "HOST_PATH", "MOUNT", "UMOUNT", "host_env", "umount"]

HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
"""The only directories host helpers are looked up in (root-owned, managed by the package manager)."""
MOUNT = "/usr/bin/mount"
UMOUNT = "/usr/bin/umount"
CP = "/usr/bin/cp"
BWRAP = "/usr/bin/bwrap"


def host_env() -> dict[str, str]:
    """imgcore's own environment for host helpers."""
    return {"PATH": HOST_PATH, "LC_ALL": "C"}


_libc = ctypes.CDLL(None, use_errno=True)


def umount(path: str | os.PathLike[str]) -> None:
    """``umount2(path, 0)``: what ``umount PATH`` does, without running a program. Raises :class:`OSError`."""
    if _libc.umount2(os.fsencode(path), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
