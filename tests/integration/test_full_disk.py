"""A full disk gives a clear error and leaves the store consistent (issue 10, item 7).

Each test puts a store on a small tmpfs (``mount -t tmpfs -o size=6m``) holding one small tagged image, then
runs ``pull``, ``load``, ``commit`` or ``import`` of something bigger than the space left, as a separate
``imgcore`` process. The command must fail with one ``Error: ...`` line saying "no space left" and where (the
store), no traceback, no bare errno; after it ``fsck`` is clean, no partial or temporary file is left in
``blobs/``, ``imgcore/ingest`` (a pull's resumable ``.partial`` is allowed: it is how the next pull resumes) or
``imgcore/tmp``, and the earlier tag still resolves to a whole image. Then the file system is grown
(``mount -o remount,size=64m``) and the same command succeeds.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgcore._host import MOUNT, UMOUNT
from imgcore.containers.manager import Containers
from imgcore.store import ContentStore
from tests.conftest import IN_CI
from tests.images_helpers import make_image
from tests.validate import assert_valid_image

from .conftest import Registry
from .race_support import Outcome, check_store, imgcore, mounts_under

pytestmark = [pytest.mark.integration, pytest.mark.root]

_PROGRESS = ("Importing", "Writing layer", "Loading layer", "Pulling fs layer", "Downloading", "Waiting")
BIG = 9_000_000  # random bytes: no compression makes them fit in the 6 MiB file system


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("mounting a small tmpfs needs root (the CI job runs as root)")
        pytest.skip("mounting a small tmpfs needs root")
    point = tmp_path / "fs"
    point.mkdir()
    subprocess.run([MOUNT, "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(point)], check=True)
    try:
        yield point
    finally:
        for m in mounts_under(point):
            subprocess.run([UMOUNT, "-l", m], check=False)
        subprocess.run([UMOUNT, "-l", str(point)], check=False)


def grow(point: Path) -> None:
    subprocess.run([MOUNT, "-o", "remount,size=64m", str(point)], check=True)


def seeded(point: Path) -> Path:
    root = point / "store"
    make_image(ContentStore(root), "early:1", {"etc/hostname": b"early\n"})
    return root


def assert_full_disk_error(o: Outcome, root: Path) -> None:
    assert o.returncode == 1, str(o)
    errors = [line for line in o.stderr.splitlines() if not line.endswith(_PROGRESS)]
    assert len(errors) == 1, str(o)  # progress lines ("Importing", "Writing layer", ...) and one error
    assert errors[0].startswith("Error: "), str(o)
    assert "no space left on device" in errors[0], str(o)
    assert str(root) in errors[0], f"the error does not say where: {o}"
    assert "Traceback" not in o.stderr, str(o)
    assert "[Errno" not in o.stderr, str(o)


def assert_consistent(root: Path) -> None:
    check_store(root)  # fsck clean, every tag and index entry whole, containers have their images, no partial blob
    assert not Containers(ContentStore(root)).fsck()
    ingest = root / "imgcore" / "ingest"
    left = sorted(p.name for p in ingest.iterdir()) if ingest.is_dir() else []
    assert all(name.endswith(".partial") for name in left), f"temporary files left in {ingest}: {left}"
    tmp = root / "imgcore" / "tmp"
    assert not (tmp.is_dir() and any(tmp.iterdir())), f"staging left in {tmp}: {list(tmp.iterdir())}"
    assert_valid_image(ContentStore(root), "early:1")


def big_rootfs_tar(directory: Path) -> Path:
    src = directory / "big-src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(BIG))
    tar = directory / "big.tar"
    subprocess.run(["/usr/bin/tar", "-C", str(src), "-cf", str(tar), "."], check=True)
    return tar


def run_full_then_grown(point: Path, root: Path, *args: str) -> None:
    o = imgcore(root, *args)
    assert_full_disk_error(o, root)
    assert_consistent(root)
    grow(point)
    o = imgcore(root, *args)
    assert o.returncode == 0, str(o)
    assert_consistent(root)


def test_import_on_a_full_disk(small_fs: Path, tmp_path: Path) -> None:
    root = seeded(small_fs)
    tar = big_rootfs_tar(tmp_path)
    run_full_then_grown(small_fs, root, "import", str(tar), "big:1")
    assert_valid_image(ContentStore(root), "big:1")


def test_load_on_a_full_disk(small_fs: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "other"
    make_image(ContentStore(elsewhere), "big:1", {"big.bin": os.urandom(BIG)})
    archive = tmp_path / "big.tar"
    o = imgcore(elsewhere, "save", "-o", str(archive), "big:1")
    assert o.returncode == 0, str(o)
    root = seeded(small_fs)
    run_full_then_grown(small_fs, root, "load", "-i", str(archive))
    assert_valid_image(ContentStore(root), "big:1")


def test_commit_on_a_full_disk(small_fs: Path) -> None:
    root = seeded(small_fs)
    c = Containers(ContentStore(root)).create("early:1", name="c", driver="copy")
    (c.rootfs / "big.bin").write_bytes(os.urandom(4_000_000))
    run_full_then_grown(small_fs, root, "commit", "c", "big:1")
    assert_valid_image(ContentStore(root), "big:1")


def test_pull_on_a_full_disk(small_fs: Path, tmp_path: Path, registry: Registry) -> None:
    elsewhere = tmp_path / "other"
    ref = f"{registry.host}/full-disk/big:1"
    make_image(ContentStore(elsewhere), ref, {"big.bin": os.urandom(BIG)})
    o = imgcore(elsewhere, "push", ref)
    assert o.returncode == 0, str(o)
    root = seeded(small_fs)
    run_full_then_grown(small_fs, root, "pull", ref)
    assert_valid_image(ContentStore(root), ref)
