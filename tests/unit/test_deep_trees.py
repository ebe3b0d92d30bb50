"""A 2000-level directory in a container never crashes imgcore (issue 10, "walks of trees are iterative").

Two depths per driver: one whose deepest path still fits ``PATH_MAX`` (diff, commit, export, df, rm and prune
all work and see the deepest file), and 2000 levels, deeper than any path the kernel accepts (export still works,
it walks through directory descriptors; diff and commit fail with ``InvalidTree`` naming PATH_MAX, never a
``RecursionError`` nor a crash of the Rust walk; ``df``, ``rm`` and ``prune`` still work, so the store is never
stuck). Also: ``load`` of a layout directory with
a deep junk tree, and :func:`imgcore._fs.rmtree` itself.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgcore
from imgcore._fs import rmtree
from imgcore.cli import main
from imgcore.errors import ImgcoreError, InvalidTree
from tests.conftest import can_mount_overlay
from tests.images_helpers import make_image
from tests.validate import assert_valid_image

PATH_MAX = 4096


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """pytest's own clean-up of old temporary directories recurses (``shutil.rmtree`` on 3.11): leave it nothing
    deep to trip over, in this run or a later one."""
    yield
    rmtree(tmp_path, ignore_errors=True)


def _drivers() -> list[object]:
    overlay = pytest.param("overlay", marks=pytest.mark.skipif(
        os.geteuid() != 0 or can_mount_overlay() is not None, reason="overlay needs root and overlayfs"))  # fmt: skip
    return ["copy", overlay]


def _nest(top: Path, levels: int) -> str:
    """``levels`` directories ``d/d/...`` under ``top`` (made through descriptors: no path limit), a file ``f``
    at the bottom; returns the file's path relative to ``top``."""
    fd = os.open(top, os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    return "d/" * levels + "f"


def _store(tmp_path: Path, driver: str) -> tuple[imgcore.Store, imgcore.Container]:
    s = imgcore.Store(tmp_path / "store")
    make_image(s.content, "base:1", {"etc/hostname": b"base\n"})
    return s, s.create("base:1", name="deep", driver=driver)


def _writable(c: imgcore.Container) -> Path:
    return c.rootfs.parent / "upper" if c.driver == "overlay" else c.rootfs


@pytest.mark.parametrize("driver", _drivers())
def test_deepest_path_that_fits_works_everywhere(tmp_path: Path, driver: str) -> None:
    s, c = _store(tmp_path, driver)
    longest = max(len(str(c.rootfs)), len(str(_writable(c))), len(str(tmp_path / "store" / "imgcore" / "layers")) + 80)
    levels = (PATH_MAX - 200 - longest) // 2
    assert levels > 1500, f"tmp_path too long for a deep test: {tmp_path}"
    rel = _nest(_writable(c), levels)
    changes = c.diff()
    assert ("A", "/" + rel) in {(ch.kind, ch.path) for ch in changes}
    img = c.commit("deep:1")
    assert_valid_image(s.content, "deep:1")
    assert img.id
    buf = io.BytesIO()
    c.export(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        assert rel in tf.getnames()
    assert s.disk_usage().containers
    # The image with the deep layer: the analysis commands read it, a new container unpacks it.
    for args in (["ls", "deep:1", "/" + rel.rsplit("/", 1)[0]], ["images"], ["df", "-v"], ["history", "deep:1"]):
        assert main(["--root", str(s.root), *args]) == 0, args
    other = s.create("deep:1", name="again", driver=driver)
    with other.mount() as rootfs:
        fd = os.open(rootfs, os.O_DIRECTORY)
        try:
            os.stat(rel, dir_fd=fd)  # unpacked whole: the deepest file is there
        finally:
            os.close(fd)
    other.remove()
    c.remove()
    s.prune(all=True)
    assert not s.containers()
    assert not s.fsck()


@pytest.mark.parametrize("driver", _drivers())
def test_2000_levels_fail_cleanly_and_the_store_stays_usable(tmp_path: Path, driver: str) -> None:
    s, c = _store(tmp_path, driver)
    rel = _nest(_writable(c), 2000)
    buf = io.BytesIO()
    c.export(buf)  # export walks through directory descriptors: no path limit
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        assert rel in tf.getnames()
    for name, step in (("diff", c.diff), ("commit", lambda: c.commit("deep:1"))):
        with pytest.raises((ImgcoreError, OSError)) as info:
            step()
        assert isinstance(info.value, InvalidTree), (name, info.value)  # typed, not a bare ENAMETOOLONG
        assert "PATH_MAX" in str(info.value)
    assert s.disk_usage().containers
    s.prune()
    c.remove()
    assert not s.containers()
    s.prune(all=True)
    assert not s.fsck()
    assert not [p for p in (tmp_path / "store" / "imgcore" / "containers").iterdir() if not p.name.startswith(".")]


def test_load_of_a_layout_directory_with_a_deep_junk_tree(tmp_path: Path) -> None:
    s = imgcore.Store(tmp_path / "store")
    make_image(s.content, "base:1", {"etc/hostname": b"base\n"})
    out = tmp_path / "layout"
    s.save(["base:1"], out, format="oci-dir")
    _nest(out, 2000)
    other = imgcore.Store(tmp_path / "other")
    assert other.load(out)
    assert_valid_image(other.content, "base:1")


def test_rmtree_is_iterative_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    top = tmp_path / "top"
    top.mkdir()
    fd = os.open(top, os.O_DIRECTORY)
    for i in range(1100):  # deeper than Python's recursion limit (shutil.rmtree on 3.11 fails here)
        os.symlink(str(outside), "link", dir_fd=fd)
        os.close(os.open(f"f{i}", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
        os.mkdir("e", dir_fd=fd)
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(fd)
    rmtree(top)
    assert not top.exists()
    assert (outside / "keep").read_text() == "keep"
    rmtree(top)  # missing: fine
    link = tmp_path / "l"
    link.symlink_to(outside)
    rmtree(link)
    assert not link.is_symlink()
    assert (outside / "keep").exists()
