"""Leases: what a running writer holds against garbage collection (containerd's leases, in files).

A writer (pull, load, commit, import, tag, create) takes a lease before its first blob and drops it after its
tag. While the lease lives, ``prune`` and ``rmi`` sweep nothing it names: blobs it stored or relies on, and
unpacked layers (``layers/<chain hex>``) it made or mounts.

Invariants:
- a lease is a file ``imgcore/leases/<id>.json`` on which its owner holds an exclusive ``flock`` for its whole
  life (taken before the file gets that name); a lease whose lock is free belongs to a dead process and is
  removed by the next collection (a staging ``.<id>.json`` of a writer killed before the rename, once a minute
  old);
- names are added to a lease *before* the writer depends on them, under the GC lock held shared
  (:meth:`Lease.guard`), and collection holds the GC lock exclusively from its mark to its sweep: so a name is
  either in a lease the collector reads, or the collector has finished and the writer sees the blob missing and
  writes it again. The GC lock is only ever held for short sections, never for a whole download.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from imgcore import _fs
from imgcore.store.paths import StorePaths

__all__ = ["Lease", "collecting", "leased"]

_MAX_LEASE_BYTES = 64 << 20


class Lease:
    """One writer's hold. Use through :meth:`imgcore.store.ContentStore.lease` as a context manager."""

    def __init__(self, paths: StorePaths, purpose: str) -> None:
        self._paths = paths
        self.purpose = purpose
        self.names: set[str] = set()
        paths.leases.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(8)}.json"
        self.path = paths.leases / name
        # Made under a dot-name collectors skip, locked, then renamed: a lease file visible without its lock
        # would be taken for a dead writer's and removed while its owner goes on relying on it.
        staging = paths.leases / f".{name}"
        self._fd: int | None = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._write()
        staging.rename(self.path)

    def _write(self) -> None:
        if self._fd is None:
            raise ValueError(f"lease {self.path.name} is closed")
        doc = {"purpose": self.purpose, "pid": os.getpid(), "created": time.time(), "names": sorted(self.names)}
        data = json.dumps(doc).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """A short section that no collection overlaps (the GC lock, shared): check-then-use steps go here."""
        with _fs.locked(self._paths.gc_lock, shared=True):
            yield

    def add(self, *names: str) -> None:
        """Adds ``names`` (blob digests, ``layers/<hex>`` keys); call it under :meth:`guard`, before relying on them."""
        new = {n for n in names if n and n not in self.names}
        if new:
            self.names.update(new)
            self._write()

    def hold(self, *names: str) -> None:
        """:meth:`add` in a guarded section of its own."""
        with self.guard():
            self.add(*names)

    def close(self) -> None:
        """Drops the lease (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def collecting(paths: StorePaths) -> Iterator[None]:
    """Held by garbage collection from its mark to its sweep (the GC lock, exclusive)."""
    with _fs.locked(paths.gc_lock, shared=False):
        yield


def leased(paths: StorePaths) -> set[str]:
    """Every name held by a live lease; leases of dead processes are removed. Call it under :func:`collecting`."""
    out: set[str] = set()
    if not paths.leases.is_dir():
        return out
    entries = list(paths.leases.iterdir())
    _drop_dead_staging(entries)
    for entry in _lease_files(entries):
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, or planted as a symlink: not a lease
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # alive
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                continue
            data = os.pread(fd, _MAX_LEASE_BYTES, 0)
        finally:
            os.close(fd)
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            names = json.loads(data).get("names") or []
            out.update(n for n in names if isinstance(n, str))
    return out


def _lease_files(entries: Iterable[Path]) -> list[Path]:
    return sorted(p for p in entries if p.name.endswith(".json") and not p.name.startswith("."))


_STAGING_AGE = 60.0


def _drop_dead_staging(entries: Iterable[Path]) -> None:
    """Removes staging lease files (``.<id>.json``) of writers killed before the rename: unlocked and old."""
    now = time.time()
    for p in entries:
        if not (p.name.startswith(".") and p.name.endswith(".json")):
            continue
        try:
            if now - p.lstat().st_mtime < _STAGING_AGE:
                continue
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
