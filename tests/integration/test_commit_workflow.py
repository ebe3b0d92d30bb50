"""The seed's workflow at the level a user sees it: create -> change inside the container -> commit -> the new
image, in both container drivers; the committed image is checked by recomputing every digest and by umoci
(an independent OCI implementation) unpacking it into the same tree as the container's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgcore.containers.commit import commit
from imgcore.containers.manager import Containers
from imgcore.errors import ContainerNotFound, ImgcoreError
from imgcore.gc import collect
from imgcore.image.catalog import resolve as resolve_image
from imgcore.store import ContentStore
from tests.conftest import can_mount_overlay, require_tool
from tests.images_helpers import make_image
from tests.strategies import tree_snapshot
from tests.validate import assert_valid_image

BASE_FILES = {
    "usr/local/tomcat/webapps.dist/ROOT/index.jsp": b"<h1>Tomcat</h1>\n",
    "usr/local/tomcat/webapps.dist/docs/index.html": b"docs\n",
    "usr/local/tomcat/webapps/": None,
    "usr/local/tomcat/conf/server.xml": b"<Server/>\n",
    "usr/local/tomcat/conf/old.xml": b"old\n",
    "usr/local/tomcat/logs/": None,
    "usr/local/tomcat/lib/a.jar": b"jar-a" * 100,
    "usr/local/tomcat/lib/b.jar": b"jar-b" * 100,
    "etc/hostname": b"base\n",
}

pytestmark = pytest.mark.integration

DRIVERS = [
    "copy",
    pytest.param(
        "overlay",
        marks=pytest.mark.skipif(can_mount_overlay() is not None, reason=f"overlay driver: {can_mount_overlay()}"),
    ),
]


@pytest.fixture
def env(tmp_path):
    store = ContentStore(tmp_path / "store")
    make_image(store, "tomcat:latest", BASE_FILES, config={"Cmd": ["catalina.sh", "run"], "Env": ["A=1"]})
    cs = Containers(store)
    yield store, cs
    for c in cs.list():
        cs.unmount(c)


def _mutate(root: Path) -> None:
    t = root / "usr/local/tomcat"
    for src in (t / "webapps.dist").iterdir():  # the seed's `cp -r webapps.dist/* webapps`
        subprocess.run(["cp", "-r", str(src), str(t / "webapps")], check=True)
    (t / "conf/server.xml").write_bytes(b"<Server port='8005'/>\n")  # modified
    (t / "conf/old.xml").unlink()  # deleted
    (t / "lib/a.jar").chmod(0o600)  # metadata only
    os.utime(t / "lib/b.jar", ns=(1_000_000_000, 1_000_000_000))  # mtime only
    (t / "logs").rmdir()
    (t / "logs").write_text("now a file\n")  # dir replaced by a file
    os.link(t / "conf/server.xml", t / "conf/server-link.xml")  # a hardlink inside the change
    (root / "etc/hostname").unlink()
    (root / "etc/hostname").symlink_to("/proc/sys/kernel/hostname")  # file replaced by a symlink


def _comparable(snap):
    """Directory mtimes move when their children change (in the container and when unpacking), so they are left
    out; file mtimes are compared in whole seconds, the resolution layers are written with (as docker's are)."""
    return {k: v[:6] if v[0] == "dir" else (*v[:6], v[6] // 10**9, *v[7:]) for k, v in snap.items()}


@pytest.mark.parametrize("driver", DRIVERS)
def test_commit_roundtrip_through_imgcore_and_umoci(env, driver, tmp_path):
    store, cs = env
    c = cs.create("tomcat", name="web", driver=driver)
    assert c.driver == driver
    root = cs.mount(c)
    assert (root / "usr/local/tomcat/webapps.dist/ROOT/index.jsp").read_bytes() == b"<h1>Tomcat</h1>\n"
    assert list((root / "usr/local/tomcat/webapps").iterdir()) == []
    _mutate(root)
    expected = tree_snapshot(root)

    result = commit(store, cs, c, "new_tomcat:1.0", message="newtomcat", author="xxx")
    assert result.layer is not None
    assert result.tag == "docker.io/library/new_tomcat:1.0"
    assert_valid_image(store, "new_tomcat:1.0")
    image = resolve_image(store, "new_tomcat:1.0")
    assert image.id == result.image_id
    base = resolve_image(store, "tomcat:latest")
    assert image.config.diff_ids[:-1] == base.config.diff_ids
    assert image.manifest.layers[:-1] == base.manifest.layers  # the base layers are shared, not copied
    last = image.config.history[-1]
    assert (last["comment"], last["author"], last["created_by"]) == ("newtomcat", "xxx", "catalina.sh run")
    assert image.config.data["author"] == "xxx"
    assert image.config.config["Env"] == ["A=1"]

    # imgcore: a container from the new image shows the mutated tree
    c2 = cs.create("new_tomcat:1.0", driver=driver)
    assert _comparable(tree_snapshot(cs.mount(c2))) == _comparable(expected)

    # umoci, independently, unpacks the same tree from the store (an OCI layout)
    umoci = require_tool("umoci")
    bundle = tmp_path / "bundle"
    subprocess.run(
        [umoci, "unpack", "--image", f"{store.root}:docker.io/library/new_tomcat:1.0", str(bundle)],
        check=True,
        capture_output=True,
    )
    assert _comparable(tree_snapshot(bundle / "rootfs")) == _comparable(expected)


@pytest.mark.parametrize("driver", DRIVERS)
def test_empty_commit_adds_history_but_no_layer(env, driver):
    store, cs = env
    c = cs.create("tomcat", driver=driver)
    result = commit(store, cs, c, "same:1", message="nothing changed")
    assert result.layer is None
    assert result.changes == 0
    image = resolve_image(store, "same:1")
    base = resolve_image(store, "tomcat")
    assert image.manifest.layers == base.manifest.layers
    assert image.config.diff_ids == base.config.diff_ids
    assert image.config.history[-1]["empty_layer"] is True
    assert image.id != base.id
    assert_valid_image(store, "same:1")


@pytest.mark.parametrize("driver", DRIVERS)
def test_containers_survive_a_restart_and_exec_runs_inside(env, driver):
    store, cs = env
    c = cs.create("tomcat", name="keep", driver=driver)
    (cs.mount(c) / "marker").write_text("x")
    cs.unmount(c)  # as after a reboot
    again = Containers(ContentStore(store.root)).get("keep")
    assert again.id == c.id
    root = Containers(store).mount(again)
    assert (root / "marker").read_text() == "x"
    if os.geteuid() == 0:
        sh = root / "bin" / "sh"
        sh.parent.mkdir(exist_ok=True)
        busybox = Path("/bin/busybox")
        if not busybox.exists():
            pytest.skip("no static busybox to run inside the test image")
        sh.write_bytes(busybox.read_bytes())
        sh.chmod(0o755)
        assert cs.exec(again, ["/bin/sh", "-c", 'test -f /marker && test "$A" = 1']).returncode == 0
        assert cs.exec(again, ["/bin/sh", "-c", "exit 7"]).returncode == 7
        out = cs.exec(again, ["/bin/sh", "-c", "echo out; echo err >&2; pwd"], capture=True)
        assert (out.returncode, out.stdout, out.stderr) == (0, b"out\n/\n", b"err\n")


def test_container_lookup_and_errors(env):
    _, cs = env
    c = cs.create("tomcat", name="one", driver="copy")
    assert cs.get(c.id[:12]).id == c.id
    assert cs.get("one").id == c.id
    with pytest.raises(ContainerNotFound, match="No such container: nope"):
        cs.get("nope")
    with pytest.raises(ImgcoreError, match="already in use"):
        cs.create("tomcat", name="one", driver="copy")
    with pytest.raises(ImgcoreError, match="Invalid container name"):
        cs.create("tomcat", name="../evil", driver="copy")
    with pytest.raises(ImgcoreError, match="unknown driver"):
        cs.create("tomcat", driver="zfs")
    from imgcore.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        cs.create("missing:1")
    cs.remove(c)
    assert cs.list() == []
    assert not c.path.exists()


def _cli(store, *args):
    return subprocess.run(
        [sys.executable, "-m", "imgcore", "--root", str(store.root), *args], capture_output=True, text=True, check=False
    )


def test_cli_workflow_with_docker_spelling(env):
    store, _ = env
    r = _cli(store, "create", "--driver", "copy", "--name", "c1", "tomcat")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    r = _cli(store, "mount", "c1")
    root = Path(r.stdout.strip())
    (root / "usr/local/tomcat/webapps/new.txt").write_text("hi")
    (root / "usr/local/tomcat/conf/old.xml").unlink()
    r = _cli(store, "diff", "c1")
    assert r.stdout.splitlines() == [
        "C /usr",
        "C /usr/local",
        "C /usr/local/tomcat",
        "C /usr/local/tomcat/conf",
        "D /usr/local/tomcat/conf/old.xml",
        "C /usr/local/tomcat/webapps",
        "A /usr/local/tomcat/webapps/new.txt",
    ]
    # `-m="newtomcat" -a="xxx"` after the shell removed the quotes
    r = _cli(store, "commit", "-m=newtomcat", "-a=xxx", "-c", "EXPOSE 8080", cid[:12], "new_tomcat:1.0")
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip()
    assert image_id.startswith("sha256:")
    inspect = json.loads(_cli(store, "inspect", "new_tomcat:1.0").stdout)[0]
    assert inspect["Id"] == image_id
    assert inspect["Author"] == "xxx"
    assert inspect["Comment"] == "newtomcat"
    assert "8080/tcp" in inspect["Config"]["ExposedPorts"]
    r = _cli(store, "ps", "-a")
    assert "c1" in r.stdout
    r = _cli(store, "commit", "nope", "x:1")
    assert r.returncode == 1
    assert r.stderr == "Error: No such container: nope\n"
    r = _cli(store, "commit", "c1", "Bad:Tag!")
    assert r.returncode == 1
    assert "invalid reference" in r.stderr
    r = _cli(store, "rm", "c1")
    assert r.returncode == 0
    assert "c1" not in _cli(store, "ps", "-a").stdout


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_a_killed_create_leaves_the_store_consistent(tmp_path, delay):
    """Whenever `imgcore create` is killed, the container either exists whole or not at all, and the store is sound."""
    import signal
    import time

    store = ContentStore(tmp_path / "store")
    files = {f"data/{i // 100}/f{i}": os.urandom(2048) for i in range(3000)}
    make_image(store, "big:1", files)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgcore",
            "--root",
            str(store.root),
            "create",
            "--driver",
            "copy",
            "--name",
            "victim",
            "big:1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cs = Containers(store)
    listed = [c for c in cs.list() if c.name == "victim"]
    if listed:  # it finished before the kill: then it is complete
        assert _comparable(tree_snapshot(listed[0].rootfs)) == _comparable(
            tree_snapshot(cs.layers.ensure_rootfs(resolve_image(store, "big:1")))
        )
        cs.remove(listed[0])
    assert store.fsck() == []
    c = cs.create("big:1", name="victim", driver="copy")  # the name is free again, and create works
    assert (c.rootfs / "data/0/f0").read_bytes() == files["data/0/f0"]


def test_exec_and_mount_errors_are_clear(env, monkeypatch, capsys):
    from imgcore.cli import main
    from imgcore.containers import manager as containers_mod
    from imgcore.runtime import runc as runc_mod
    from imgcore.runtime.host import RuntimeUnavailable

    store, cs = env
    root = ["--root", str(store.root)]
    assert main([*root, "create", "--driver", "copy", "--name", "box", "tomcat"]) == 0
    capsys.readouterr()
    assert main([*root, "exec", "box", "--"]) == 1
    assert capsys.readouterr().err == "Error: exec: no command given\n"
    assert main([*root, "mount", "nope"]) == 1
    assert capsys.readouterr().err == "Error: No such container: nope\n"
    # docker's exec needs a running container; a created one is refused with docker's words
    box = cs.get("box")
    assert main([*root, "exec", "box", "--", "/bin/true"]) == 1
    assert capsys.readouterr().err == f"Error: container {box.id} is not running\n"
    # the library's exec of a never-started container (a one-shot container on its rootfs): neither root (for
    # runc) nor bubblewrap is a clear error naming both
    monkeypatch.setattr(runc_mod.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(runc_mod, "find_bwrap", lambda: None)
    with pytest.raises(RuntimeUnavailable, match=r"runc needs root .*; bubblewrap is not installed"):
        cs.exec(box, ["/bin/true"])
    monkeypatch.undo()
    # the overlay driver asked for where it cannot work
    monkeypatch.setattr(containers_mod, "overlay_supported", lambda scratch: "overlayfs needs root")
    assert main([*root, "create", "--driver", "overlay", "tomcat"]) == 1
    assert capsys.readouterr().err == "Error: create: overlay driver unavailable: overlayfs needs root\n"
    assert [c.name for c in cs.list()] == ["box"]  # nothing half-made was left behind


def test_prune_removes_leftovers_of_interrupted_commands(env):
    store, cs = env
    old = cs.dir / ".tmp-0123"
    (old / "rootfs").mkdir(parents=True)
    os.utime(old, (1, 1))
    fresh = cs.layers.layers_dir / ".tmp-abcd"
    (fresh / "diff").mkdir(parents=True)  # maybe another process still unpacking: left alone
    collect.prune(store)
    assert not old.exists()
    assert fresh.exists()
    assert resolve_image(store, "tomcat").id  # the image is untouched
