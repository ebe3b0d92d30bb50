"""The life of a container: start (through its monitor), state, stop, kill, wait, pause, restart, exec.

Everything here works from the container directory ``CDIR`` alone (the interface in RUNTIME-INTERFACE.md):
``start`` spawns the monitor (:mod:`imgcore.runtime.monitor`) and returns once runc has started the container;
the monitor records the rest in ``CDIR/state.json``. So a container outlives the process that started it and
every call works the same from a fresh imgcore process.

Invariants:

- A container reads as running only while its monitor lives (``monitor.lock`` held); a monitor that died (for
  example SIGKILLed) reads as ``exited`` with exit code 255 and a note in ``error``, never as running.
  ``start``/``stop``/``kill`` clean up such an orphan with ``runc delete --force``.
- ``wait`` returns when the exit is recorded or the monitor's lock is free (the kernel frees it when the
  monitor exits, however it exits), so no exit is lost however the waiter and the monitor interleave.
- ``stop`` is docker's: the stop signal, ``timeout`` seconds, then SIGKILL; it returns the recorded exit code
  (``128+N`` for a signal N). ``pause``/``unpause`` ask the monitor (the only writer of ``state.json``).
- ``start`` holds ``CDIR/start.lock`` while it spawns the monitor, so concurrent starts make one monitor (the
  later ones find the container running: a no-op, as docker's).
- A start failure raises :class:`ContainerStartFailed` with runc's own message, e.g. ``runc create failed:
  unable to start container process: exec: "x": executable file not found in $PATH``, and docker's exit status
  for it (``exit_status`` 127/126/125), which the CLI prints and exits with.
- ``exec`` on a container that is not running raises :class:`ContainerNotRunning` (``container <id> is not
  running``); with a tty (or detached) the exec process gets a monitor of its own (exec mode), so it keeps
  running after the client detaches.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import select
import signal as signal_mod
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from imgcore._fs import atomic_write_json, locked
from imgcore.errors import InvalidArgument, InvalidStateFile
from imgcore.runtime import attach as attach_mod
from imgcore.runtime._runc_cmd import MONITOR_ENV, RUNC_ENV, Runc, last_error, start_failure_exit_status
from imgcore.runtime._state import (
    ATTACH_SOCK,
    LOCK,
    STATE,
    ContainerNotRunning,
    ContainerStartFailed,
    ContainerStateError,
    Detached,
    MonitorError,
    State,
    exec_names,
    foreground,
    load_state,
    lock_held,
    read_state,
)

__all__ = [
    "ContainerNotRunning",
    "ContainerStartFailed",
    "ContainerStateError",
    "Detached",
    "MonitorError",
    "State",
    "exec",
    "kill",
    "parse_signal",
    "pause",
    "restart",
    "run_foreground",
    "start",
    "state",
    "stop",
    "unpause",
    "wait",
]


def parse_signal(sig: str | int) -> int:
    """A signal number from docker's forms: ``KILL``, ``SIGKILL``, ``kill``, ``9``."""
    if isinstance(sig, int):
        number = sig
    else:
        text = sig.strip().upper()
        if text.isdigit():
            number = int(text)
        else:
            name = text if text.startswith("SIG") else "SIG" + text
            try:
                number = int(signal_mod.Signals[name])
            except KeyError:
                raise InvalidArgument(f"invalid signal: {sig}") from None
    if not 0 < number < signal_mod.NSIG:
        raise InvalidArgument(f"invalid signal: {sig}")
    return number


def state(cdir: Path) -> State:
    """The container's state (``created`` when it was never started; a dead monitor reads as ``exited``)."""
    cdir = Path(cdir)
    return read_state(cdir / STATE, cdir / LOCK)


def _raw_state(cdir: Path) -> State | None:
    try:
        return load_state(cdir / STATE)
    except InvalidStateFile:
        return None


def _clean_orphan(cdir: Path) -> None:
    """``runc delete --force`` a container whose monitor died while it ran (its processes may still live)."""
    raw = _raw_state(cdir)
    if raw is not None and raw.running and raw.runtime and not lock_held(cdir / LOCK):
        Runc(raw.runtime, raw.runtime_root).run("delete", "--force", raw.id)


def _wait_exit(cdir: Path, timeout: float | None) -> bool:
    """Waits until the container's exit is recorded (or its monitor is gone); False on timeout."""
    if timeout is None:
        timeout = float("inf")
    deadline = time.monotonic() + timeout
    delay = 0.005
    while lock_held(cdir / LOCK):
        raw = _raw_state(cdir)
        if raw is not None and raw.status == "exited":
            return True  # recorded; the monitor may still be handing the output to a late client
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)
    return True


def _release_lingering(cdir: Path) -> None:
    """A monitor that recorded the exit but still waits for its first client (``attach_first``): be that
    client, so it hands over and exits."""
    raw = _raw_state(cdir)
    if raw is None or raw.status != "exited" or not lock_held(cdir / LOCK):
        return
    with contextlib.suppress(OSError), attach_mod.attach_socket(cdir / "attach.sock", 5.0) as s:
        s.sendall(attach_mod.encode_json(attach_mod.HELLO, {"stdin": False}))
        while s.recv(65536):
            pass


def _wait_free(lock: Path, timeout: float | None) -> bool:
    """Waits until no monitor holds ``lock``; False on timeout."""
    if timeout is None:
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)
        return True
    deadline = time.monotonic() + timeout
    delay = 0.005
    while lock_held(lock):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)
    return True


def _spawn_monitor(cdir: Path, args: list[str], timeout: float) -> dict[str, Any]:
    """Starts a monitor (``args`` after the module name) and returns its ready report.

    NOTE: the monitor is a new interpreter, not a fork of this process: a fork would carry this process's Python
    objects, whose finalizers could later close descriptors the monitor reuses, and its locks (leases, the name
    lock) for the monitor's whole life.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        with (cdir / "monitor.log").open("ab") as log:
            proc = subprocess.Popen(
                # -S: no site-packages scan (.pth files can cost more than the rest of start-up); PYTHONPATH
                # already names the imgcore being run.
                [sys.executable, "-S", "-m", "imgcore.runtime.monitor", *args, "--ready-fd", str(w)],
                pass_fds=(w,), start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log, env=MONITOR_ENV, cwd="/",
            )  # fmt: skip
        os.close(w)
        w = -1
        proc.wait()  # the first process forks the monitor and exits at once
        return _read_report(cdir, r, timeout)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def _read_report(cdir: Path, r: int, timeout: float) -> dict[str, Any]:
    """The monitor's ready report from the read end ``r`` of its pipe (the caller closes ``r``)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            raise MonitorError(f"monitor for {cdir}: no report after {timeout:g}s (see {cdir / 'monitor.log'})")
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    try:
        report = json.loads(data.splitlines()[0]) if data.strip() else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        tail = ""
        with contextlib.suppress(OSError):
            tail = (cdir / "monitor.log").read_text(errors="replace")[-2000:]
        raise MonitorError(f"monitor for {cdir} died before reporting: {tail.strip() or 'no output'}")
    return report


def _failure(cid: str, report: dict[str, Any]) -> ContainerStartFailed | MonitorError:
    message = str(report.get("message", ""))
    stage = str(report.get("stage", ""))
    if stage == "monitor":
        return MonitorError(message, cid=cid)
    marker = "unable to start container process: "
    reason = message.split(marker, 1)[1] if marker in message else message
    status = int(report.get("exit_status") or start_failure_exit_status(message))
    return ContainerStartFailed(message, cid=cid, stage=stage, runtime_message=message, reason=reason,
                                exit_status=status)  # fmt: skip


def start(
    cdir: Path,
    cid: str,
    runtime_path: str | Path,
    runtime_root: str | Path,
    tty: bool = False,
    open_stdin: bool = False,
    *,
    attach_first: bool = False,
    timeout: float = 60.0,
    remove_on_exit: str | Path | None = None,
) -> State:
    """Starts the container whose bundle is ``CDIR/bundle`` under a new monitor; returns once it runs.

    Starting a running container is a no-op (docker's). ``tty`` must match the bundle's ``process.terminal``.
    ``attach_first`` (docker ``run`` without ``-d``): the monitor keeps the output for the first client that
    attaches and waits for it (bounded) even after the exit, so ``attach`` right after ``start`` sees
    everything from the first byte and gets the exit code however fast the process ends. With
    ``remove_on_exit`` (a store root: ``run -d --rm``) the monitor starts ``imgcore --root ROOT rm -f ID`` once the
    exit is recorded and it let go of the container.
    """
    cdir = Path(cdir).absolute()
    runtime_path = Path(runtime_path)
    if not runtime_path.is_absolute():
        raise InvalidArgument(f"start {cid}: the runtime path must be absolute, not {str(runtime_path)!r}")
    with locked(cdir / "start.lock"):  # concurrent starts: the second finds it running
        return _start_locked(cdir, cid, runtime_path, Path(runtime_root), tty, open_stdin, attach_first, timeout,
                             remove_on_exit)  # fmt: skip


def _start_locked(cdir: Path, cid: str, runtime_path: Path, runtime_root: Path, tty: bool, open_stdin: bool,
                  attach_first: bool, timeout: float, remove_on_exit: str | Path | None) -> State:  # fmt: skip
    current = state(cdir)
    if current.running:
        return current
    if not (cdir / "bundle" / "config.json").is_file():
        raise InvalidArgument(f"start {cid}: {cdir / 'bundle' / 'config.json'} does not exist")
    _clean_orphan(cdir)
    _release_lingering(cdir)
    if not _wait_free(cdir / LOCK, 10.0):  # a monitor that is finishing (restart right after an exit)
        raise ContainerStateError(f"container {cid}: its previous monitor is still finishing", cid=cid)
    Path(runtime_root).mkdir(mode=0o700, parents=True, exist_ok=True)
    args = ["container", "--cdir", str(cdir), "--id", cid, "--runtime", str(runtime_path),
            "--runtime-root", str(Path(runtime_root).absolute())]  # fmt: skip
    args += ["--tty"] if tty else []
    args += ["--open-stdin"] if open_stdin else []
    args += ["--wait-client"] if attach_first else []
    args += ["--remove-on-exit", str(Path(remove_on_exit).absolute())] if remove_on_exit is not None else []
    report = _spawn_monitor(cdir, args, timeout)
    if not report.get("ok"):
        raise _failure(cid, report)
    return state(cdir)


def run_foreground(cdir: Path, cid: str, runtime_path: str | Path, runtime_root: str | Path) -> int:
    """``runc run`` in the foreground with the command's own stdio and no monitor: ``run --rm`` without ``-d``,
    ``-i`` or ``-t``, whose container lives exactly as long as the command and keeps no log. runc forwards the
    command's signals to the container (docker's sig-proxy); the state is recorded as a monitor records it
    (:func:`~imgcore.runtime._state.foreground`), so ``ps``, ``exec``, ``stop``, ``kill`` and ``wait`` from
    another command work; ``pause`` and ``attach`` need a monitor and say so. Returns the exit code (``128+N``
    for a signal); a start failure raises :class:`ContainerStartFailed` with docker's exit status."""
    cdir = Path(cdir).absolute()
    runtime_path, runtime_root = Path(runtime_path), Path(runtime_root).absolute()
    if not runtime_path.is_absolute():
        raise InvalidArgument(f"run {cid}: the runtime path must be absolute, not {str(runtime_path)!r}")
    if not (cdir / "bundle" / "config.json").is_file():
        raise InvalidArgument(f"run {cid}: {cdir / 'bundle' / 'config.json'} does not exist")
    _clean_orphan(cdir)
    runtime_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    runc = Runc(str(runtime_path), str(runtime_root))
    log = cdir / "runc.log"
    with contextlib.suppress(FileNotFoundError):
        log.unlink()
    with foreground(cdir, cid, str(runtime_path), str(runtime_root)) as code:
        proc = subprocess.Popen(runc.argv("run", "--bundle", str(cdir / "bundle"), cid, log=log), env=RUNC_ENV,
                                stdin=subprocess.DEVNULL)  # fmt: skip
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # runc got the same SIGINT and passes it on; the container decides
                continue
        message = last_error(log) if rc != 0 else ""
        if message:
            code.append(start_failure_exit_status(message))
            raise _failure(cid, {"message": message, "stage": "run"})
        code.append(rc if rc >= 0 else 128 - rc)
    return code[-1]


def _require_running(cdir: Path, what: str) -> State:
    st = state(cdir)
    cid = st.id or cdir.name
    if st.status == "paused" and what == "exec":
        raise ContainerStateError(f"container {cid} is paused, unpause the container before exec", cid=cid,
                                  status=st.status)  # fmt: skip
    if not st.running:
        raise ContainerNotRunning(f"container {cid} is not running", cid=cid, status=st.status)
    return st


def kill(cdir: Path, sig: str | int = "KILL") -> None:
    """Sends ``sig`` to the container's init process (docker ``kill``); a paused container is thawed for SIGKILL."""
    cdir = Path(cdir)
    number = parse_signal(sig)
    _clean_orphan(cdir)
    st = _require_running(cdir, "kill")
    r = Runc(st.runtime, st.runtime_root).run("kill", st.id, str(number))
    if r.returncode != 0:
        gone = "not running" in r.message or "does not exist" in r.message  # it exited under us
        if gone or not state(cdir).running:
            raise ContainerNotRunning(f"container {st.id} is not running", cid=st.id, status="exited")
        raise MonitorError(f"kill {st.id}: {r.message}", cid=st.id)
    if st.status == "paused" and number == signal_mod.SIGKILL:
        with contextlib.suppress(MonitorError):
            attach_mod.control(cdir / "attach.sock", "resume")


def wait(cdir: Path, timeout: float | None = None) -> int:
    """Blocks until the container's monitor has recorded its exit; returns the exit code.

    Raises TimeoutError when ``timeout`` seconds pass first.
    """
    cdir = Path(cdir)
    if not _wait_exit(cdir, timeout):
        raise TimeoutError(f"wait {cdir.name}: still running after {timeout:g}s")
    st = state(cdir)
    return st.exit_code if st.exit_code is not None else 0


def stop(cdir: Path, timeout: float = 10, signal: str | int = "SIGTERM") -> int:
    """docker ``stop``: ``signal`` (the image's StopSignal), then SIGKILL after ``timeout`` s; the exit code."""
    cdir = Path(cdir)
    _clean_orphan(cdir)
    st = state(cdir)
    if not st.running:
        return st.exit_code if st.exit_code is not None else 0
    with contextlib.suppress(ContainerNotRunning):
        kill(cdir, signal)
    if not _wait_exit(cdir, max(0.0, timeout)):
        with contextlib.suppress(ContainerNotRunning):
            kill(cdir, "KILL")
    return wait(cdir)


def pause(cdir: Path) -> None:
    """Freezes every process of the container (``runc pause``, via its monitor); state ``paused``."""
    cdir = Path(cdir)
    st = _require_running(cdir, "pause")
    if st.status == "paused":
        raise ContainerStateError(f"container {st.id} is already paused", cid=st.id, status=st.status)
    _require_monitor(cdir, st, "pause")
    attach_mod.control(cdir / "attach.sock", "pause")


def _require_monitor(cdir: Path, st: State, what: str) -> None:
    if not (cdir / ATTACH_SOCK).exists():
        raise ContainerStateError(f"container {st.id}: cannot {what} a container run in the foreground without a "
                                  "monitor (run --rm without -d, -i or -t)", cid=st.id, status=st.status)  # fmt: skip


def unpause(cdir: Path) -> None:
    """Thaws a paused container (``runc resume``, via its monitor); state ``running``."""
    cdir = Path(cdir)
    st = state(cdir)
    if st.status != "paused":
        raise ContainerStateError(f"container {st.id or cdir.name} is not paused", cid=st.id, status=st.status)
    attach_mod.control(cdir / "attach.sock", "resume")


def restart(cdir: Path, timeout: float = 10, signal: str | int = "SIGTERM") -> State:
    """docker ``restart``: stop (when running), then start again with the recorded runtime and stdio."""
    cdir = Path(cdir)
    st = _raw_state(cdir)
    if st is None or not st.runtime:
        raise ContainerStateError(f"restart {cdir.name}: the container was never started", cid=cdir.name)
    stop(cdir, timeout, signal)
    return start(cdir, st.id, st.runtime, st.runtime_root, st.tty, st.open_stdin)


def _process_json(process: dict[str, Any], tty: bool) -> dict[str, Any]:
    proc = dict(process)
    if not proc.get("args"):
        raise InvalidArgument("exec: no command given")
    proc["terminal"] = tty
    proc.setdefault("cwd", "/")
    proc.setdefault("user", {"uid": 0, "gid": 0})
    proc.setdefault("env", ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    if tty:
        proc["env"] = (
            [*proc["env"], "TERM=xterm"] if not any(e.startswith("TERM=") for e in proc["env"]) else proc["env"]
        )
    return proc


def _sweep_execs(cdir: Path) -> None:
    """Removes the records of finished exec processes (detached ones leave theirs; nobody reads them later)."""
    for rec in cdir.glob("exec-*.state.json"):
        lock = rec.with_name(rec.name.removesuffix(".state.json") + ".lock")
        try:
            done = read_state(rec, lock).status == "exited"  # recorded (its monitor may be a moment from exiting)
        except InvalidStateFile:
            done = False  # left for fsck, which reports it (and moves it aside with --repair)
        if done:
            for p in (rec, lock):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def exec(
    cdir: Path,
    cid: str,
    process: dict[str, Any],
    tty: bool = False,
    stdin: bool = False,
    detach: bool = False,
    *,
    detach_keys: str = attach_mod.DEFAULT_DETACH_KEYS,
    stdio: tuple[int, int, int] = (0, 1, 2),
) -> int | None:
    """Runs ``process`` (an OCI process object: args, env, cwd, user) in the running container.

    Returns its exit code, or None when ``detach``. With ``tty`` the terminal is attached as ``attach`` does
    (raw mode, resize, detach keys: :class:`Detached`, the process keeps running).
    """
    cdir = Path(cdir).absolute()
    st = _require_running(cdir, "exec")
    _sweep_execs(cdir)
    runc = Runc(st.runtime, st.runtime_root)
    eid = secrets.token_hex(8)
    names = exec_names(eid)
    proc_file = cdir / names["process"]
    atomic_write_json(proc_file, _process_json(process, tty), durable=False)  # lives as long as the exec
    if not tty and not detach:
        log = cdir / names["runc_log"]
        try:
            r = subprocess.run(
                runc.argv("exec", "--process", str(proc_file), cid, log=log), env=RUNC_ENV,
                stdin=stdio[0] if stdin else subprocess.DEVNULL, stdout=stdio[1], stderr=stdio[2], check=False,
            )  # fmt: skip
            message = last_error(log) if r.returncode != 0 else ""
        finally:
            for p in (proc_file, log):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        if message:
            if "is not running" in message or "cannot exec in a stopped" in message:
                raise ContainerNotRunning(f"container {cid} is not running", cid=cid)
            raise _failure(cid, {"stage": "exec", "message": message})
        return r.returncode
    args = ["exec", "--cdir", str(cdir), "--id", cid, "--runtime", runc.path, "--runtime-root", runc.root,
            "--exec-id", eid]  # fmt: skip
    args += ["--tty"] if tty else []
    args += ["--open-stdin"] if stdin else []
    args += [] if detach else ["--wait-client"]
    report = _spawn_monitor(cdir, args, 60.0)
    if not report.get("ok"):
        with contextlib.suppress(FileNotFoundError):
            proc_file.unlink()
        raise _failure(cid, report)
    if detach:
        return None
    try:
        code = attach_mod.attach(cdir, stdin=stdin, tty=tty, detach_keys=detach_keys, sock=cdir / names["sock"],
                                 stdin_once=True, stdio=stdio)  # fmt: skip
    except (ContainerNotRunning, MonitorError):
        # the process ended before (or while) we attached: its monitor recorded the code
        _wait_free(cdir / names["lock"], 10.0)
        rec = read_state(cdir / names["state"], cdir / names["lock"])
        if rec.exit_code is None:
            raise
        code = rec.exit_code
    # not reached on Detached: the exec monitor and its files stay until the process ends
    _wait_free(cdir / names["lock"], 5.0)
    for key in ("state", "lock"):
        with contextlib.suppress(FileNotFoundError):
            (cdir / names[key]).unlink()
    return code
