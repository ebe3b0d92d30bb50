"""The store is a plain OCI image layout: umoci and skopeo read what the image commands write.

Tags are stored under their full normalised reference (``docker.io/library/tomcat:latest``) in
``org.opencontainers.image.ref.name``; the OCI layout grammar allows ``/`` and ``:`` there, and both tools accept
it. Needs umoci and skopeo (fails under CI=true when missing, skips elsewhere).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import subprocess

import pytest

from imgcore.gc import collect
from imgcore.image import catalog, importer
from tests.conftest import require_tool
from tests.images_helpers import layer_tar, make_image
from tests.validate import assert_valid_image

pytestmark = pytest.mark.integration


def _run(*args: str) -> str:
    p = subprocess.run(list(args), capture_output=True, text=True, check=False)
    assert p.returncode == 0, f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.fixture
def populated(store, tmp_path):
    base = make_image(
        store,
        "tomcat:latest",
        {"usr/local/tomcat/webapps.dist/ROOT/index.jsp": b"<h1>tomcat</h1>\n", "usr/local/tomcat/webapps/": None},
        created=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )
    child = make_image(
        store,
        "new_tomcat:1.0",
        {"usr/local/tomcat/webapps/ROOT/index.jsp": b"<h1>tomcat</h1>\n"},
        parent=base,
        comment="newtomcat",
        author="xxx",
    )
    src = tmp_path / "rootfs.tar.gz"
    src.write_bytes(gzip.compress(layer_tar({"bin/sh": b"#!", "etc/hostname": b"mini\n"})))
    imported = importer.import_image(store, src, "localhost:5000/base/mini:1.0", message="mini rootfs")
    catalog.tag(store, "tomcat", "tomcat:9")
    for ref in ("tomcat", "new_tomcat:1.0", "localhost:5000/base/mini:1.0"):
        assert_valid_image(store, ref)
    return base, child, imported


def test_umoci_lists_and_unpacks_our_tags(store, populated, tmp_path):
    umoci = require_tool("umoci")
    _, child, _ = populated
    listed = _run(umoci, "ls", "--layout", str(store.root)).split()
    assert sorted(listed) == sorted(store.tags())
    assert "docker.io/library/new_tomcat:1.0" in listed
    stat = _run(umoci, "stat", "--image", f"{store.root}:docker.io/library/new_tomcat:1.0", "--json")
    history = json.loads(stat)["history"]
    assert [h.get("comment", "") for h in history][-1] == "newtomcat"
    bundle = tmp_path / "bundle"
    _run(umoci, "unpack", "--rootless", "--image", f"{store.root}:docker.io/library/new_tomcat:1.0", str(bundle))
    rootfs = bundle / "rootfs"
    assert (rootfs / "usr/local/tomcat/webapps/ROOT/index.jsp").read_bytes() == b"<h1>tomcat</h1>\n"
    assert (rootfs / "usr/local/tomcat/webapps.dist/ROOT/index.jsp").is_file()
    mini = tmp_path / "mini"
    _run(umoci, "unpack", "--rootless", "--image", f"{store.root}:localhost:5000/base/mini:1.0", str(mini))
    assert (mini / "rootfs/etc/hostname").read_bytes() == b"mini\n"
    assert child.id


def test_skopeo_inspects_our_images(store, populated):
    skopeo = require_tool("skopeo")
    base, child, imported = populated
    for ref, img in (
        ("docker.io/library/new_tomcat:1.0", child),
        ("docker.io/library/tomcat:9", base),
        ("localhost:5000/base/mini:1.0", imported),
    ):
        out = json.loads(_run(skopeo, "inspect", f"oci:{store.root}:{ref}"))
        assert out["Digest"] == img.digest
        assert out["Layers"] == [layer.digest for layer in img.layers]
        raw = _run(skopeo, "inspect", "--raw", f"oci:{store.root}:{ref}")
        assert raw.encode() == store.get_blob(img.digest)
        config = json.loads(_run(skopeo, "inspect", "--config", f"oci:{store.root}:{ref}"))
        assert config["rootfs"]["diff_ids"] == img.config.diff_ids


def test_skopeo_copies_out_of_our_store_and_back(store, populated, tmp_path):
    """A round trip through skopeo's own OCI writer: the copy lands with the same digests and validates."""
    skopeo = require_tool("skopeo")
    _, child, _ = populated
    other = tmp_path / "other"
    _run(skopeo, "copy", f"oci:{store.root}:docker.io/library/new_tomcat:1.0", f"oci:{other}:copied")
    from imgcore.store import ContentStore

    copied = ContentStore(other)
    index = json.loads((other / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [child.digest]
    # skopeo's tag is a bare "copied": imgcore reads it as docker.io/library/copied:latest, as docker would
    assert catalog.resolve(copied, "copied").digest == child.digest
    assert catalog.resolve(copied, "docker.io/library/copied:latest").id == child.id
    assert [(r.repository, r.tag) for r in catalog.list_images(copied)] == [("copied", "latest")]
    assert_valid_image(copied, "copied")
    other_image = make_image(copied, None, {"z": b"1"})
    catalog.tag(copied, other_image.id, "copied")  # moves the tag, whatever its spelling
    assert catalog.resolve(copied, "copied").id == other_image.id
    catalog.tag(copied, child.id, "copied:latest")
    assert [str(r) for r in collect.remove_image(copied, "copied")][:2] == [
        "Untagged: copied:latest",
        f"Deleted: {child.id}",
    ]
    left = json.loads((other / "index.json").read_text())["manifests"]
    assert [(m["digest"], m.get("annotations")) for m in left] == [(other_image.digest, None)]  # dangling now
