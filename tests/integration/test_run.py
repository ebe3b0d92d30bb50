"""Containers that run, through the ``imgcore`` command as a user types it, with the real runc (as root).

Each test starts its containers from a small busybox image imported into a per-module store; every command is a
fresh ``imgcore`` process (so what a command leaves behind is read back as after a restart of imgcore). The
fixture force-removes every container (killing it, unmounting its overlay) when the test ends.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgcore
from imgcore.containers import manager as manager_mod
from imgcore.containers.manager import Containers
from imgcore.store import ContentStore
from tests.conftest import IN_CI, require_tool

from .test_runtime_monitor import Tmux, poll

pytestmark = [pytest.mark.integration, pytest.mark.root]

PYTHONPATH = str(Path(imgcore.__file__).resolve().parents[1])
APPLETS = ("sh", "ls", "cp", "mkdir", "cat", "echo", "id", "pwd", "sleep", "ln", "rm", "head", "grep", "wc",
           "env", "touch", "test", "true", "stty", "mknod", "dd")  # fmt: skip
PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = b"root:x:0:\napp:x:1000:\n"


def _rootfs_tar(dest: Path, extra: list[tarfile.TarInfo] | None = None) -> None:
    """busybox + its applets, /etc/passwd and /etc/group; no /sys, no /etc/hosts (the runtime makes them)."""
    busybox = Path(require_tool("busybox")).resolve().read_bytes()
    with tarfile.open(dest, "w:gz", format=tarfile.PAX_FORMAT) as tf:

        def add(name: str, data: bytes | None = None, mode: int = 0o755, link: str = "") -> None:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = 1_700_000_000, mode
            if link:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
                tf.addfile(ti)
            elif data is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))

        for d in ("bin", "etc", "root", "tmp", "dev", "proc", "home", "home/app", "usr", "usr/local"):
            add(d, mode=0o1777 if d == "tmp" else 0o755)
        add("bin/busybox", busybox)
        for applet in APPLETS:
            add(f"bin/{applet}", link="busybox")
        add("etc/passwd", PASSWD, 0o644)
        add("etc/group", GROUP, 0o644)
        add("usr/local/tomcat/webapps.dist/ROOT/index.html", b"<h1>Tomcat</h1>\n", 0o644)
        add("usr/local/tomcat/webapps.dist/docs/index.html", b"docs\n", 0o644)
        add("usr/local/tomcat/webapps", None)
        for ti in extra or ():
            tf.addfile(ti)


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("runc containers need root (the CI job runs as root)")
        pytest.skip("runc containers need root here")
    require_tool("runc")
    base = tmp_path_factory.mktemp("run")
    store = imgcore.Store(base / "store")
    tar = base / "rootfs.tar.gz"
    _rootfs_tar(tar)
    store.import_rootfs(tar, "box:1", changes=["WORKDIR /usr/local/tomcat", "ENV A=1", 'CMD ["sleep", "1000"]'])
    yield store.root
    for c in store.containers():
        c.remove(force=True)


@pytest.fixture
def root(store_root: Path) -> Iterator[Path]:
    yield store_root
    store = imgcore.Store(store_root)
    for c in store.containers():
        c.remove(force=True)


def ic(root: Path, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One ``imgcore`` command in a fresh process."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": PYTHONPATH}
    r = subprocess.run([sys.executable, "-m", "imgcore", "--root", str(root), *args], capture_output=True,
                       env=env, timeout=timeout, check=False, input=input)  # fmt: skip
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))  # fmt: skip


def ok(root: Path, *args: str) -> str:
    r = ic(root, *args)
    assert r.returncode == 0, f"imgcore {args}: {r.returncode} {r.stderr}"
    return r.stdout


def test_proc_shows_only_the_containers_processes(root: Path) -> None:
    out = ok(root, "run", "--rm", "box:1", "sh", "-c", "ls /proc | grep -E '^[0-9]+$'")
    pids = {int(p) for p in out.split()}
    assert 1 in pids
    assert max(pids) < 20, pids  # its own pid namespace: sh is 1, ls and grep the next ones
    assert str(os.getpid()) not in out.split()


def test_runtime_mounts_leave_nothing_in_diff_or_commit(root: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "hostfile").write_text("on the host\n")
    cid = ok(root, "run", "-d", "-v", f"{vol}:/data/vol:ro", "box:1").strip()
    out = ok(root, "exec", cid, "sh", "-c", "echo hi > /dev/null && cat /data/vol/hostfile && cat /etc/hostname "
             "&& test -c /dev/null && test -d /sys/fs && grep -c localhost /etc/hosts")  # fmt: skip
    assert out.splitlines()[:2] == ["on the host", cid[:12]]
    assert ok(root, "diff", cid) == ""  # no /dev/null, /sys, /etc/hosts, /etc/hostname, /etc/resolv.conf, /data
    record = json.loads((root / "imgcore" / "containers" / cid / "run.json").read_text())
    assert {"/sys", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/data", "/data/vol"} <= set(
        record["mountpoints"]
    )
    assert "/proc" not in record["mountpoints"]  # the image has /proc and /dev
    image_id = ok(root, "commit", cid, "same:1").strip()
    history = imgcore.Store(root).image(image_id).history
    assert history[-1].empty_layer  # nothing the runtime mounted is in a layer
    # a real change next to them is kept, and only it
    ok(root, "exec", cid, "sh", "-c", "echo x > /etc/added")
    assert ok(root, "diff", cid).splitlines() == ["C /etc", "A /etc/added"]
    new = imgcore.Store(root).image(ok(root, "commit", cid, "changed:1").strip())
    with new.layers[-1].open() as f, tarfile.open(fileobj=f, mode="r:gz") as tf:
        assert sorted(tf.getnames()) == ["etc", "etc/added"]


def test_workdir_env_and_user_are_applied(root: Path) -> None:
    out = ok(root, "run", "--rm", "box:1", "sh", "-c", "pwd; echo $A; id -u; echo $HOME")
    assert out.split() == ["/usr/local/tomcat", "1", "0", "/root"]
    out = ok(root, "run", "--rm", "-u", "app", "-w", "/tmp", "-e", "A=2", "-e", "B=3", "box:1",
             "sh", "-c", "pwd; echo $A$B; id -u; id -g; echo $HOME")  # fmt: skip
    assert out.split() == ["/tmp", "23", "1000", "1000", "/home/app"]
    cid = ok(root, "run", "-d", "-u", "app", "box:1").strip()
    assert ok(root, "exec", cid, "sh", "-c", "pwd; id -u").split() == ["/usr/local/tomcat", "1000"]
    out = ok(root, "exec", "-u", "root", "-w", "/", "-e", "C=4", cid, "sh", "-c", "pwd; id -u; echo $A$C")
    assert out.split() == ["/", "0", "14"]
    r = ic(root, "run", "--rm", "-u", "nobody", "box:1", "true")
    assert r.returncode == 125
    assert "nobody" in r.stderr


def test_exit_codes_are_dockers(root: Path) -> None:
    assert ic(root, "run", "--rm", "box:1", "sh", "-c", "exit 3").returncode == 3
    r = ic(root, "run", "--rm", "box:1", "nope")
    assert r.returncode == 127
    assert 'exec: "nope": executable file not found in $PATH' in r.stderr
    r = ic(root, "run", "--rm", "box:1", "/etc/passwd")
    assert r.returncode == 126
    assert "permission denied" in r.stderr
    r = ic(root, "run", "--rm", "missing:1")
    assert (r.returncode, r.stderr.strip()) == (125, "imgcore: No such image: missing:1")
    assert ic(root, "run", "--rm", "--network", "nope", "box:1").returncode == 125  # usage error
    assert ok(root, "ps", "-a", "-q") == ""  # --rm removed them all, failures included
    detached = ok(root, "run", "-d", "--rm", "box:1", "sh", "-c", "sleep 1; exit 2").strip()
    assert ok(root, "wait", detached).strip() == "2"  # a waiter that came before the exit gets the code
    assert poll(lambda: ok(root, "ps", "-a", "-q") == "", 20)  # and the container is gone
    cid = ok(root, "run", "-d", "box:1", "sh", "-c", "sleep 0.2; exit 5").strip()
    assert ok(root, "wait", cid).strip() == "5"
    r = ic(root, "exec", cid, "true")
    assert (r.returncode, r.stderr.strip()) == (1, f"Error: container {cid} is not running")
    cid2 = ok(root, "run", "-d", "box:1").strip()
    assert ic(root, "exec", cid2, "sh", "-c", "exit 4").returncode == 4
    assert ic(root, "exec", cid2, "nope").returncode == 127


def test_exec_detached_env_from_the_host_and_a_dead_monitor(root: Path) -> None:
    cid = ok(root, "run", "-d", "box:1").strip()
    assert ok(root, "exec", "-d", cid, "sh", "-c", "sleep 0.2; echo later > /tmp/bg") == ""
    poll(lambda: ic(root, "exec", cid, "cat", "/tmp/bg").stdout == "later\n", what="the detached exec")
    r = subprocess.run([sys.executable, "-m", "imgcore", "--root", str(root), "exec", "-e", "FROM_HOST", "-e",
                        "UNSET_HERE", cid, "sh", "-c", "echo $FROM_HOST; env | grep -c UNSET_HERE"],
                       capture_output=True, text=True, check=False,
                       env={"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin", "FROM_HOST": "hi"})  # fmt: skip
    assert r.stdout.split() == ["hi", "0"]
    # a monitor killed with SIGKILL: the container reads as exited (255), never as running
    st = imgcore.Store(root).container(cid).state
    os.kill(st.monitor_pid, 9)
    poll(lambda: "Exited (255)" in ok(root, "ps", "-a"), what="the dead monitor read as exited")
    assert ok(root, "ps", "-q") == ""
    pid = st.pid
    ok(root, "rm", cid)  # its orphaned process is killed with it (runc delete --force)
    poll(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
         what="the orphan killed")  # fmt: skip


def test_stop_escalates_to_sigkill_after_the_timeout(root: Path) -> None:
    cid = ok(root, "run", "-d", "box:1").strip()  # sleep as pid 1 ignores SIGTERM
    t0 = time.monotonic()
    ok(root, "stop", "-t", "1", cid)
    took = time.monotonic() - t0
    assert 1.0 <= took < 8, took
    st = imgcore.Store(root).container(cid).state
    assert (st.status, st.exit_code) == ("exited", 137)
    polite = ok(root, "run", "-d", "box:1", "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done").strip()
    t0 = time.monotonic()
    ok(root, "stop", "-t", "20", polite)
    assert time.monotonic() - t0 < 5
    assert imgcore.Store(root).container(polite).state.exit_code == 0


def test_ps_status_and_lifecycle_commands(root: Path) -> None:
    created = ok(root, "create", "--name", "fresh", "box:1").strip()
    running = ok(root, "run", "-d", "--name", "svc", "box:1").strip()
    done = ok(root, "run", "-d", "--name", "done", "box:1", "true").strip()
    ok(root, "wait", done)
    rows = {line.split()[-1]: line for line in ok(root, "ps", "-a").splitlines()[1:]}
    assert re.search(r"\"sleep 1000\"\s+.*\s+Up (Less than a second|\d+ seconds?)\s+svc$", rows["svc"])
    assert re.search(r"\"true\"\s+.*\s+Exited \(0\) (Less than a second|\d+ seconds?) ago\s+done$", rows["done"])
    assert re.search(r"\s+Created\s+fresh$", rows["fresh"])
    assert ok(root, "ps", "-q") == running[:12] + "\n"
    assert ok(root, "ps", "-a", "-q", "--filter", "status=exited") == done[:12] + "\n"
    assert ok(root, "ps", "-a", "-q", "--filter", "status=created") == created[:12] + "\n"
    ok(root, "pause", "svc")
    assert "(Paused)" in ok(root, "ps")
    assert ok(root, "ps", "-q", "--filter", "status=paused") == running[:12] + "\n"
    ok(root, "unpause", "svc")
    ok(root, "kill", "-s", "TERM", "svc")  # ignored by pid 1
    assert "Up" in ok(root, "ps")
    ok(root, "restart", "-t", "0", "svc")
    st = imgcore.Store(root).container("svc").state
    assert st.status == "running"
    info = json.loads(ok(root, "inspect", "svc"))[0]
    assert (info["Name"], info["State"]["Status"], info["Path"], info["Args"]) == ("/svc", "running", "sleep", ["1000"])
    assert info["Config"]["WorkingDir"] == "/usr/local/tomcat"
    assert info["GraphDriver"]["Data"]["MergedDir"].endswith("/merged")
    assert json.loads(ok(root, "inspect", "box:1"))[0]["Id"].startswith("sha256:")  # images first
    r = ic(root, "rm", "svc")
    assert r.returncode == 1
    assert "stop the container before removing or force remove" in r.stderr
    ok(root, "rm", "-f", "svc")
    assert "svc" not in ok(root, "ps", "-a")
    ok(root, "start", "done")
    assert ok(root, "wait", "done").strip() == "0"


def test_a_detached_rm_container_is_removed_when_it_exits(root: Path) -> None:
    """``run -d --rm``: the monitor removes the container once it exits (docker's daemon does), with no later
    ``imgcore`` command needed; ``ps --filter name=`` and ``--format`` read it as docker's."""
    cid = ok(root, "run", "-d", "--rm", "--name", "brief", "box:1", "sleep", "0.5").strip()
    assert ok(root, "ps", "--filter", "name=bri", "--format", "{{.Names}} {{.State}}") == "brief running\n"
    cdir = root / "imgcore" / "containers" / cid
    assert poll(lambda: not cdir.exists(), 20), "the exited --rm container is still there"
    assert ok(root, "ps", "-a", "-q") == ""
    # a plain detached container stays after its exit, and ps --format json has docker's fields
    done = ok(root, "run", "-d", "--name", "stays", "box:1", "true").strip()
    ok(root, "wait", done)
    row = json.loads(ok(root, "ps", "-a", "--filter", f"id={done[:6]}", "--format", "json"))
    assert (row["ID"], row["Names"], row["State"], row["Image"]) == (done[:12], "stays", "exited",
                                                                     "docker.io/library/box:1")  # fmt: skip
    assert row["Status"].startswith("Exited (0)")


def test_a_foreground_rm_run_is_seen_and_reached_from_other_commands(root: Path) -> None:
    """``run --rm`` without -d/-i/-t runs runc in the foreground with no monitor; another command still sees it
    (ps), enters it (exec) and stops it (stop escalates to SIGKILL: 137); pause, which needs a monitor, says so."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": PYTHONPATH}
    proc = subprocess.Popen([sys.executable, "-m", "imgcore", "--root", str(root), "run", "--rm", "--name", "fg",
                             "box:1", "sh", "-c", "echo started; exec sleep 1000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"started\n"  # the container's stdout is the command's own
        assert ok(root, "ps", "--format", "{{.Names}} {{.State}}") == "fg running\n"
        assert ok(root, "exec", "fg", "sh", "-c", "echo $A; pwd").split() == ["1", "/usr/local/tomcat"]
        r = ic(root, "pause", "fg")
        assert r.returncode == 1
        assert "without a monitor" in r.stderr
        ok(root, "stop", "-t", "1", "fg")  # sleep as pid 1 ignores SIGTERM: SIGKILL after 1 s
        assert proc.wait(timeout=30) == 137
    finally:
        proc.kill()
        proc.communicate()
    assert ok(root, "ps", "-a", "-q") == ""  # removed by the command that ran it


def test_logs_survive_a_restart_of_imgcore(root: Path) -> None:
    cid = ok(root, "run", "-d", "box:1", "sh", "-c", "echo out; echo err >&2; sleep 0.3; echo more; sleep 1000").strip()
    poll(lambda: "more" in ic(root, "logs", cid).stdout, what="the logs")
    r = ic(root, "logs", cid)  # a fresh process reads what the monitor wrote
    assert (r.stdout, r.stderr) == ("out\nmore\n", "err\n")
    assert ok(root, "logs", "--tail", "1", cid) == "more\n"
    stamped = ok(root, "logs", "-t", cid).splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z out", stamped[0])
    ok(root, "stop", "-t", "0", cid)
    ok(root, "start", cid)
    poll(lambda: ic(root, "logs", cid).stdout.count("more") == 2, what="the second run's logs")
    assert ok(root, "logs", cid) == "out\nmore\nout\nmore\n"


def test_cp_both_ways_and_confined_to_the_root(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    cid = ok(root, "run", "-d", "box:1").strip()
    ok(root, "exec", cid, "sh", "-c", f"ln -s {outside} /evil && ln -s ../../../../../../../../{outside} /evil2 "
       "&& mkdir -p /usr/local/tomcat/conf")  # fmt: skip
    src = tmp_path / "server.xml"
    src.write_text("<Server/>\n")
    ok(root, "cp", str(src), f"{cid}:/usr/local/tomcat/conf")  # into an existing directory
    assert ok(root, "exec", cid, "cat", "/usr/local/tomcat/conf/server.xml") == "<Server/>\n"
    ok(root, "cp", str(src), f"{cid}:/usr/local/tomcat/conf/renamed.xml")
    assert ok(root, "exec", cid, "cat", "/usr/local/tomcat/conf/renamed.xml") == "<Server/>\n"
    # through the symlinks: resolved inside the container's root, so nothing lands next to the host's secret
    for link in ("evil", "evil2"):
        ic(root, "cp", str(src), f"{cid}:/{link}/planted")
        ic(root, "cp", str(src), f"{cid}:/{link}")
        r = ic(root, "cp", f"{cid}:/{link}/secret", str(tmp_path / f"stolen-{link}"))
        assert r.returncode != 0
        assert not (tmp_path / f"stolen-{link}").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "host secret\n"
    # out of the container: a directory, and a tar on stdout
    ok(root, "cp", f"{cid}:/usr/local/tomcat/webapps.dist", str(tmp_path / "apps"))
    assert (tmp_path / "apps" / "ROOT" / "index.html").read_text() == "<h1>Tomcat</h1>\n"
    env = {"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "imgcore", "--root", str(root), "cp", f"{cid}:/etc/passwd", "-"]
    r = subprocess.run(cmd, capture_output=True, check=True, env=env)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        assert tf.getnames() == ["passwd"]
        assert tf.extractfile("passwd").read() == PASSWD  # type: ignore[union-attr]
    # a tar on stdin into a directory
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("from-tar.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"tar"))
    assert ic(root, "cp", "-", f"{cid}:/tmp", input=buf.getvalue()).returncode == 0
    assert ok(root, "exec", cid, "cat", "/tmp/from-tar.txt") == "tar"


def test_a_hostile_device_node_gives_no_access_to_the_host_device(root: Path, tmp_path: Path) -> None:
    block = next((p for p in sorted(Path("/sys/block").iterdir()) if (p / "dev").is_file()), None)
    if block is None:
        pytest.skip("no block device on this host")
    major, minor = (int(x) for x in (block / "dev").read_text().split(":"))
    node = tarfile.TarInfo("sda")
    node.type, node.devmajor, node.devminor, node.mode = tarfile.BLKTYPE, major, minor, 0o666
    fifo = tarfile.TarInfo("fifo")
    fifo.type, fifo.mode = tarfile.FIFOTYPE, 0o644
    tar = tmp_path / "hostile.tar.gz"
    _rootfs_tar(tar, [node, fifo])
    imgcore.Store(root).import_rootfs(tar, "hostile:1", changes=['CMD ["sh"]'])
    # as root the layer keeps the node and the FIFO (nothing is skipped) ...
    r = ic(root, "run", "--rm", "hostile:1", "sh", "-c", "ls -l /sda /fifo; head -c 512 /sda | wc -c")
    assert r.returncode != 0 or r.stdout.split()[-1] == "0"
    assert "skipped" not in r.stderr
    listing = r.stdout
    assert re.search(rf"^b.*{major},\s*{minor}.*/sda$", listing, re.M), listing
    assert re.search(r"^p.*/fifo$", listing, re.M), listing
    # ... and the runtime's device allow-list refuses it: no read, no write, no mknod of another
    r = ic(root, "run", "--rm", "hostile:1", "sh", "-c", "head -c 1 /sda")
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr
    r = ic(root, "run", "--rm", "hostile:1", "sh", "-c", "echo x > /sda")
    assert r.returncode != 0
    r = ic(root, "run", "--rm", "hostile:1", "sh", "-c", f"mknod /tmp/x b {major} {minor} && head -c 1 /tmp/x")
    assert r.returncode != 0


def test_commit_of_a_running_container(root: Path) -> None:
    cid = ok(root, "run", "-d", "box:1", "sh", "-c", "sleep 1000").strip()
    ok(root, "exec", cid, "sh", "-c", "cp -r webapps.dist/* webapps")
    image = ok(root, "commit", "-m=newtomcat", "-a=xxx", cid, "new_tomcat:1.0").strip()
    new = imgcore.Store(root).image(image)
    assert (new.history[-1].created_by, new.history[-1].comment, new.history[-1].author) == (
        "sh -c sleep 1000", "newtomcat", "xxx")  # fmt: skip
    assert imgcore.Store(root).container(cid).status == "running"  # paused for the commit, thawed after
    ok(root, "commit", "--pause=false", cid, "nopause:1")
    assert ok(root, "run", "--rm", "new_tomcat:1.0", "ls", "webapps").split() == ["ROOT", "docs"]


def test_store_run_from_the_library(root: Path) -> None:
    store = imgcore.Store(root)
    r = store.run("box:1", ["sh", "-c", "echo $A; exit 2"], remove=True)
    assert isinstance(r, imgcore.ExecResult)
    assert (r.returncode, r.stdout) == (2, b"1\n")
    box = store.run("box:1", detach=True, name="lib")
    assert isinstance(box, imgcore.Container)
    assert box.status == "running"
    out = box.exec(["sh", "-c", "pwd; echo oops >&2"], capture=True)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"/usr/local/tomcat\n", b"oops\n")
    assert box.stop(timeout=0) == 137
    assert box.wait() == 137
    with pytest.raises(imgcore.errors.ImgcoreError, match=f"container {box.id} is not running"):
        box.exec(["true"])
    assert Containers(ContentStore(root)).state(Containers(ContentStore(root)).get("lib")).status == "exited"


@pytest.mark.parametrize("sandbox", ["runc", "bwrap"])
def test_library_exec_of_a_never_started_container_is_a_real_container(
    root: Path, sandbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Container.exec`` before any start (the README's create + exec) runs a one-shot container on the
    container's rootfs: its own pid namespace and /proc, the runtime's /dev, no CAP_SYS_ADMIN (so no way to mount
    the host's /proc, which a chroot allowed), the image's WorkingDir and Env, and nothing the runtime made in
    ``diff``. Under bubblewrap (the fallback without root) the same holds as far as bubblewrap allows."""
    if sandbox == "bwrap":
        bwrap = require_tool("bwrap")
        monkeypatch.setattr(manager_mod, "find_sandbox", lambda *a, **k: bwrap)
    store = imgcore.Store(root)
    box = store.create("box:1", name=f"fresh-{sandbox}")
    out = box.exec(["sh", "-c", "pwd; echo $A; echo $$; ls /proc | grep -cE '^[0-9]+$'; echo hi > /dev/null; "
                    "test -c /dev/null && echo chardev"], capture=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().split()
    assert lines[:2] == ["/usr/local/tomcat", "1"]  # WORKDIR, ENV
    assert int(lines[2]) <= 2  # its own pid namespace (under bubblewrap, pid 1 is bubblewrap's init)
    assert int(lines[3]) < 10  # only its own processes in /proc
    assert lines[4] == "chardev"
    escape = box.exec(["sh", "-c", "mkdir -p /mnt/hostproc && mount -t proc proc /mnt/hostproc && "
                       "ls /mnt/hostproc/1/root/"], capture=True)  # fmt: skip
    if sandbox == "runc":  # bwrap as root keeps root's capabilities in the sandbox: only runc drops them
        assert escape.returncode != 0
        assert b"ermission denied" in escape.stderr or b"not permitted" in escape.stderr
    assert box.exec(["sh", "-c", "exit 4"]).returncode == 4
    if sandbox == "runc":  # bubblewrap as root cannot switch users (it says so)
        assert box.exec(["id", "-u"], user="app", capture=True).stdout == b"1000\n"
    assert box.status == "created"  # still never started: docker start works as before
    box.exec(["sh", "-c", "rm -rf /mnt; echo x > /root/made"])
    assert [(ch.kind, ch.path) for ch in box.diff()] == [("C", "/root"), ("A", "/root/made")]


# ------------------------------------------------------------------------------------------ interactive (tmux)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(require_tool("tmux"), tmp_path / "tmux.sock")
    yield t
    subprocess.run([t.tmux, "-S", str(t.sock), "kill-server"], capture_output=True, check=False)


def _shell(root: Path, *args: str) -> str:
    # the pane stays open a while after imgcore returns, so the screen and the exit code can still be read
    return (f"env -i PATH=/usr/bin:/bin TERM=xterm PYTHONPATH={PYTHONPATH} {sys.executable} -m imgcore --root {root} "
            f"{' '.join(args)}; echo EXIT=$?; sleep 30")  # fmt: skip


def test_interactive_run_exec_detach_and_attach(root: Path, tmux: Tmux) -> None:
    tmux.run("run", _shell(root, "run", "-it", "--name", "inter", "box:1", "sh"))
    tmux("send-keys", "-t", "run", "echo hel''lo; pwd", "Enter")
    tmux.wait_line("run", r"hello")
    tmux.wait_line("run", r"/usr/local/tomcat")
    tmux("send-keys", "-t", "run", "C-p", "C-q")
    tmux.wait_line("run", r".*read escape sequence")
    tmux.wait_line("run", r"EXIT=1")
    assert imgcore.Store(root).container("inter").status == "running"

    tmux.run("exec", _shell(root, "exec", "-it", "inter", "/bin/sh"))
    tmux("send-keys", "-t", "exec", "cp -r webapps.dist/* webapps && echo co''pied", "Enter")
    tmux.wait_line("exec", r"copied")
    tmux("send-keys", "-t", "exec", "C-p", "C-q")
    tmux.wait_line("exec", r".*read escape sequence")

    tmux.run("attach", _shell(root, "attach", "inter"))
    time.sleep(0.3)
    tmux("send-keys", "-t", "attach", "ls webapps", "Enter")
    tmux.wait_line("attach", r".*ROOT.*docs.*")
    tmux("send-keys", "-t", "attach", "exit 6", "Enter")
    tmux.wait_line("attach", r"EXIT=6")
    assert imgcore.Store(root).container("inter").state.exit_code == 6
    changes = ok(root, "diff", "inter").splitlines()
    assert "A /usr/local/tomcat/webapps/ROOT/index.html" in changes
    assert not any(line.endswith(("/etc/hosts", "/sys", "/dev/pts")) for line in changes)
