"""``cp`` never reads or writes host files through a symlink a container process plants or swaps in (issue 10,
item 1: the tar walk of docker's CVE-2018-15664).

A racing thread swaps, in a tight loop, a file for a symlink to a host file, and a directory for a symlink to a
host directory, while ``cp`` copies out of (and into) the container root over and over; host content must never
appear in what was copied out, and nothing may land in the host directory. Each race runs for a bounded time
(``IMGCORE_LONG=1``: longer). Static cases: a symlinked parent (``/evil -> <host dir>``, ``/up -> ../../..``)
is resolved inside the root, for reads and writes.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgcore.containers.copy import copy_from_container, copy_to_container
from imgcore.errors import ImgcoreError

SECONDS = 6.0 if os.environ.get("IMGCORE_LONG") == "1" else 1.0
SECRET = b"HOST-SECRET-XYZ" * 100  # as long as MINE: a read through a swapped link fits the lstat size
MINE = b"container data " * 100


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "rootfs"
    host = tmp_path / "host"
    (root / "dir").mkdir(parents=True)
    host.mkdir()
    (host / "f").write_bytes(SECRET)
    (host / "secret").write_bytes(SECRET)
    (root / "dir" / "f").write_bytes(MINE)
    (root / "f").write_bytes(MINE)
    return root, host


_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> None:
    """Swaps two directory entries atomically (``renameat2(RENAME_EXCHANGE)``), so the tree is always whole."""
    if _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


def swapper(entry: Path, target: Path) -> Callable[[], None]:
    """A swap step: ``entry`` becomes a symlink to ``target`` (a host path) for a moment, then itself again."""
    link = entry.with_name(entry.name + ".link")
    link.symlink_to(target)

    def swap() -> None:
        exchange(entry, link)
        time.sleep(0.0005)
        exchange(entry, link)

    return swap


@contextlib.contextmanager
def swapping(swap: Callable[[], None]) -> Iterator[list[int]]:
    """Runs ``swap`` in a loop on a thread for the ``with`` block; yields a one-item list counting the swaps."""
    stop = threading.Event()
    count = [0]

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                swap()
                count[0] += 1

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield count
    finally:
        stop.set()
        t.join(10)


def _tar_payloads(data: bytes) -> list[bytes]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            if m.isfile():
                f = tf.extractfile(m)
                assert f is not None
                out.append(f.read())
    return out


def _race_read(root: Path, source: str, swap: Callable[[], None]) -> tuple[int, int]:
    ok = refused = 0
    with swapping(swap) as swaps:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            buf = io.BytesIO()
            try:
                copy_from_container(root, source, buf)
            except (ImgcoreError, OSError):
                refused += 1
                continue
            payloads = _tar_payloads(buf.getvalue())
            assert all(SECRET[:12] not in p for p in payloads), "host content was copied out of the container"
            ok += 1
    assert swaps[0] > 10, "the racing thread never ran"
    return ok, refused


def test_a_file_swapped_for_a_symlink_during_cp_out(world: tuple[Path, Path]) -> None:
    root, host = world
    f = root / "dir" / "f"

    swap = swapper(f, host / "secret")

    ok, refused = _race_read(root, "/dir", swap)
    assert ok + refused > 5


def test_a_directory_swapped_for_a_symlink_during_cp_out(world: tuple[Path, Path]) -> None:
    root, host = world
    d = root / "dir"
    for i in range(50):
        (d / f"g{i}").write_bytes(MINE)
        (host / f"g{i}").write_bytes(SECRET)  # what a walk through the swapped /dir would read

    swap = swapper(d, host)

    ok, refused = _race_read(root, "/dir", swap)
    assert ok + refused > 5


def test_a_swapped_top_file_is_never_read_through(world: tuple[Path, Path]) -> None:
    root, host = world

    swap = swapper(root / "f", host / "secret")

    _race_read(root, "/f", swap)


def test_a_directory_swapped_for_a_symlink_during_cp_in(world: tuple[Path, Path], tmp_path: Path) -> None:
    root, host = world
    before = sorted(p.name for p in host.iterdir())
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"new{i}").write_bytes(b"from the host cp\n")
    d = root / "dst"
    d.mkdir()

    swap = swapper(d, host)

    with swapping(swap) as swaps:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(ImgcoreError, OSError):
                copy_to_container(root, str(src), "/dst")
    assert swaps[0] > 2, "the racing thread never ran"
    assert sorted(p.name for p in host.iterdir()) == before, "cp wrote into the host directory"
    assert (host / "f").read_bytes() == SECRET


def test_symlinked_parents_resolve_inside_the_root(world: tuple[Path, Path], tmp_path: Path) -> None:
    root, host = world
    (root / "evil").symlink_to(host)  # absolute host path: inside the root it names nothing
    (root / "up").symlink_to("../../../../../../..")
    (root / "etc").mkdir()
    (root / "etc" / "secret").write_bytes(MINE)
    for source in ("/evil/secret", "/up" + str(host / "secret"), "/evil/../../host/secret"):
        buf = io.BytesIO()
        try:
            copy_from_container(root, source, buf)
        except (ImgcoreError, OSError):
            continue
        assert all(SECRET[:12] not in p for p in _tar_payloads(buf.getvalue())), source
    buf = io.BytesIO()
    copy_from_container(root, "/up/etc/secret", buf)  # ".." stops at the root: the container's /etc/secret
    assert _tar_payloads(buf.getvalue()) == [MINE]

    (root / str(host).lstrip("/")).mkdir(parents=True)  # where the host path points inside the root
    src = tmp_path / "payload"
    src.write_bytes(b"written by cp\n")
    before = sorted(p.name for p in host.iterdir())
    for dest in ("/evil/payload", "/up" + str(host / "payload"), "/evil/"):
        with contextlib.suppress(ImgcoreError, OSError):
            copy_to_container(root, str(src), dest)
    assert sorted(p.name for p in host.iterdir()) == before
    assert (root / str(host).lstrip("/") / "payload").read_bytes() == b"written by cp\n"
