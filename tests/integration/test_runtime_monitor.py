"""The container monitor with the real runc (as root): start, logs, exit codes, stop, kill, pause, exec, attach.

Every container runs a tiny busybox rootfs (built once per session, shared read-only) from a bundle made with
``runc spec``. Interactive use is driven through a real terminal: a tmux session runs a small driver script
that attaches (or execs with a tty), the test types into it with ``send-keys`` and reads the screen with
``capture-pane -p``. Fixtures remove every container with ``runc delete --force`` and end the monitors they
started (by pid).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgcore.runtime import attach as attach_mod
from imgcore.runtime import lifecycle, logs
from imgcore.runtime._state import lock_held
from tests.conftest import IN_CI, require_tool

pytestmark = [pytest.mark.integration, pytest.mark.root]

PYTHONPATH = str(Path(lifecycle.__file__).resolve().parents[2])
APPLETS = ("sh", "echo", "sleep", "cat", "true", "false", "stty", "env", "ls", "yes", "head")


def poll(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


@dataclass
class Ctr:
    cdir: Path
    cid: str
    runc: str
    root: Path

    def start(self, tty: bool = False, open_stdin: bool = False) -> lifecycle.State:
        return lifecycle.start(self.cdir, self.cid, self.runc, self.root, tty=tty, open_stdin=open_stdin)

    def runc_state(self) -> dict[str, object] | None:
        r = subprocess.run([self.runc, "--root", str(self.root), "state", self.cid], capture_output=True, text=True,
                           check=False)  # fmt: skip
        return json.loads(r.stdout) if r.returncode == 0 else None


@pytest.fixture(scope="session")
def runtime_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path, dict[str, object]]:
    """(runc path, runc --root, shared rootfs, a `runc spec` template)."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("runc containers need root (the CI job runs as root)")
        pytest.skip("runc containers need root here")
    runc = require_tool("runc")
    busybox = require_tool("busybox")
    base = tmp_path_factory.mktemp("rt")
    rootfs = base / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        (rootfs / d).mkdir()
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    subprocess.run([runc, "spec", "--bundle", str(base)], check=True)
    template = json.loads((base / "config.json").read_text())
    return runc, base / "runc-root", rootfs, template


@pytest.fixture
def make(runtime_env: tuple[str, Path, Path, dict[str, object]], tmp_path: Path) -> Iterator[Callable[..., Ctr]]:
    runc, root, rootfs, template = runtime_env
    made: list[Ctr] = []

    def factory(script: str | list[str], tty: bool = False, deep: bool = False) -> Ctr:
        cid = "t" + uuid.uuid4().hex[:12]
        cdir = (tmp_path / ("d" * 60) / ("e" * 60) if deep else tmp_path) / cid
        (cdir / "bundle").mkdir(parents=True)
        spec = json.loads(json.dumps(template))
        spec["process"]["args"] = ["sh", "-c", script] if isinstance(script, str) else script
        spec["process"]["terminal"] = tty
        spec["root"] = {"path": str(rootfs), "readonly": True}
        (cdir / "bundle" / "config.json").write_text(json.dumps(spec))
        ctr = Ctr(cdir, cid, runc, root)
        made.append(ctr)
        return ctr

    yield factory
    for ctr in made:
        subprocess.run([runc, "--root", str(root), "delete", "--force", ctr.cid], capture_output=True, check=False)
        with contextlib.suppress(FileNotFoundError, ValueError):
            for state_file in [ctr.cdir / "state.json", *ctr.cdir.glob("exec-*.state.json")]:
                pid = int(json.loads(state_file.read_text()).get("monitor_pid") or 0)
                if pid and lock_held(ctr.cdir / ("monitor.lock" if state_file.name == "state.json"
                                                 else state_file.name.replace(".state.json", ".lock"))):  # fmt: skip
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def _py(code: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh Python process (a new imgcore process, as after a restart)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": PYTHONPATH}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          check=False, **kw)  # type: ignore[call-overload, no-any-return]  # fmt: skip


def monitor_connections(sock: Path) -> int:
    """How many clients the monitor has accepted on ``sock`` (its accepted sockets carry the bound name)."""
    lines = [line for line in Path("/proc/net/unix").read_text().splitlines() if line.endswith(" " + str(sock))]
    return max(0, len(lines) - 1)  # minus the listener


def catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (its SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def read_logs(cdir: Path, **kw: object) -> tuple[bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    logs.read(cdir, stdout=out, stderr=err, **kw)  # type: ignore[arg-type]
    return out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ start and state


def test_detached_container_outlives_its_starter(make: Callable[..., Ctr]) -> None:
    ctr = make("echo up; sleep 100")
    r = _py(f"from imgcore.runtime import lifecycle as l; s = l.start({str(ctr.cdir)!r}, {ctr.cid!r}, "
            f"{ctr.runc!r}, {str(ctr.root)!r}); print(s.status, s.monitor_pid, s.pid)")  # fmt: skip
    assert r.returncode == 0, r.stderr
    status, monitor_pid, pid = r.stdout.split()
    assert status == "running"
    # the starter has exited; the monitor lives on in its own session, re-parented away from us
    st = lifecycle.state(ctr.cdir)
    assert st.status == "running"
    assert st.monitor_pid == int(monitor_pid)
    assert st.pid == int(pid)
    assert os.getsid(st.monitor_pid) != os.getsid(0)
    assert ctr.runc_state() is not None
    assert ctr.runc_state()["status"] == "running"  # type: ignore[index]
    # the container's init is the monitor's child (subreaper), so the monitor can reap it
    ppid = int(Path(f"/proc/{st.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid == st.monitor_pid
    poll(lambda: b"up\n" in read_logs(ctr.cdir)[0], what="the container's output")
    assert lifecycle.stop(ctr.cdir, timeout=1) == 137  # sh as pid 1 ignores SIGTERM
    st = lifecycle.state(ctr.cdir)
    assert st.status == "exited"
    assert st.exit_code == 137
    assert st.finished_at.endswith("Z")
    assert ctr.runc_state() is None  # runc delete ran


def test_concurrent_starts_make_one_monitor(make: Callable[..., Ctr]) -> None:
    ctr = make("sleep 100")
    with ThreadPoolExecutor(3) as pool:
        states = list(pool.map(lambda _: ctr.start(), range(3)))
    assert {s.status for s in states} == {"running"}
    assert len({s.monitor_pid for s in states}) == 1
    assert lifecycle.stop(ctr.cdir, timeout=0) == 137


def test_exit_code_is_recorded(make: Callable[..., Ctr]) -> None:
    ctr = make("exit 3")
    ctr.start()
    assert lifecycle.wait(ctr.cdir, timeout=10) == 3
    st = lifecycle.state(ctr.cdir)
    assert (st.status, st.exit_code, st.error) == ("exited", 3, "")
    assert st.started_at <= st.finished_at


@pytest.mark.parametrize("sig", ["KILL", "SIGKILL", 9])
def test_killed_by_signal_is_128_plus_n(make: Callable[..., Ctr], sig: str | int) -> None:
    ctr = make("sleep 100")
    ctr.start()
    lifecycle.kill(ctr.cdir, sig)
    assert lifecycle.wait(ctr.cdir, timeout=10) == 137
    with pytest.raises(lifecycle.ContainerNotRunning, match=f"container {ctr.cid} is not running"):
        lifecycle.kill(ctr.cdir, "KILL")


def test_stop_uses_the_stop_signal_when_handled(make: Callable[..., Ctr]) -> None:
    ctr = make("trap 'echo bye; exit 0' TERM; while true; do sleep 0.05; done")
    ctr.start()
    t0 = time.monotonic()
    assert lifecycle.stop(ctr.cdir, timeout=10) == 0
    assert time.monotonic() - t0 < 5
    poll(lambda: read_logs(ctr.cdir)[0].endswith(b"bye\n"), what="the trap's output")


def test_stop_escalates_to_sigkill_after_timeout(make: Callable[..., Ctr]) -> None:
    ctr = make("trap '' TERM; sleep 100")
    ctr.start()
    t0 = time.monotonic()
    assert lifecycle.stop(ctr.cdir, timeout=1) == 137
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed < 6, elapsed
    assert lifecycle.stop(ctr.cdir) == 137  # stopping a stopped container is a no-op


def test_missing_executable_reports_runc_message(make: Callable[..., Ctr]) -> None:
    ctr = make(["nope"])
    with pytest.raises(lifecycle.ContainerStartFailed) as info:
        ctr.start()
    e = info.value
    assert e.exit_status == 127  # type: ignore[attr-defined]
    assert e.reason == 'exec: "nope": executable file not found in $PATH'  # type: ignore[attr-defined]
    assert "runc create failed" in str(e)
    st = lifecycle.state(ctr.cdir)
    assert (st.status, st.exit_code) == ("created", 127)
    assert "executable file not found" in st.error
    assert ctr.runc_state() is None


def test_not_executable_is_126(make: Callable[..., Ctr]) -> None:
    ctr = make(["/etc/passwd"])
    with pytest.raises(lifecycle.ContainerStartFailed) as info:
        ctr.start()
    assert info.value.exit_status == 126  # type: ignore[attr-defined]
    assert "permission denied" in info.value.reason  # type: ignore[attr-defined]


def test_sigkilled_monitor_reads_as_exited(make: Callable[..., Ctr]) -> None:
    ctr = make("sleep 100")
    st = ctr.start()
    os.kill(st.monitor_pid, signal.SIGKILL)
    poll(lambda: not lock_held(ctr.cdir / "monitor.lock"), what="the monitor's lock to be freed")
    st2 = lifecycle.state(ctr.cdir)
    assert st2.status == "exited"
    assert st2.exit_code == 255
    assert "monitor" in st2.error
    assert json.loads((ctr.cdir / "state.json").read_text())["status"] == "running"  # the record was not touched
    # stop cleans up the orphaned container, and it can be started again
    lifecycle.stop(ctr.cdir, timeout=1)
    assert ctr.runc_state() is None
    assert ctr.start().status == "running"
    lifecycle.kill(ctr.cdir, "KILL")
    assert lifecycle.wait(ctr.cdir, timeout=10) == 137


def test_state_survives_a_fresh_process(make: Callable[..., Ctr]) -> None:
    ctr = make("sleep 100")
    st = ctr.start()
    r = _py(f"from imgcore.runtime import lifecycle as l; s = l.state({str(ctr.cdir)!r}); print(s.status, s.pid)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["running", str(st.pid)]
    r = _py(f"from imgcore.runtime import lifecycle as l; print(l.stop({str(ctr.cdir)!r}, timeout=0))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "137"
    assert lifecycle.state(ctr.cdir).status == "exited"


def test_pause_and_unpause(make: Callable[..., Ctr]) -> None:
    ctr = make("while true; do echo tick; sleep 0.05; done")
    ctr.start()
    lifecycle.pause(ctr.cdir)
    assert lifecycle.state(ctr.cdir).status == "paused"
    assert ctr.runc_state()["status"] == "paused"  # type: ignore[index]
    with pytest.raises(lifecycle.ContainerStateError, match="already paused"):
        lifecycle.pause(ctr.cdir)
    size = (ctr.cdir / "container.log").stat().st_size
    time.sleep(0.3)
    assert (ctr.cdir / "container.log").stat().st_size == size  # frozen: no output
    with pytest.raises(lifecycle.ContainerStateError, match="is paused"):
        lifecycle.exec(ctr.cdir, ctr.cid, {"args": ["true"]})
    lifecycle.unpause(ctr.cdir)
    assert lifecycle.state(ctr.cdir).status == "running"
    poll(lambda: (ctr.cdir / "container.log").stat().st_size > size, what="output after unpause")
    with pytest.raises(lifecycle.ContainerStateError, match="not paused"):
        lifecycle.unpause(ctr.cdir)
    # a paused container can be stopped (SIGKILL thaws it)
    lifecycle.pause(ctr.cdir)
    assert lifecycle.stop(ctr.cdir, timeout=0.2) == 137


def test_restart_appends_to_the_log(make: Callable[..., Ctr]) -> None:
    ctr = make("echo started; sleep 100")
    first = ctr.start()
    poll(lambda: read_logs(ctr.cdir)[0] == b"started\n", what="first start's output")
    second = lifecycle.restart(ctr.cdir, timeout=0)
    assert second.status == "running"
    assert second.pid != first.pid
    assert second.monitor_pid != first.monitor_pid
    poll(lambda: read_logs(ctr.cdir)[0] == b"started\nstarted\n", what="second start's output")
    lifecycle.kill(ctr.cdir, "KILL")
    lifecycle.wait(ctr.cdir, timeout=10)


# ------------------------------------------------------------------------------------------ logs


def test_logs_are_docker_json_file_with_both_streams(make: Callable[..., Ctr]) -> None:
    ctr = make("echo out1; echo err1 >&2; echo out2; printf 'no newline'")
    ctr.start()
    assert lifecycle.wait(ctr.cdir, timeout=10) == 0
    entries = [json.loads(line) for line in (ctr.cdir / "container.log").read_text().splitlines()]
    assert all(list(e) == ["log", "stream", "time"] for e in entries)
    assert [(e["stream"], e["log"]) for e in entries if e["stream"] == "stdout"] == [
        ("stdout", "out1\n"), ("stdout", "out2\n"), ("stdout", "no newline")]  # fmt: skip
    assert [e["log"] for e in entries if e["stream"] == "stderr"] == ["err1\n"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", e["time"]) for e in entries)
    out, err = read_logs(ctr.cdir)
    assert out == b"out1\nout2\nno newline"
    assert err == b"err1\n"
    # the logs are just the file: a fresh process reads them the same
    r = _py(f"from imgcore.runtime import logs; logs.read({str(ctr.cdir)!r})")
    assert (r.stdout, r.stderr) == ("out1\nout2\nno newline", "err1\n")


def test_logs_timestamps_and_tail(make: Callable[..., Ctr]) -> None:
    ctr = make("for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2")
    ctr.start()
    lifecycle.wait(ctr.cdir, timeout=10)
    out, err = read_logs(ctr.cdir, tail=3)
    assert out == b"line4\nline5\n"
    assert err == b"oops\n"
    out, _ = read_logs(ctr.cdir, tail=0)
    assert out == b""
    out, _ = read_logs(ctr.cdir, tail=100)
    assert out.count(b"\n") == 5
    out, err = read_logs(ctr.cdir, timestamps=True, tail=2)
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line5\n", out), out
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z oops\n", err), err
    out, _ = read_logs(ctr.cdir, since=time.time() + 60)
    assert out == b""
    out, _ = read_logs(ctr.cdir, since="10m")
    assert out.count(b"\n") == 5


def test_logs_follow_until_exit(make: Callable[..., Ctr]) -> None:
    ctr = make("for i in 1 2 3; do echo n$i; sleep 0.2; done; exit 0")
    ctr.start()
    t0 = time.monotonic()
    out, _ = read_logs(ctr.cdir, follow=True)
    assert out == b"n1\nn2\nn3\n"
    assert time.monotonic() - t0 >= 0.3  # it waited for the later lines
    assert lifecycle.state(ctr.cdir).status == "exited"


def test_heavy_output_with_a_stalled_client_does_not_block(make: Callable[..., Ctr]) -> None:
    line = "x" * 99
    ctr = make(f"yes {line} | head -c 20000000; echo end; echo e >&2")
    # a client that says hello and then never reads: the monitor must drop it, not stall the container
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctr.start()
    try:
        stalled.connect(str(ctr.cdir / "attach.sock"))
        stalled.sendall(attach_mod.encode_json(attach_mod.HELLO, {"stdin": False}))
        assert lifecycle.wait(ctr.cdir, timeout=60) == 0
    finally:
        stalled.close()
    out, err = read_logs(ctr.cdir, tail=2)
    assert (out, err) == (b"end\n", b"e\n")
    entries = (ctr.cdir / "container.log").read_bytes().count(b"\n")
    assert entries == 20_000_000 // 100 + 2


def test_a_malformed_client_is_dropped_not_the_monitor(make: Callable[..., Ctr]) -> None:
    ctr = make("sleep 100")
    ctr.start()
    for junk in (attach_mod.encode(attach_mod.HELLO, b"not json"), attach_mod.encode(attach_mod.CONTROL, b"[1]"),
                 b"1" + (attach_mod.MAX_FRAME + 1).to_bytes(4, "big")):  # fmt: skip
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(ctr.cdir / "attach.sock"))
            s.sendall(junk)
            s.settimeout(10)
            assert s.recv(100) == b""  # dropped
    lifecycle.pause(ctr.cdir)  # the monitor still answers
    lifecycle.unpause(ctr.cdir)
    assert lifecycle.stop(ctr.cdir, timeout=0) == 137


def test_tty_must_match_the_bundle(make: Callable[..., Ctr]) -> None:
    ctr = make("true")
    with pytest.raises(lifecycle.ContainerStartFailed, match=r"process\.terminal is False"):
        ctr.start(tty=True)


# ------------------------------------------------------------------------------------------ exec


def test_exec_returns_exit_code_and_output(make: Callable[..., Ctr], tmp_path: Path) -> None:
    ctr = make("sleep 100")
    ctr.start()
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = {"args": ["sh", "-c", "echo hi $FOO; echo e >&2; exit 7"], "env": ["PATH=/bin", "FOO=bar"]}
        code = lifecycle.exec(ctr.cdir, ctr.cid, process, stdio=(0, out.fileno(), err.fileno()))
    assert code == 7
    assert out_path.read_bytes() == b"hi bar\n"
    assert err_path.read_bytes() == b"e\n"
    assert b"hi" not in read_logs(ctr.cdir)[0]  # exec output is not the container's log (docker)
    with pytest.raises(lifecycle.ContainerStartFailed) as info, err_path.open("wb") as err:
        lifecycle.exec(ctr.cdir, ctr.cid, {"args": ["nope"]}, stdio=(0, err.fileno(), err.fileno()))
    assert info.value.exit_status == 127  # type: ignore[attr-defined]
    assert info.value.reason == 'exec: "nope": executable file not found in $PATH'  # type: ignore[attr-defined]
    # a detached exec keeps running after exec returns; its own monitor records its exit
    assert lifecycle.exec(ctr.cdir, ctr.cid, {"args": ["sh", "-c", "sleep 0.2; exit 4"]}, detach=True) is None
    (rec,) = ctr.cdir.glob("exec-*.state.json")
    poll(lambda: json.loads(rec.read_text()).get("exit_code") == 4, what="the detached exec's exit")
    assert not list(ctr.cdir.glob("exec-*.process.json"))
    assert lifecycle.state(ctr.cdir).status == "running"
    # the next exec sweeps the finished one's record
    assert lifecycle.exec(ctr.cdir, ctr.cid, {"args": ["true"]}, stdio=(0, 1, 2)) == 0
    assert not list(ctr.cdir.glob("exec-*"))


def test_exec_on_a_stopped_container_is_a_typed_error(make: Callable[..., Ctr]) -> None:
    ctr = make("exit 0")
    with pytest.raises(lifecycle.ContainerNotRunning, match=f"^container {ctr.cid} is not running$"):
        lifecycle.exec(ctr.cdir, ctr.cid, {"args": ["true"]})
    ctr.start()
    lifecycle.wait(ctr.cdir, timeout=10)
    with pytest.raises(lifecycle.ContainerNotRunning, match=f"^container {ctr.cid} is not running$"):
        lifecycle.exec(ctr.cdir, ctr.cid, {"args": ["true"]})


# ------------------------------------------------------------------------------------------ attach (socket)


def test_attach_pipes_stdin_and_fans_out_output(make: Callable[..., Ctr], tmp_path: Path) -> None:
    ctr = make("cat; echo done >&2; exit 2")
    ctr.start(open_stdin=True)
    watcher_out = tmp_path / "watch"
    # an output-only client (no stdin), in another process, sees the same output
    with watcher_out.open("wb") as sink:
        watcher = subprocess.Popen(
            [sys.executable, "-c", f"import sys; from imgcore.runtime import attach; "
             f"sys.exit(attach.attach({str(ctr.cdir)!r}, stdin=False, tty=False))"],
            stdout=sink, stderr=subprocess.STDOUT, env={"PYTHONPATH": PYTHONPATH},
        )  # fmt: skip
    poll(lambda: monitor_connections(ctr.cdir / "attach.sock") >= 1, what="the watcher to connect")
    r, w = os.pipe()
    os.write(w, b"hello\nworld\n")
    os.close(w)
    out_r, out_w = os.pipe()
    try:
        code = attach_mod.attach(ctr.cdir, stdin=True, tty=False, stdin_once=True, stdio=(r, out_w, out_w))
    finally:
        os.close(r)
        os.close(out_w)
    with os.fdopen(out_r, "rb") as f:
        assert f.read() == b"hello\nworld\ndone\n"
    assert code == 2
    assert watcher.wait(10) == 2
    assert watcher_out.read_bytes() == b"hello\nworld\ndone\n"
    with pytest.raises(lifecycle.ContainerNotRunning, match="cannot attach to a stopped container"):
        attach_mod.attach(ctr.cdir, stdin=False, tty=False)


def test_attach_first_gets_all_output_and_the_exit_of_a_fast_process(make: Callable[..., Ctr]) -> None:
    ctr = make("echo hi; echo err >&2; exit 3")
    ctr_start = lifecycle.start(ctr.cdir, ctr.cid, ctr.runc, ctr.root, attach_first=True)
    assert ctr_start.pid > 0
    assert lifecycle.wait(ctr.cdir, timeout=10) == 3  # recorded at once, though the monitor waits for a client
    assert lock_held(ctr.cdir / "monitor.lock")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        code = attach_mod.attach(ctr.cdir, stdin=False, tty=False, stdio=(devnull, out_w, err_w))
    finally:
        for fd in (devnull, out_w, err_w):
            os.close(fd)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        assert (out.read(), err.read()) == (b"hi\n", b"err\n")
    assert code == 3
    poll(lambda: not lock_held(ctr.cdir / "monitor.lock"), what="the monitor to exit after handing over")
    # nobody attaches: a new start does not wait for the lingering monitor
    lifecycle.start(ctr.cdir, ctr.cid, ctr.runc, ctr.root, attach_first=True)
    lifecycle.wait(ctr.cdir, timeout=10)
    t0 = time.monotonic()
    assert ctr.start().pid > 0
    assert time.monotonic() - t0 < 5
    assert lifecycle.wait(ctr.cdir, timeout=10) == 3


def test_a_non_tty_client_forwards_its_signals(make: Callable[..., Ctr]) -> None:
    ctr = make("trap 'echo got-int; exit 5' INT; while true; do sleep 0.05; done")
    ctr.start()
    client = subprocess.Popen(
        [sys.executable, "-c", f"import sys; from imgcore.runtime import attach; "
         f"sys.exit(attach.attach({str(ctr.cdir)!r}, stdin=False, tty=False))"],
        stdout=subprocess.PIPE, env={"PYTHONPATH": PYTHONPATH},
    )  # fmt: skip
    try:
        poll(lambda: monitor_connections(ctr.cdir / "attach.sock") == 1, what="the client to connect")
        poll(lambda: catches(client.pid, signal.SIGUSR2), what="the client's signal handlers")  # the last installed
        client.send_signal(signal.SIGINT)  # docker's --sig-proxy: to the container, not the client
        out, _ = client.communicate(timeout=10)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 5
    assert out == b"got-int\n"
    assert lifecycle.state(ctr.cdir).exit_code == 5


def test_deep_container_directory_beyond_sun_path(make: Callable[..., Ctr]) -> None:
    ctr = make("echo ready; read x; echo got $x; exit 6", tty=True, deep=True)
    assert len(str(ctr.cdir / "attach.sock")) > 108
    ctr.start(tty=True, open_stdin=True)
    r, w = os.pipe()
    os.write(w, b"abc\n")
    os.close(w)
    out_r, out_w = os.pipe()
    try:
        code = attach_mod.attach(ctr.cdir, stdin=True, tty=True, stdio=(r, out_w, out_w))
    finally:
        os.close(r)
        os.close(out_w)
    with os.fdopen(out_r, "rb") as f:
        assert b"got abc\r\n" in f.read()
    assert code == 6
    assert b"got abc" in read_logs(ctr.cdir)[0]


# ------------------------------------------------------------------------------------------ interactive (tmux)

DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from imgcore.runtime import attach, lifecycle

    mode, cdir, cid, result = sys.argv[1:5]
    try:
        if mode == "attach":
            code = attach.attach(Path(cdir), stdin=True, tty=True)
        else:
            code = lifecycle.exec(Path(cdir), cid, {"args": ["sh"]}, tty=True, stdin=True)
        Path(result).write_text(str(code))
    except lifecycle.Detached as e:
        print(e, file=sys.stderr)
        Path(result).write_text("detached")
    except Exception as e:
        Path(result).write_text(f"error {type(e).__name__}: {e}")
    """
)


class Tmux:
    def __init__(self, tmux: str, sock: Path) -> None:
        self.tmux, self.sock = tmux, sock

    def __call__(self, *args: str) -> str:
        r = subprocess.run([self.tmux, "-S", str(self.sock), *args], capture_output=True, text=True, check=False,
                           timeout=10)  # fmt: skip
        assert r.returncode == 0, f"tmux {args}: {r.stderr}"
        return r.stdout

    def run(self, name: str, command: str) -> None:
        self("new-session", "-d", "-s", name, "-x", "100", "-y", "30", command)

    def screen(self, name: str) -> list[str]:
        return [line.rstrip() for line in self("capture-pane", "-p", "-t", name).splitlines()]

    def wait_line(self, name: str, pattern: str, timeout: float = 10.0) -> None:
        def found() -> bool:
            return any(re.fullmatch(pattern, line) for line in self.screen(name))

        try:
            poll(found, timeout, f"{pattern!r} on the screen")
        except AssertionError:
            raise AssertionError(f"{pattern!r} not on the screen:\n" + "\n".join(self.screen(name))) from None


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(require_tool("tmux"), tmp_path / "tmux.sock")
    yield t
    subprocess.run([t.tmux, "-S", str(t.sock), "kill-server"], capture_output=True, check=False)


def _driver_command(tmp_path: Path, mode: str, ctr: Ctr, result: Path) -> str:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    # the pane stays open a while after the driver returns, so the screen can still be read
    return (f"env -i PATH=/usr/bin:/bin TERM=xterm PYTHONPATH={PYTHONPATH} {sys.executable} {script} "
            f"{mode} {ctr.cdir} {ctr.cid} {result}; sleep 30")  # fmt: skip


def test_attach_with_a_tty_detach_and_reattach(make: Callable[..., Ctr], tmux: Tmux, tmp_path: Path) -> None:
    ctr = make(["sh"], tty=True)
    ctr.start(tty=True, open_stdin=True)
    first = tmp_path / "first"
    sock = ctr.cdir / "attach.sock"
    tmux.run("a1", _driver_command(tmp_path, "attach", ctr, first))
    poll(lambda: monitor_connections(sock) == 1, what="the client to connect")
    tmux("send-keys", "-t", "a1", "echo hel''lo", "Enter")
    tmux.wait_line("a1", r"hello")
    # the pty has the client's window size (sent on attach), and follows a resize (SIGWINCH -> TIOCSWINSZ)
    tmux("send-keys", "-t", "a1", "stty size", "Enter")
    tmux.wait_line("a1", r"30 100")
    tmux("resize-window", "-t", "a1", "-x", "90", "-y", "25")
    for _ in range(20):  # the resize travels tmux -> SIGWINCH -> client -> monitor -> TIOCSWINSZ
        tmux("send-keys", "-t", "a1", "stty size", "Enter")
        with contextlib.suppress(AssertionError):
            tmux.wait_line("a1", r"25 90", timeout=0.5)
            break
    else:
        raise AssertionError("the pty never got the new window size:\n" + "\n".join(tmux.screen("a1")))
    tmux("send-keys", "-t", "a1", "C-p", "C-q")
    poll(lambda: first.exists() and first.read_text() == "detached", what="the client to detach")
    tmux.wait_line("a1", r".*read escape sequence")
    assert lifecycle.state(ctr.cdir).status == "running"
    # again, and leave through the shell
    second = tmp_path / "second"
    poll(lambda: monitor_connections(sock) == 0, what="the first client's connection to close")
    tmux.run("a2", _driver_command(tmp_path, "attach", ctr, second))
    poll(lambda: monitor_connections(sock) == 1, what="the second client to connect")
    tmux("send-keys", "-t", "a2", "exit 42", "Enter")
    poll(lambda: second.exists() and second.read_text() != "", what="the second client to return")
    assert second.read_text() == "42"
    assert lifecycle.wait(ctr.cdir, timeout=10) == 42
    assert lifecycle.state(ctr.cdir).exit_code == 42
    # a tty's output is all stdout, with the terminal's line endings
    out, err = read_logs(ctr.cdir)
    assert b"hello\r\n" in out
    assert err == b""


def test_exec_with_a_tty_detach_keeps_it_running(make: Callable[..., Ctr], tmux: Tmux, tmp_path: Path) -> None:
    ctr = make("sleep 100")
    ctr.start()
    first = tmp_path / "first"
    tmux.run("e1", _driver_command(tmp_path, "exec", ctr, first))
    poll(lambda: list(ctr.cdir.glob("exec-*.sock")), what="the exec monitor")
    tmux("send-keys", "-t", "e1", "echo in''exec", "Enter")
    tmux.wait_line("e1", r"inexec")
    tmux("send-keys", "-t", "e1", "C-p", "C-q")
    poll(lambda: first.exists() and first.read_text() == "detached", what="the exec client to detach")
    # the exec'd shell still runs under its own monitor
    (lock,) = ctr.cdir.glob("exec-*.lock")
    assert lock_held(lock)
    # a second interactive exec: its exit code comes back
    second = tmp_path / "second"
    tmux.run("e2", _driver_command(tmp_path, "exec", ctr, second))
    poll(lambda: len(list(ctr.cdir.glob("exec-*.sock"))) == 2, what="the second exec monitor")
    tmux("send-keys", "-t", "e2", "exit 9", "Enter")
    poll(lambda: second.exists() and second.read_text() != "", what="the second exec to return")
    assert second.read_text() == "9"
    # stopping the container ends the detached exec too; its monitor records that
    assert lifecycle.stop(ctr.cdir, timeout=0) == 137
    poll(lambda: not lock_held(lock), what="the detached exec's monitor to exit")
