"""Shared set-up of the race and crash tests: real images in a real registry, template stores, store checks.

The images: ``test/race:v1`` (two layers, made by umoci) and ``test/race:v2`` (the same two layers plus a third),
pushed by skopeo to the loopback ``registry``, so v2 shares its base with v1. Two template stores are made once
per session with imgcore itself and copied (``cp -a``) for every round:

- ``only_v2``: v2 pulled and unpacked, nothing else (what a pull or load of v1 races against);
- ``both``: v1 and v2 pulled and unpacked.

``check_store`` is the invariant every round ends with: every tag and every untagged index entry is a whole,
valid image (:func:`tests.validate.assert_valid_image`), every container's image blobs are present, and ``fsck``
is clean. ``clear_failure`` is what a writer that lost a race may print: one ``Error: ...`` line, never a
traceback nor a raw errno.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import imgcore
from imgcore._host import UMOUNT
from imgcore.containers.manager import Containers
from imgcore.image.catalog import catalog
from imgcore.models import REF_NAME, Index, parse_manifest_or_index
from imgcore.store import ContentStore
from tests.validate import assert_valid_image

from .conftest import OciImage, Registry, build_oci_image, require_tool, run, skopeo_push

PYTHONPATH = str(Path(imgcore.__file__).resolve().parents[1])  # the imgcore under test (installed in CI)
LONG = os.environ.get("IMGCORE_LONG") == "1"


def rounds(env: str, default: int, long: int) -> int:
    """How many rounds a loop runs: ``$<env>`` if set, else ``long`` under ``IMGCORE_LONG=1``, else ``default``."""
    value = os.environ.get(env)
    return int(value) if value else (long if LONG else default)


def seeded_random(name: str) -> random.Random:
    """A Random seeded from ``$IMGCORE_RACE_SEED`` (or the clock); the seed is printed so a failure can be replayed."""
    seed = int(os.environ.get("IMGCORE_RACE_SEED") or time.time_ns() % 1_000_000)
    print(f"{name}: IMGCORE_RACE_SEED={seed}")
    return random.Random(seed)


def imgcore_argv(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "imgcore", "--root", str(root), *args]


def imgcore_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHONPATH + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("IMGCORE_DRIVER", None)
    return env


def start(root: Path, *args: str) -> subprocess.Popen[str]:
    """``python3 -m imgcore --root ROOT ARGS...`` as a separate process (output captured)."""
    return subprocess.Popen(
        imgcore_argv(root, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=imgcore_env()
    )


@dataclass(frozen=True)
class Outcome:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"imgcore {' '.join(self.args)} -> {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def finish(proc: subprocess.Popen[str], args: tuple[str, ...], timeout: float = 120) -> Outcome:
    out, err = proc.communicate(timeout=timeout)
    return Outcome(args, proc.returncode, out, err)


def imgcore(root: Path, *args: str) -> Outcome:
    return finish(start(root, *args), args)


def clear_failure(o: Outcome) -> bool:
    """A failure a user can read: exit 1, ``Error: <message>`` on stderr, no traceback, no bare errno."""
    return (
        o.returncode == 1
        and o.stderr.startswith("Error: ")
        and "Traceback" not in o.stderr
        and "[Errno" not in o.stderr
        and len(o.stderr.strip().splitlines()) <= 3
    )


def assert_ok_or_clear(o: Outcome) -> None:
    assert o.returncode == 0 or clear_failure(o), f"neither success nor a clear error:\n{o}"


def copy_store(template: Path, dest: Path) -> Path:
    run("cp", "-a", template, dest)
    return dest


def tags_of(store: ContentStore) -> list[str]:
    return sorted({(d.annotations or {}).get(REF_NAME, "") for d in store.index_entries()} - {""})


def check_store(root: Path) -> None:
    """Every tag and index entry is a whole valid image, every container has its image's blobs, fsck is clean."""
    store = ContentStore(root)
    problems = store.fsck()
    assert not problems, f"fsck: {problems}"
    for name in tags_of(store):
        assert_valid_image(store, name)
    for img in catalog(store):
        if not img.tags:
            assert_valid_image(store, img.id)
    for c in Containers(store).list():
        assert store.has_blob(c.manifest_digest), f"container {c.name}: manifest {c.manifest_digest} is gone"
        doc = parse_manifest_or_index(store.get_blob(c.manifest_digest))
        assert not isinstance(doc, Index)
        for d in [doc.config.digest, *(layer.digest for layer in doc.layers)]:
            assert store.has_blob(d), f"container {c.name}: blob {d} of its image is gone"
        assert store.has_blob(c.image_id), f"container {c.name}: config {c.image_id} is gone"
    for p in (root / "blobs" / "sha256").iterdir():
        assert len(p.name) == 64, f"a partial blob is visible: {p}"


def mounts_under(path: Path) -> list[str]:
    """Mount points under ``path`` (``create`` mounts overlay containers), deepest first."""
    prefix = str(path.resolve()) + "/"
    with Path("/proc/self/mounts").open() as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


@pytest.fixture
def no_mounts_left(tmp_path: Path) -> Iterator[None]:
    """Unmounts what the test's containers mounted under its tmp_path, so pytest can remove it later."""
    yield
    for point in mounts_under(tmp_path):
        subprocess.run([UMOUNT, point], capture_output=True, check=False)


# --------------------------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    registry: Registry
    v1: str  # <host>/test/race:v1
    v2: str  # <host>/test/race:v2 (v1's two layers plus one)
    only_v2: Path  # template store: v2 pulled with --unpack
    both: Path  # template store: v1 and v2 pulled with --unpack
    archive: Path  # docker-save archive of v1
    rootfs_tar: Path  # a small root filesystem tarball for import


def make_world(registry: Registry, tmp: Path) -> World:
    """Builds and pushes the two images and the template stores (once per session)."""
    require_tool("skopeo")
    umoci = require_tool("umoci")
    img = build_oci_image(tmp / "img", "v1", seed=7, big=2_000_000)
    layout = img.layout
    run(umoci, "config", "--image", f"{layout}:v1", "--tag", "v2")
    bundle = tmp / "bundle"
    run(umoci, "unpack", "--rootless", "--image", f"{layout}:v2", bundle)
    (bundle / "rootfs" / "v2.bin").write_bytes(os.urandom(500_000))
    run(umoci, "repack", "--refresh-bundle", "--image", f"{layout}:v2", bundle)
    shutil.rmtree(bundle)
    skopeo_push(img, registry, "test/race:v1")
    v2img = OciImage(layout, "v2", "", [], "")
    skopeo_push(v2img, registry, "test/race:v2")
    v1, v2 = f"{registry.host}/test/race:v1", f"{registry.host}/test/race:v2"
    only_v2, both = tmp / "only_v2", tmp / "both"
    for root, refs in ((only_v2, [v2]), (both, [v1, v2])):
        for ref in refs:
            o = imgcore(root, "pull", "-q", "--unpack", ref)
            assert o.returncode == 0, str(o)
    archive = tmp / "v1.tar"
    o = imgcore(both, "save", "-o", str(archive), v1)
    assert o.returncode == 0, str(o)
    src = tmp / "import-src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("imported\n")
    (src / "data.bin").write_bytes(os.urandom(300_000))
    rootfs_tar = tmp / "rootfs.tar"
    with tarfile.open(rootfs_tar, "w") as tf:
        tf.add(src, arcname=".")
    return World(registry, v1, v2, only_v2, both, archive, rootfs_tar)


@pytest.fixture(scope="session")
def world(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(registry, tmp_path_factory.mktemp("race-world"))


def container_with_change(root: Path, image: str, driver: str, name: str) -> None:
    """A container of ``image`` (made in-process) with one added file, ready to commit."""
    store = ContentStore(root)
    c = Containers(store).create(image, name=name, driver=driver)
    target = c.upper if driver == "overlay" else c.rootfs
    (target / "added.txt").write_text(f"added in {name}\n")
