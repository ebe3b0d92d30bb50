"""Lifecycle logic that needs no runtime: signal names, reading state records, the dead-monitor rule."""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path

import pytest

from imgcore.errors import InvalidArgument
from imgcore.runtime import lifecycle
from imgcore.runtime._state import State, write_state

FORMS = [("KILL", 9), ("SIGKILL", 9), ("kill", 9), ("9", 9), (9, 9), ("TERM", 15), ("SIGUSR1", int(signal.SIGUSR1)),
         (" hup ", 1)]  # fmt: skip


@pytest.mark.parametrize(("given", "number"), FORMS)
def test_parse_signal_forms(given: str | int, number: int) -> None:
    assert lifecycle.parse_signal(given) == number


@pytest.mark.parametrize("bad", ["NOPE", "SIG", "0", "-1", "999", 0, ""])
def test_parse_signal_rejects(bad: str | int) -> None:
    with pytest.raises(InvalidArgument, match="invalid signal"):
        lifecycle.parse_signal(bad)


def test_never_started_reads_as_created(tmp_path: Path) -> None:
    assert lifecycle.state(tmp_path).status == "created"
    assert lifecycle.wait(tmp_path, timeout=0) == 0


def test_record_round_trips(tmp_path: Path) -> None:
    st = State(status="exited", pid=12, monitor_pid=11, started_at="2026-12-01T10:00:00Z",
               finished_at="2026-12-01T10:00:01.5Z", exit_code=137, id="c1", tty=True, open_stdin=True,
               runtime="/usr/sbin/runc", runtime_root="/run/x")  # fmt: skip
    write_state(tmp_path / "state.json", st)
    assert lifecycle.state(tmp_path) == st
    assert set(json.loads((tmp_path / "state.json").read_text())) >= {
        "status", "pid", "monitor_pid", "started_at", "finished_at", "exit_code", "error"}  # fmt: skip


@pytest.mark.parametrize("status", ["running", "paused"])
def test_running_record_without_its_monitor_reads_as_exited(tmp_path: Path, status: str) -> None:
    write_state(tmp_path / "state.json", State(status=status, pid=12, monitor_pid=11, id="c1"))
    (tmp_path / "monitor.lock").touch()
    st = lifecycle.state(tmp_path)
    assert (st.status, st.exit_code) == ("exited", 255)
    assert "monitor (pid 11) is gone" in st.error
    # with the lock held (a live monitor) the record is believed
    fd = os.open(tmp_path / "monitor.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert lifecycle.state(tmp_path).status == status
        with pytest.raises(TimeoutError):
            lifecycle.wait(tmp_path, timeout=0.05)
    finally:
        os.close(fd)
    assert lifecycle.wait(tmp_path, timeout=1) == 255


def test_exec_and_kill_need_a_running_container(tmp_path: Path) -> None:
    write_state(tmp_path / "state.json", State(status="exited", exit_code=0, id="c1"))
    with pytest.raises(lifecycle.ContainerNotRunning, match=r"^container c1 is not running$"):
        lifecycle.exec(tmp_path, "c1", {"args": ["true"]})
    with pytest.raises(lifecycle.ContainerNotRunning, match=r"^container c1 is not running$"):
        lifecycle.kill(tmp_path, "TERM")
    with pytest.raises(lifecycle.ContainerStateError, match="is not paused"):
        lifecycle.unpause(tmp_path)
    assert lifecycle.stop(tmp_path) == 0


def test_start_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="must be absolute"):
        lifecycle.start(tmp_path, "c1", "runc", tmp_path / "root")
    with pytest.raises(InvalidArgument, match=r"config\.json does not exist"):
        lifecycle.start(tmp_path, "c1", "/usr/sbin/runc", tmp_path / "root")
