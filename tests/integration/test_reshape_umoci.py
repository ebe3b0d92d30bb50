"""umoci, independently, unpacks what ``imgcore squash/flatten/rebase/append/config`` wrote into the store (an OCI
layout) into the trees expected: the original image's tree for squash and flatten, the new base's plus the
image's own layers for rebase, the image plus the tarballs for append, the same tree for config.

The image is the seed's shape: a tomcat-like base with ``webapps.dist/``, a layer that copies the web apps into
``webapps/``, a layer that chmods them (the rewrite squash must fold into one step), a hardlink, a deleted file and
a replaced directory. Every command runs as a user would run it (``python -m imgcore``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from imgcore.image.catalog import resolve
from imgcore.store import ContentStore
from tests.conftest import require_tool
from tests.reshape_helpers import image_of_blobs, snap
from tests.strategies import TarEntry as E
from tests.strategies import build_tar
from tests.validate import assert_valid_image

pytestmark = pytest.mark.integration

T = "usr/local/tomcat"
APPS = {f"{T}/webapps.dist/ROOT/index.jsp": b"<h1>tomcat</h1>\n" * 300, f"{T}/webapps.dist/docs/a.html": b"docs"}


def _layers() -> list[bytes]:
    base = [E.dir("usr"), E.dir("usr/local"), E.dir(T), E.dir(f"{T}/webapps"), E.dir(f"{T}/webapps.dist"),
            E.dir(f"{T}/webapps.dist/ROOT"), E.dir(f"{T}/webapps.dist/docs"), E.dir("etc"),
            E.file("etc/hostname", b"tomcat\n"), E.file("etc/motd", b"hi"), E.dir("opt"),
            E.file("opt/x", b"x")]  # fmt: skip
    base += [E.file(p, data) for p, data in APPS.items()]
    copied = [E.dir(f"{T}/webapps"), E.dir(f"{T}/webapps/ROOT"), E.dir(f"{T}/webapps/docs")]
    copied += [E.file(p.replace("webapps.dist", "webapps"), data) for p, data in APPS.items()]
    copied += [
        E.hardlink(f"{T}/webapps/index.jsp", f"{T}/webapps/ROOT/index.jsp"),
        E.dir("etc"),
        E.file("etc/.wh.motd"),
    ]
    chmod = [E.dir(f"{T}/webapps"), E.dir(f"{T}/webapps/docs")]
    chmod += [E.file(f"{T}/webapps/docs/a.html", APPS[f"{T}/webapps.dist/docs/a.html"], mode=0o600)]
    chmod += [E.file("opt", b"opt is a file now")]
    return [build_tar(base, "gzip"), build_tar(copied, "gzip"), build_tar(chmod)]


@pytest.fixture
def env(tmp_path: Path):
    umoci = require_tool("umoci")
    store = ContentStore(tmp_path / "store")
    layers = _layers()
    base = image_of_blobs(store, "tomcat:base", layers[:1])
    image_of_blobs(store, "tomcat:new", layers[1:], base=base)
    newbase = image_of_blobs(store, "tomcat:base2", [build_tar([E.file("etc/hostname", b"tomcat2\n"),
                                                                E.file("etc/release", b"2")], "gzip")])  # fmt: skip
    # what rebase should give: the new base's layer and the image's own two, stacked directly
    image_of_blobs(store, "want:rebased", layers[1:], base=newbase)
    return store, umoci, tmp_path


def imgcore_cli(store: ContentStore, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "imgcore", "--root", str(store.root), *args], capture_output=True,
                       text=True, env=env, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def unpacked(store: ContentStore, umoci: str, ref: str, where: Path) -> dict[str, tuple[object, ...]]:
    bundle = where / ref.replace(":", "-")
    subprocess.run([umoci, "unpack", "--image", f"{store.root}:docker.io/library/{ref}", str(bundle)], check=True,
                   capture_output=True)  # fmt: skip
    return snap(bundle / "rootfs")


def test_umoci_unpacks_reshaped_images(env):
    store, umoci, tmp = env
    layer = tmp / "extra.tar"
    with tarfile.open(layer, "w:gz") as tf:
        tf.add(__file__, arcname="srv/test.py")
    imgcore_cli(store, "flatten", "tomcat:new", "-t", "out:flat")
    imgcore_cli(store, "squash", "tomcat:new", "--last", "2", "-t", "out:sq")
    imgcore_cli(store, "squash", "tomcat:new", "--from", "tomcat:base", "--exclude", "opt", "-t", "out:ex")
    imgcore_cli(store, "rebase", "tomcat:new", "--old-base", "tomcat:base", "--new-base", "tomcat:base2", "-t",
                "out:reb")  # fmt: skip
    imgcore_cli(store, "append", "tomcat:new", str(layer), "-t", "out:app")
    imgcore_cli(store, "config", "tomcat:new", "-c", "ENV CATALINA_HOME=/usr/local/tomcat", "-t", "out:cfg")
    for ref in ("out:flat", "out:sq", "out:ex", "out:reb", "out:app", "out:cfg"):
        assert_valid_image(store, ref)

    original = unpacked(store, umoci, "tomcat:new", tmp)
    assert original[f"{T}/webapps/docs/a.html"][1] == 0o600
    assert original[f"{T}/webapps/index.jsp"][7] == 2  # hardlinked
    assert "etc/motd" not in original
    assert original["opt"][0] == "file"
    assert unpacked(store, umoci, "out:flat", tmp) == original
    assert unpacked(store, umoci, "out:sq", tmp) == original
    excluded = unpacked(store, umoci, "out:ex", tmp)
    assert excluded["opt"][0] == "dir"  # the base's opt/ is kept: the squashed layer left opt out
    assert {p: v for p, v in excluded.items() if not p.startswith("opt")} == {
        p: v for p, v in original.items() if not p.startswith("opt")
    }
    assert unpacked(store, umoci, "out:reb", tmp) == unpacked(store, umoci, "want:rebased", tmp)
    appended = unpacked(store, umoci, "out:app", tmp)
    assert {p: v for p, v in appended.items() if not p.startswith("srv")} == original
    assert appended["srv/test.py"][4] == Path(__file__).stat().st_size
    assert unpacked(store, umoci, "out:cfg", tmp) == original

    # the layer counts and history that umoci's own config reader sees
    flat, sq = resolve(store, "out:flat"), resolve(store, "out:sq")
    assert len(flat.manifest.layers) == 1
    assert len(sq.manifest.layers) == 2
    stat = json.loads(subprocess.run([umoci, "stat", "--json", "--image", f"{store.root}:docker.io/library/out:sq"],
                                     check=True, capture_output=True, text=True).stdout)  # fmt: skip
    history = stat["history"]
    assert [bool(h.get("empty_layer")) for h in history] == [False, True, True, False]
    cfg = json.loads(subprocess.run([umoci, "raw", "config", "--image", f"{store.root}:docker.io/library/out:cfg",
                                     "/dev/stdout"], check=True, capture_output=True, text=True).stdout)  # fmt: skip
    assert "CATALINA_HOME=/usr/local/tomcat" in cfg["process"]["env"]  # the runtime spec umoci makes of it


def test_commit_squash_unpacked_by_umoci(env):
    """commit --squash of a container (copy driver) on the seed image: umoci unpacks the one layer into the
    container's tree."""
    store, umoci, tmp = env
    from imgcore.containers.manager import Containers

    box = Containers(store).create("tomcat:new", driver="copy")
    (box.rootfs / "root").mkdir(exist_ok=True)
    (box.rootfs / "root/notes").write_bytes(b"changed in the container")
    (box.rootfs / "tmp").mkdir(exist_ok=True)
    (box.rootfs / "tmp/cache").write_bytes(b"junk")
    image_id = imgcore_cli(store, "commit", "--squash", "--exclude", "tmp/*", box.id, "out:commit")
    assert_valid_image(store, "out:commit")
    img = resolve(store, "out:commit")
    assert img.id == image_id
    assert len(img.manifest.layers) == 1
    tree = unpacked(store, umoci, "out:commit", tmp)
    assert tree["root/notes"][4] == len(b"changed in the container")
    assert "tmp/cache" not in tree
    assert {p for p in tree if not p.startswith(("root", "tmp"))} == {
        p for p in unpacked(store, umoci, "tomcat:new", tmp) if not p.startswith(("root", "tmp"))
    }
