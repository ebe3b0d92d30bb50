"""Image commands that meet containers: rmi refused while a container uses the image, prune keeps a container's
image and layers, export of a container's flattened rootfs, df's container and active-image figures.

Real containers (imgcore.containers) on real unpacked layers: these tests need the layer extractor
(``imgcore.extract_layer``); outside CI they skip until it is installed, under CI they fail.
"""

from __future__ import annotations

import io
import os
import re
import tarfile

import pytest

from imgcore.cli import main
from imgcore.containers import export as exporting
from imgcore.errors import ImageInUse
from imgcore.gc import collect, usage
from imgcore.image import catalog
from tests.conftest import IN_CI
from tests.images_helpers import make_image
from tests.validate import assert_valid_image

BASE_FILES = {
    "usr/local/tomcat/webapps.dist/ROOT/index.jsp": b"<h1>tomcat</h1>\n",
    "usr/local/tomcat/webapps/": None,
    "etc/hostname": b"tomcat\n",
}


def _unpacked(store):
    return sorted(
        f"{sub}/{p.name}"
        for sub in ("layers", "rootfs")
        if (store.root / "imgcore" / sub).is_dir()
        for p in (store.root / "imgcore" / sub).iterdir()
        if not p.name.startswith(".") and p.name != "empty"
    )


@pytest.fixture
def containers(store):
    try:
        from imgcore import extract_layer  # noqa: F401
    except ImportError:
        message = "containers need the layer extractor (imgcore.extract_layer, issue 3), not installed here"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from imgcore.containers.manager import Containers

    return Containers(store)


@pytest.fixture
def used(store, containers):
    """tomcat:latest with one container created from it."""
    img = make_image(store, "tomcat:latest", BASE_FILES)
    assert_valid_image(store, "tomcat")
    c = containers.create("tomcat", name="web")
    yield img, c
    for left in containers.list():
        containers.unmount(left)


def test_rmi_is_refused_while_a_container_uses_the_image(store, containers, used):
    img, c = used
    with pytest.raises(ImageInUse) as e:
        collect.remove_image(store, "tomcat")
    assert str(e.value) == (
        f'conflict: unable to remove repository reference "tomcat" (must force) - container {c.id[:12]} is using '
        f"its referenced image {img.short_id}"
    )
    with pytest.raises(ImageInUse, match=r"\(must be forced\) - image is being used by stopped container"):
        collect.remove_image(store, img.short_id)
    assert_valid_image(store, "tomcat")  # nothing was removed
    # another tag may go: the image keeps a name
    catalog.tag(store, "tomcat", "tomcat:9")
    assert [str(r) for r in collect.remove_image(store, "tomcat:9")] == ["Untagged: tomcat:9"]


def test_rmi_force_removes_the_name_but_keeps_what_the_container_needs(store, containers, used):
    img, c = used
    records = collect.remove_image(store, "tomcat", force=True)
    assert [str(r) for r in records[:2]] == ["Untagged: tomcat:latest", f"Deleted: {img.id}"]
    assert catalog.list_images(store) == []
    for d in (img.digest, img.id, *(layer.digest for layer in img.layers)):
        assert store.has_blob(d), d  # the container still needs them
    report = collect.prune(store, all=True)
    assert report.deleted_blobs == ()
    assert containers.mount(c).joinpath("etc/hostname").read_bytes() == b"tomcat\n"
    containers.remove(c)
    report = collect.prune(store)
    assert set(report.deleted_blobs) == {img.digest, img.id, *(layer.digest for layer in img.layers)}
    assert store.list_blobs() == []
    assert report.deleted_unpacked  # the unpacked layers (overlay) or the baseline copy (copy driver) went too
    assert _unpacked(store) == []


def test_prune_all_keeps_images_that_containers_use(store, containers, used):
    img, c = used
    unused = make_image(store, "unused:1", {"x": b"1"})
    report = collect.prune(store, all=True)
    assert [str(r) for r in report.records] == ["untagged: unused:1", f"deleted: {unused.id}"]
    assert_valid_image(store, "tomcat")
    # the container's lower layers (overlay) or the baseline it diffs against (copy) stay unpacked
    assert _unpacked(store) == [f"{'layers' if c.driver == 'overlay' else 'rootfs'}/{c.chain_ids[-1][7:]}"]
    assert img.id == catalog.resolve(store, "tomcat").id


def test_export_writes_the_flattened_rootfs(store, containers, used, tmp_path):
    _, c = used
    root = containers.mount(c)
    (root / "usr/local/tomcat/webapps/ROOT").mkdir(parents=True)
    (root / "usr/local/tomcat/webapps/ROOT/index.jsp").write_bytes(b"<h1>tomcat</h1>\n")
    (root / "etc/hostname").unlink()
    out = io.BytesIO()
    n = exporting.export(store, "web", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        names = tf.getnames()
        assert len(names) == n
        assert "usr/local/tomcat/webapps.dist/ROOT/index.jsp" in names  # from the image
        assert "usr/local/tomcat/webapps/ROOT/index.jsp" in names  # the container's change
        assert "etc/hostname" not in names  # deleted in the container: no whiteout in a flattened export
        assert not any(".wh." in x for x in names)
    containers.unmount(c)
    again = io.BytesIO()
    exporting.export(store, c.id[:12], again)  # mounts for the export, unmounts after
    assert not os.path.ismount(c.rootfs)
    assert again.getvalue() == out.getvalue()
    target = tmp_path / "web.tar"
    assert main(["--root", str(store.root), "export", "-o", str(target), "web"]) == 0
    assert target.read_bytes() == out.getvalue()


def test_df_counts_containers_and_active_images(store, containers, used, capsys):
    img, c = used
    make_image(store, "unused:1", {"x": b"1" * 5000})
    root = containers.mount(c)
    (root / "big.bin").write_bytes(b"z" * 100_000)
    du = usage.disk_usage(store)
    assert du.images_active == 1
    (cu,) = du.containers
    assert cu.id == c.id
    assert cu.name == "web"
    assert cu.size >= 100_000
    by_id = {u.image.id: u for u in du.images}
    assert by_id[img.id].containers == 1
    assert du.images_reclaimable == du.images_size - catalog.image_size(store, img)
    tomcat_layer = next(layer for layer in du.layers if layer.digest == img.layers[0].digest)
    assert (tomcat_layer.unpacked > 0) == (c.driver == "overlay")  # overlay shares unpacked layers
    assert (du.baselines > 0) == (c.driver == "copy")  # copy containers diff against a flattened baseline
    assert main(["--root", str(store.root), "df", "-v"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(c.id[:12]))
    assert row.split()[1:3] == ["tomcat:latest", c.driver]
    assert row.split()[-1] == "web"
    assert re.search(r"(Less than a second|1 second|\d+ seconds) ago", row), row
    assert main(["--root", str(store.root), "df"]) == 0
    summary = capsys.readouterr().out.splitlines()
    assert summary[1].split()[:3] == ["Images", "2", "1"]
    assert summary[2].split()[:3] == ["Containers", "1", "0"]


def test_cli_rmi_in_use_is_refused(store, containers, used, capsys):
    img, c = used
    assert main(["--root", str(store.root), "rmi", "tomcat"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f'Error: conflict: unable to remove repository reference "tomcat" (must force) - container '
        f"{c.id[:12]} is using its referenced image {img.short_id}\n"
    )
    assert main(["--root", str(store.root), "rmi", "-f", "tomcat"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["Untagged: tomcat:latest", f"Deleted: {img.id}"]
