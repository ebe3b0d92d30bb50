"""Bundles built by imgcore.runtime, run by a real runc (Debian's) on a tiny busybox rootfs.

Each container is one foreground ``runc run`` with stdio captured (about 40 ms). Needs root and runc; outside CI
a missing tool or root skips, under CI it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from imgcore.runtime.bwrap import bwrap_command
from imgcore.runtime.host import host_env
from imgcore.runtime.runc import Runtime, RuntimeFailed, find_runtime, start_failure_exit_code
from imgcore.runtime.spec import RUNTIME_MOUNTPOINTS, RunOptions, build_spec, missing_mountpoints, write_bundle
from tests.conftest import IN_CI, can_mount_overlay, require_tool

pytestmark = [pytest.mark.integration, pytest.mark.root]

APPLETS = (
    "sh",
    "ls",
    "ps",
    "id",
    "pwd",
    "env",
    "cat",
    "echo",
    "stat",
    "mount",
    "ip",
    "touch",
    "wc",
    "hostname",
    "grep",
    "cut",
    "sort",
    "tail",
    "true",
)


def _need_root() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("runc integration tests need root -- required under CI")
        pytest.skip("runc needs root")


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    require_tool("runc")
    _need_root()
    return find_runtime(root=tmp_path / "runc-state")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """busybox (a copy: the container must not be able to write the host's binary) and a few accounts."""
    busybox = require_tool("busybox")
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
    return root


def run(
    runtime: Runtime, rootfs: Path, cdir: Path, config: Mapping[str, Any], **opts: Any
) -> subprocess.CompletedProcess[bytes]:
    cid = "t" + uuid.uuid4().hex[:15]
    spec = build_spec({"config": dict(config)}, rootfs, RunOptions(container_id=cid, **opts))
    bundle = write_bundle(cdir, spec)
    proc = runtime.run(bundle, cid, timeout=30)
    assert runtime.state(cid) is None, "runc run left state behind"
    return proc


def sh(runtime: Runtime, rootfs: Path, tmp_path: Path, script: str, **config: Any) -> tuple[int, str, str]:
    proc = run(runtime, rootfs, tmp_path / "c", {"Cmd": ["sh", "-c", script], **config})
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_proc_shows_only_the_containers_processes(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    rc, out, err = sh(runtime, rootfs, tmp_path, "ls /proc | grep -E '^[0-9]+$'; echo --; ps -o pid; echo --")
    assert rc == 0, err
    pids_text, ps, _ = out.split("--\n")
    pids = {int(p) for p in pids_text.split()}
    assert 1 in pids
    assert max(pids) < 20, pids  # a fresh pid namespace: none of the host's pids
    assert str(os.getpid()) not in pids_text.split()
    ps_pids = [int(p) for p in ps.split()[1:]]
    assert 1 in ps_pids
    assert len(ps_pids) <= 3, ps  # sh (pid 1) and ps itself


def test_dev_null_is_a_working_char_device(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    rc, out, err = sh(runtime, rootfs, tmp_path, "echo hi > /dev/null && stat -c '%F %t:%T' /dev/null /dev/zero")
    assert rc == 0, err
    assert out.splitlines() == ["character special file 1:3", "character special file 1:5"]


def test_workdir_env_and_user_are_applied(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    config = {"WorkingDir": "/srv/app", "User": "app", "Env": ["FOO=image", "BAR=kept", "PATH=/bin"]}
    proc = run(runtime, rootfs, tmp_path / "c", {"Cmd": ["sh", "-c", "pwd; id; env | sort"], **config},
               env=("FOO=override",), hostname="web1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "/srv/app"
    assert lines[1] == "uid=1000(app) gid=1000(app) groups=50(staff)"
    env = dict(line.split("=", 1) for line in lines[2:])
    assert env["FOO"] == "override"
    assert env["BAR"] == "kept"
    assert env["PATH"] == "/bin"
    assert env["HOME"] == "/home/app"
    assert env["HOSTNAME"] == "web1"
    assert (rootfs / "srv" / "app").is_dir()  # created in the rootfs, as docker does


def test_numeric_user_and_group(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    rc, out, err = sh(runtime, rootfs, tmp_path, "id -u; id -g; id -G", User="4242:50")
    assert rc == 0, err
    assert out.split() == ["4242", "50", "50"]


def test_exit_code_propagates(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    assert sh(runtime, rootfs, tmp_path, "exit 3")[0] == 3
    # a process killed by a signal: the shell that waits for it reports 128+9
    assert sh(runtime, rootfs, tmp_path, "sh -c 'kill -9 $$'; exit $?")[0] == 137


@pytest.mark.parametrize(
    ("cmd", "needle", "docker_code"),
    [
        (["nope"], 'exec: "nope": executable file not found in $PATH', 127),
        (["/nope"], "no such file or directory", 127),
        (["/etc/passwd"], 'exec: "/etc/passwd": permission denied', 126),
    ],
)
def test_start_failures(
    runtime: Runtime, rootfs: Path, tmp_path: Path, cmd: list[str], needle: str, docker_code: int
) -> None:
    proc = run(runtime, rootfs, tmp_path / "c", {"Cmd": cmd})
    err = proc.stderr.decode().replace('\\"', '"')  # runc logs with logrus, which escapes quotes
    assert proc.returncode == 1  # runc's own status; the CLI maps the message
    assert "unable to start container process" in err
    assert needle in err
    assert start_failure_exit_code(err) == docker_code


_PROBE_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")


def _host_block_device() -> tuple[int, int]:
    """major:minor of a block device the host's root can open: the disk under / if allowed, else zram/loop."""
    dev = Path("/").stat().st_dev
    for major, minor in [(os.major(dev), os.minor(dev)), (253, 0), (7, 0)]:
        probe = _PROBE_DIR / f"imgcore-probe-{uuid.uuid4().hex}"
        try:
            os.mknod(probe, stat.S_IFBLK | 0o400, os.makedev(major, minor))
            with probe.open("rb"):
                return major, minor
        except OSError:
            continue
        finally:
            probe.unlink(missing_ok=True)
    pytest.skip("no block device the host can open (needed as the hostile node and its control)")


@pytest.mark.parametrize("node", ["disk", "mem", "kmsg"])
def test_hostile_device_nodes_cannot_be_opened(runtime: Runtime, rootfs: Path, tmp_path: Path, node: str) -> None:
    kind, (major, minor) = {
        "disk": (stat.S_IFBLK, _host_block_device()),  # the host's disk (or another block device it can open)
        "mem": (stat.S_IFCHR, (1, 1)),  # /dev/mem
        "kmsg": (stat.S_IFCHR, (1, 11)),
    }[node]
    os.mknod(rootfs / "sda", kind | 0o666, os.makedev(major, minor))
    # Never write to it: `true >> /sda` only opens it for writing (if the cgroup failed, nothing is written).
    rc, out, err = sh(runtime, rootfs, tmp_path, "head -c 1 /sda > /dev/null; echo rc=$?; true >> /sda; echo rc=$?")
    assert rc == 0
    assert err.count("Operation not permitted") == 2, err  # EPERM from the device cgroup, not EACCES
    assert out.split() == ["rc=1", "rc=1"]


def test_device_control_the_same_node_opens_without_the_cgroup_rule(
    runtime: Runtime, rootfs: Path, tmp_path: Path
) -> None:
    """The control for the test above: with a rule allowing block reads, the very same node is readable, so
    it is the spec's device cgroup that stops it (not the filesystem, not the host's own restrictions)."""
    major, minor = _host_block_device()
    os.mknod(rootfs / "sda", stat.S_IFBLK | 0o444, os.makedev(major, minor))
    cid = "d" + uuid.uuid4().hex[:15]
    spec = build_spec({"config": {"Cmd": ["sh", "-c", "true < /sda && echo opened"]}}, rootfs,
                      RunOptions(container_id=cid))  # fmt: skip
    spec["linux"]["resources"]["devices"].append(
        {"allow": True, "type": "b", "major": major, "minor": minor, "access": "r"}
    )
    proc = runtime.run(write_bundle(tmp_path / "c", spec), cid, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "opened", proc.stderr


def test_sys_is_read_only(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    script = "touch /sys/imgcore 2>&1; echo 1 > /sys/kernel/uevent_helper; grep -E ' /sys(/fs/cgroup)? ' /proc/mounts"
    _, out, err = sh(runtime, rootfs, tmp_path, script)
    assert "Read-only file system" in out + err
    mounts = [line.split() for line in out.splitlines() if line.startswith(("sysfs", "tmpfs", "cgroup"))]
    assert any(m[1] == "/sys" and m[3].split(",")[0] == "ro" for m in mounts), out


def test_masked_and_read_only_proc_paths(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    # Only what this kernel has (no /proc/kcore here, for one); the host's copies are not empty.
    files = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/interrupts") if Path(p).exists()]
    assert "/proc/interrupts" in files
    assert Path("/proc/interrupts").read_text()
    script = (
        f"for f in {' '.join(files)}; do wc -c < $f; done; ls -A /sys/firmware | wc -l; "
        "echo x > /proc/sys/kernel/domainname; echo rc=$?; grep -E ' /proc/(sys|bus) ' /proc/mounts"
    )
    _, out, err = sh(runtime, rootfs, tmp_path, script)
    lines = out.splitlines()
    n = len(files)
    assert lines[:n] == ["0"] * n, out  # /dev/null over masked files
    assert lines[n] == "0", out  # an empty tmpfs over a masked directory
    assert Path("/sys/firmware").is_dir()
    assert lines[n + 1] == "rc=1"
    assert "Read-only file system" in err
    mounts = {m.split()[1]: m.split()[3] for m in lines[n + 2 :]}
    assert mounts["/proc/sys"].startswith("ro")
    assert mounts["/proc/bus"].startswith("ro")


def test_private_network_has_only_loopback(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    rc, out, err = sh(runtime, rootfs, tmp_path, "ip -o link | cut -d: -f2; hostname; cat /etc/hostname")
    assert rc == 0, err
    words = out.split()
    assert words[0] == "lo"
    assert len(words) == 3
    assert words[1] == words[2]


def test_volume_binds_and_read_only(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "host-data"
    src.mkdir()
    (src / "f").write_text("from the host\n")
    rw = tmp_path / "host-rw"
    rw.mkdir()
    script = "cat /data/f; touch /data/x; touch /mnt/deep/rw/y"
    proc = run(runtime, rootfs, tmp_path / "c", {"Cmd": ["sh", "-c", script]},
               volumes=(f"{src}:/data:ro", f"{rw}:/mnt/deep/rw"))  # fmt: skip
    assert proc.stdout.decode() == "from the host\n"
    assert "Read-only file system" in proc.stderr.decode()
    assert not (src / "x").exists()
    assert (rw / "y").exists()
    assert (rootfs / "mnt" / "deep" / "rw").is_dir()  # runc made the mountpoint (and its parents) in the rootfs


def test_runtime_writes_only_the_listed_mountpoints_into_the_rootfs(
    runtime: Runtime, rootfs: Path, tmp_path: Path
) -> None:
    (rootfs / "etc" / "hosts").write_text("the image's own\n")  # present: runc mounts over it, creates nothing
    vol = tmp_path / "vol"
    vol.mkdir()
    cid = "m" + uuid.uuid4().hex[:15]
    spec = build_spec({"config": {"Cmd": ["true"]}}, rootfs,
                      RunOptions(container_id=cid, volumes=(f"{vol}:/mnt/a/b",)))  # fmt: skip
    expected = missing_mountpoints(rootfs, spec)
    assert expected == ["/dev", "/etc/hostname", "/etc/resolv.conf", "/mnt", "/mnt/a", "/mnt/a/b", "/proc", "/sys"]
    before = {"/" + str(p.relative_to(rootfs)) for p in rootfs.rglob("*")}
    proc = runtime.run(write_bundle(tmp_path / "c", spec), cid, timeout=30)
    assert proc.returncode == 0, proc.stderr
    created = {"/" + str(p.relative_to(rootfs)) for p in rootfs.rglob("*")} - before
    assert sorted(created) == expected
    assert (rootfs / "etc" / "hosts").read_text() == "the image's own\n"
    assert set(created) - {"/mnt", "/mnt/a", "/mnt/a/b"} <= set(RUNTIME_MOUNTPOINTS)
    for f in ("/etc/hostname", "/etc/resolv.conf"):
        assert (rootfs / f.lstrip("/")).stat().st_size == 0  # empty mountpoints; the content lives in CDIR
    assert list((rootfs / "dev").iterdir()) == []  # the device nodes were in runc's tmpfs


def test_image_path_never_reaches_host_helpers(
    runtime: Runtime, rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile image plants `runc` and `mount` in a directory its Env PATH names (inside the rootfs and by its
    host path); the caller's PATH and LD_PRELOAD point there too. None of it may be run or loaded."""
    marker = tmp_path / "PWNED"
    evil = rootfs / "evil"
    evil.mkdir()
    for tool in ("runc", "mount", "umount", "ip"):
        (evil / tool).write_text(f"#!/bin/sh\necho {tool} >> {marker}\n")
        (evil / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{evil}:{os.environ.get('PATH', '')}")
    monkeypatch.setenv("LD_PRELOAD", str(evil / "libevil.so"))
    chosen = find_runtime(root=tmp_path / "runc-state2")
    assert chosen.path == Path(shutil.which("runc", path=host_env()["PATH"]) or "")
    assert not str(chosen.path).startswith(str(rootfs))
    config = {"Env": [f"PATH=/evil:{evil}:/bin", f"LD_PRELOAD={evil}/libevil.so"]}
    proc = run(chosen, rootfs, tmp_path / "c", {"Cmd": ["sh", "-c", "echo $PATH"], **config})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == f"/evil:{evil}:/bin"  # the image's PATH is the container's only
    assert "libevil" not in proc.stderr.decode()  # ld.so would complain if runc had been given LD_PRELOAD
    assert not marker.exists()


def test_bwrap_fallback_runs_the_same_spec(rootfs: Path, tmp_path: Path) -> None:
    bwrap = require_tool("bwrap")
    cid = "b" + uuid.uuid4().hex[:15]
    script = ("pwd; echo $FOO; ls /proc | grep -E '^[0-9]+$' | sort -n | tail -1; cat /etc/hostname; "
              "cat /proc/interrupts | wc -c; echo hi > /dev/null")  # fmt: skip
    config = {"Cmd": ["sh", "-c", script], "WorkingDir": "/w", "Env": ["FOO=bar"]}
    spec = build_spec({"config": config}, rootfs, RunOptions(container_id=cid))
    bundle = write_bundle(tmp_path / "c", spec)
    cmd = bwrap_command(json.loads((bundle / "config.json").read_text()), bwrap)
    proc = subprocess.run(cmd.argv, env=host_env(), capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0 and "Operation not permitted" in proc.stderr and not IN_CI:
        pytest.skip(f"bwrap cannot create namespaces here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "/w"
    assert lines[1] == "bar"
    assert int(lines[2]) < 20  # a private pid namespace
    assert lines[3] == cid[:12]
    assert lines[4] == "0"  # masked (bwrap binds /dev/null nodev: reading it is refused, nothing leaks)


def test_hostile_symlinks_on_mountpoints_stay_in_the_rootfs(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    """The image's /etc/hosts and a volume destination are symlinks to host paths: runc must resolve them inside
    the rootfs (securejoin), so nothing is mounted over, or created at, the host paths."""
    host_hosts = tmp_path / "host-hosts"
    host_hosts.write_text("host file, must stay untouched\n")
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (rootfs / "etc" / "hosts").symlink_to(str(host_hosts))
    (rootfs / "data").symlink_to(str(host_dir))
    src = tmp_path / "vol"
    src.mkdir()
    (src / "f").write_text("vol\n")
    proc = run(runtime, rootfs, tmp_path / "c", {"Cmd": ["sh", "-c", "cat /etc/hosts; cat /data/f"]},
               volumes=(f"{src}:/data",))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert out.startswith("127.0.0.1\tlocalhost\n")
    assert out.endswith("vol\n")
    assert host_hosts.read_text() == "host file, must stay untouched\n"
    assert list(host_dir.iterdir()) == []
    # the mountpoints were made at the link targets *inside* the rootfs
    assert (rootfs / str(host_hosts).lstrip("/")).is_file()
    assert (rootfs / str(host_dir).lstrip("/")).is_dir()


def test_runtime_wrappers_state_pause_ps_kill_delete(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    cid = "w" + uuid.uuid4().hex[:15]
    spec = build_spec({"config": {"Cmd": ["sleep", "30"]}}, rootfs, RunOptions(container_id=cid))
    (rootfs / "bin" / "sleep").symlink_to("busybox")
    bundle = write_bundle(tmp_path / "c", spec)
    # -d: the container keeps runc's stdio, so no pipe (we would wait for its EOF): a file.
    with (tmp_path / "err").open("wb") as err:
        started = runtime.run(bundle, cid, stdout=subprocess.DEVNULL, stderr=err, extra=("-d",), timeout=30)
    try:
        assert started.returncode == 0, (tmp_path / "err").read_text()
        state = runtime.state(cid)
        assert state is not None
        assert state["status"] == "running"
        assert state["id"] == cid
        pids = runtime.ps(cid)
        assert pids == [state["pid"]]
        runtime.pause(cid)
        assert (runtime.state(cid) or {})["status"] == "paused"
        runtime.resume(cid)
        assert (runtime.state(cid) or {})["status"] == "running"
        runtime.kill(cid, "KILL")
        for _ in range(200):
            if (runtime.state(cid) or {}).get("status") == "stopped":
                break
            time.sleep(0.01)
        assert (runtime.state(cid) or {})["status"] == "stopped"
    finally:
        runtime.delete(cid, force=True)
    assert runtime.state(cid) is None
    runtime.delete(cid)  # deleting an unknown container is not an error
    with pytest.raises(RuntimeFailed, match="does not exist"):
        runtime.kill(cid, "TERM")


def test_bwrap_fallback_without_root(rootfs: Path) -> None:
    """The fallback as an unprivileged user (nobody, via setpriv): the spec's user is only a user-namespace
    mapping, and the command says so."""
    bwrap = require_tool("bwrap")
    setpriv = require_tool("setpriv")
    _need_root()  # to become nobody
    base = Path(tempfile.mkdtemp(prefix="imgcore-bwrap-"))  # pytest's tmp dirs are 0700: nobody cannot enter
    try:
        base.chmod(0o755)
        shutil.copytree(rootfs, base / "rootfs", symlinks=True)
        (base / "rootfs").chmod(0o755)
        for p in [base / "rootfs", *(base / "rootfs").rglob("*")]:  # an unprivileged user's rootfs is their own
            os.chown(p, 65534, 65534, follow_symlinks=False)
        script = "id -u; id -g; echo $FOO; cat /etc/hostname; ls /proc | grep -E '^[0-9]+$' | sort -n | tail -1"
        config = {"Cmd": ["sh", "-c", script], "User": "app", "Env": ["FOO=bar"]}
        spec = build_spec({"config": config}, base / "rootfs", RunOptions(container_id="nobody0123456789"))
        bundle = write_bundle(base / "c", spec)
        cmd = bwrap_command(json.loads((bundle / "config.json").read_text()), bwrap, unprivileged=True)
        assert any("cannot switch users" in w for w in cmd.warnings)
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd.argv]
        proc = subprocess.run(argv, env=host_env(), capture_output=True, text=True, timeout=30, check=False, cwd="/")
        if proc.returncode != 0 and "Operation not permitted" in proc.stderr and not IN_CI:
            pytest.skip(f"unprivileged user namespaces are not available here: {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["1000", "1000", "bar", "nobody012345", *proc.stdout.split()[4:]]
        assert int(proc.stdout.split()[4]) < 20
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("with_seccomp", [True, False])
def test_seccomp_denies_new_namespaces(runtime: Runtime, rootfs: Path, tmp_path: Path, with_seccomp: bool) -> None:
    """Creating a user namespace needs no capability, only the seccomp filter stops it (the control run without
    the filter shows the kernel would allow it)."""
    (rootfs / "bin" / "unshare").symlink_to("busybox")
    cid = "s" + uuid.uuid4().hex[:15]
    spec = build_spec({"config": {"Cmd": ["sh", "-c", "unshare -U true; echo rc=$?"], "User": "app"}}, rootfs,
                      RunOptions(container_id=cid))  # fmt: skip
    if not with_seccomp:
        del spec["linux"]["seccomp"]
    proc = runtime.run(write_bundle(tmp_path / "c", spec), cid, timeout=30)
    assert proc.returncode == 0, proc.stderr
    if with_seccomp:
        assert proc.stdout.decode().split() == ["rc=1"]
        assert "Operation not permitted" in proc.stderr.decode()
    else:
        assert proc.stdout.decode().split() == ["rc=0"], proc.stderr


def test_killed_container_exits_128_plus_signal(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    (rootfs / "bin" / "sleep").symlink_to("busybox")
    cid = "k" + uuid.uuid4().hex[:15]
    spec = build_spec({"config": {"Cmd": ["sleep", "30"]}}, rootfs, RunOptions(container_id=cid))
    bundle = write_bundle(tmp_path / "c", spec)
    proc = subprocess.Popen(runtime.argv("run", "--bundle", str(bundle), cid), env=runtime.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        for _ in range(300):
            if (runtime.state(cid) or {}).get("status") == "running":
                break
            time.sleep(0.01)
        runtime.kill(cid, "KILL")
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 137, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        runtime.delete(cid, force=True)


def test_overlay_rootfs_upper_holds_only_mountpoints_and_writes(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    """The real set-up: the rootfs is an overlay mount. runc's mountpoints land in the upper dir (with the
    directories they live in, copied up), beside what the process wrote; missing_mountpoints names them."""
    reason = can_mount_overlay()
    if reason is not None:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={rootfs},upperdir={upper},workdir={work}",
                    str(merged)], check=True, env=host_env())  # fmt: skip
    try:
        cid = "o" + uuid.uuid4().hex[:15]
        spec = build_spec({"config": {"Cmd": ["sh", "-c", "echo data > /written"]}}, merged,
                          RunOptions(container_id=cid))  # fmt: skip
        expected = missing_mountpoints(merged, spec)
        proc = runtime.run(write_bundle(tmp_path / "c", spec), cid, timeout=30)
        assert proc.returncode == 0, proc.stderr
        in_upper = sorted("/" + str(p.relative_to(upper)) for p in upper.rglob("*"))
        assert in_upper == sorted([*expected, "/etc", "/written"])  # /etc: copied up for its new children
    finally:
        subprocess.run(["umount", str(merged)], check=True, env=host_env())
