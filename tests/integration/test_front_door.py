"""The front door: the seed's workflow through ``imgcore.Store`` alone, with real containers (as root) and a real
registry for pull and push; every image it makes is validated by re-hashing its blobs."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgcore
from imgcore.demo import _base_rootfs_tar
from imgcore.errors import ImageNotFound
from tests.validate import assert_valid_image

from .conftest import Registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers exec through chroot as root")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[imgcore.Store]:
    s = imgcore.Store(tmp_path / "store")
    yield s
    for c in s.containers():
        c.remove()  # unmounts: no overlay mount outlives the test


@pytest.fixture
def base(store: imgcore.Store, tmp_path: Path) -> imgcore.Image:
    rootfs = tmp_path / "rootfs.tar.gz"
    _base_rootfs_tar(rootfs)
    return store.import_rootfs(rootfs, "mini-os:1.0", message="busybox", changes=["WORKDIR /srv", "ENV A=1"])


def test_the_seed_workflow_in_one_import(store: imgcore.Store, base: imgcore.Image) -> None:
    assert isinstance(base, imgcore.Image)
    assert base.tags == ("docker.io/library/mini-os:1.0",)
    assert base.run_config.working_dir == "/srv"
    assert "A=1" in base.run_config.env
    assert [h.comment for h in base.history] == ["busybox"]
    assert base.platform.os == "linux"
    (layer,) = base.layers
    assert isinstance(layer, imgcore.Layer)
    assert layer.diff_id == base.config.diff_ids[0]
    assert layer.size == store.content.blob_size(layer.digest)
    assert layer.media_type.endswith("tar+gzip")
    with layer.open() as f:
        assert imgcore.sha256(f.read()) == layer.digest
    names = {e.path for e in layer.entries()}
    assert {"bin/busybox", "etc/passwd"} <= names

    box = store.create(base, name="box")
    assert store.container("box") == box
    assert box.image.id == base.id
    r = box.exec(["sh", "-c", "mkdir -p /srv && cd /srv && echo hi > greeting && echo $A; echo oops >&2"], capture=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"1\n", b"oops\n")
    assert box.exec(["sh", "-c", "exit 3"]).returncode == 3
    assert ("A", "/srv/greeting") in {(c.kind, c.path) for c in box.diff()}
    with box.mount() as root:
        assert (root / "srv/greeting").read_text() == "hi\n"

    new = box.commit("new_tomcat:1.0", message="newtomcat", author="xxx", changes=['CMD ["sh"]'])
    assert_valid_image(store.content, "new_tomcat:1.0")
    assert new.tags == ("docker.io/library/new_tomcat:1.0",)
    assert [h.comment for h in new.history][-1] == "newtomcat"
    assert new.history[-1].author == "xxx"
    assert new.run_config.cmd == ("sh",)
    assert new.layers[0] == base.layers[0]  # the base layer is shared, stored once
    assert {i.id for i in store.images()} == {base.id, new.id}
    assert store.image(new.short_id) == new == store.image("new_tomcat:1.0")

    usage = store.disk_usage()
    shared = next(layer.size for layer in usage.layers if layer.digest == base.layers[0].digest)
    assert usage.saved_by_sharing == shared > 0  # the base layer counts in both images, stored once
    assert store.fsck() == []

    archive = io.BytesIO()
    store.save(["new_tomcat:1.0"], archive)  # by name, so the archive names it (by ID it loads untagged)
    box.remove()
    assert store.containers() == []
    records = store.remove("new_tomcat:1.0")
    assert str(records[0]) == "Untagged: new_tomcat:1.0"
    with pytest.raises(ImageNotFound, match=r"No such image: new_tomcat:1\.0"):
        store.image("new_tomcat:1.0")
    archive.seek(0)
    (loaded,) = store.load(archive)
    assert loaded.id == new.id
    assert loaded.tags == new.tags
    store.tag(loaded, "again:2")
    assert "docker.io/library/again:2" in store.image("again:2").tags
    store.remove("again:2")
    store.remove("new_tomcat:1.0")
    report = store.prune()
    assert store.fsck() == []
    assert report.records == ()  # rmi of the last tag already deleted the image and its own blobs
    assert not store.content.has_blob(new.layers[-1].digest)
    assert store.content.has_blob(base.layers[0].digest)  # the shared base layer stays
    assert [i.id for i in store.images()] == [base.id]


def test_pull_and_push_return_images(store: imgcore.Store, base: imgcore.Image, registry: Registry) -> None:
    host = registry.host
    pushed = store.push(f"{host}/demo/mini:1.0", source=base)
    assert pushed.digest == base.digest
    fresh = imgcore.Store(store.root.parent / "fresh")
    pulled = fresh.pull(f"{host}/demo/mini:1.0")
    assert isinstance(pulled, imgcore.Image)
    assert (pulled.id, pulled.digest) == (base.id, base.digest)
    assert pulled.tags == (f"{host}/demo/mini:1.0",)
    assert_valid_image(fresh.content, f"{host}/demo/mini:1.0")


def test_an_exported_container_is_its_merged_tree(store: imgcore.Store, base: imgcore.Image) -> None:
    box = store.create(base)
    box.exec(["sh", "-c", "echo x > /etc/added"])
    out = io.BytesIO()
    assert box.export(out) > 0
    out.seek(0)
    with tarfile.open(fileobj=out) as tf:
        assert tf.extractfile("etc/added").read() == b"x\n"  # type: ignore[union-attr]
