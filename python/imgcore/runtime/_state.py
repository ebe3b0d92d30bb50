"""The monitor's files in a container directory, its state record, its errors and its clock.

Invariants:

- ``CDIR/state.json`` is written by the monitor only, atomically (temp file, fsync, rename); readers never see a
  torn record. Besides the interface's fields it records what a later ``stop``/``restart`` needs (``id``,
  ``runtime``, ``runtime_root``, ``tty``, ``open_stdin``), so every lifecycle call needs only the directory.
- ``CDIR/monitor.lock`` is ``flock``-ed exclusively by the live monitor for its whole life (the kernel releases
  it when the monitor dies, however it dies). A record that says running/paused while the lock is free is a
  dead monitor: :func:`read_state` reports it as exited with a note, never as running.
- Unix socket paths can exceed ``sun_path`` (108 bytes) for deep store paths: :func:`socket_address` connects
  through ``/proc/self/fd/N/`` of an ``O_PATH`` directory descriptor when they do.
- Every record is read through the bounded loader and checked against its schema (:func:`parse_state`): a
  corrupt, truncated or planted ``state.json`` raises :class:`~imgcore.errors.InvalidStateFile` naming the file
  and the field, never ``TypeError``/``ValueError``.
- Timestamps are UTC RFC 3339 with nanoseconds: trimmed like Go's ``RFC3339Nano`` in files (``...05.1234Z``,
  as docker's json-file and state), fixed at nine digits for ``logs -t`` (docker's ``RFC3339NanoFixed``).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgcore import _fs
from imgcore._fs import atomic_write_json
from imgcore.errors import ImgcoreError, InvalidStateFile
from imgcore.models import SchemaCheck

__all__ = [
    "ContainerNotRunning",
    "ContainerStartFailed",
    "ContainerStateError",
    "Detached",
    "MonitorError",
    "State",
    "exec_names",
    "fixed_nano",
    "foreground",
    "load_state",
    "lock_held",
    "now_nano",
    "parse_nano",
    "parse_state",
    "read_state",
    "rfc3339nano",
    "socket_address",
    "write_state",
]

STATE = "state.json"
LOCK = "monitor.lock"
LOG = "container.log"
ATTACH_SOCK = "attach.sock"
DEAD_MONITOR_EXIT = 255  # what containerd records for a task whose shim vanished


class ContainerStateError(ImgcoreError):
    """The container is not in a state that allows the operation. ``cid`` and ``status`` say which and why."""


class ContainerNotRunning(ContainerStateError):
    """The operation needs a running container (docker: ``container <id> is not running``)."""


class ContainerStartFailed(ImgcoreError):
    """The OCI runtime could not create or start the container (or exec process).

    ``stage`` is ``create``, ``start`` or ``exec``; ``runtime_message`` is what the runtime said, for example
    ``runc create failed: unable to start container process: exec: "x": executable file not found in $PATH``;
    ``reason`` is its innermost part (``exec: "x": executable file not found in $PATH``); ``exit_status`` is
    docker's exit code for it (127 not found, 126 not executable, 125 otherwise).
    """


class MonitorError(ImgcoreError):
    """The monitor process failed or could not be reached (its own log is ``CDIR/monitor.log``)."""


class Detached(ImgcoreError):
    """The user typed the detach keys: the client let go, the process keeps running.

    The message is docker's, ``read escape sequence``; docker prints it on stderr and exits 1.
    """


@dataclass(frozen=True)
class State:
    """The runtime state of a container (or exec process) as its monitor recorded it."""

    status: str  # created | running | paused | exited
    pid: int = 0
    monitor_pid: int = 0
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    error: str = ""
    id: str = ""
    tty: bool = False
    open_stdin: bool = False
    runtime: str = ""
    runtime_root: str = ""

    @property
    def running(self) -> bool:
        """True while the process exists (running or paused)."""
        return self.status in ("running", "paused")

    def to_json(self) -> dict[str, Any]:
        """The record as written to ``state.json``."""
        return {
            "status": self.status,
            "pid": self.pid,
            "monitor_pid": self.monitor_pid,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "exit_code": self.exit_code,
            "error": self.error,
            "id": self.id,
            "tty": self.tty,
            "open_stdin": self.open_stdin,
            "runtime": self.runtime,
            "runtime_root": self.runtime_root,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        """The record read back from ``state.json`` (missing fields take their defaults)."""
        code = data.get("exit_code")
        return cls(
            status=str(data.get("status", "created")),
            pid=int(data.get("pid") or 0),
            monitor_pid=int(data.get("monitor_pid") or 0),
            started_at=str(data.get("started_at") or ""),
            finished_at=str(data.get("finished_at") or ""),
            exit_code=int(code) if code is not None else None,
            error=str(data.get("error") or ""),
            id=str(data.get("id") or ""),
            tty=bool(data.get("tty")),
            open_stdin=bool(data.get("open_stdin")),
            runtime=str(data.get("runtime") or ""),
            runtime_root=str(data.get("runtime_root") or ""),
        )


STATUSES = ("created", "running", "paused", "exited")
_STR_FIELDS = ("started_at", "finished_at", "error", "id", "runtime", "runtime_root")
_INT_LIMIT = 1 << 31


def parse_state(data: Any, where: str) -> State:
    """A ``state.json`` record checked against its schema (missing fields take their defaults, ``null`` is
    absent); ``InvalidStateFile`` names ``where`` and the field otherwise."""
    doc = SchemaCheck(where, InvalidStateFile)
    obj = doc.obj(data, "")
    status = obj.get("status")
    if status is not None and status not in STATUSES:
        doc.expected("status", f"one of {', '.join(STATUSES)}", status)
    for key in ("pid", "monitor_pid"):
        if obj.get(key) is not None:
            doc.integer(obj[key], key)
    code = obj.get("exit_code")
    if code is not None and (doc.integer(code, "exit_code", non_negative=False) >= _INT_LIMIT or code < -_INT_LIMIT):
        doc.expected("exit_code", "an exit code", code)
    for key in _STR_FIELDS:
        doc.opt_str(obj, key, "")
    for key in ("started_at", "finished_at"):
        if obj.get(key):
            try:
                parse_nano(obj[key])
            except (ValueError, OverflowError):
                doc.expected(key, "an RFC 3339 time", obj[key])
    for key in ("tty", "open_stdin"):
        doc.flag(obj, key, "")
    return State.from_json({k: v for k, v in obj.items() if v is not None})  # null is absent


def load_state(path: Path) -> State | None:
    """The record at ``path`` as written (no liveness check); None when there is none. A corrupt one raises
    ``InvalidStateFile``."""
    try:
        data = _fs.read_json(path, error=InvalidStateFile)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InvalidStateFile(f"state file {path}: unreadable: {e.strerror or e}") from None
    return parse_state(data, f"state file {path}")


def write_state(path: Path, state: State) -> None:
    """Records ``state`` atomically; not fsynced: it describes a live process (see ``_fs.atomic_write``)."""
    atomic_write_json(path, state.to_json(), durable=False)


def lock_held(lock: Path) -> bool:
    """True when a live monitor holds ``lock`` (exclusively)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
    return False


def read_state(path: Path, lock: Path) -> State:
    """The record at ``path``; a running/paused record whose monitor (``lock``) is gone reads as exited.

    A missing record is a container that was never started (``created``); a corrupt one raises
    :class:`~imgcore.errors.InvalidStateFile`.
    """
    st = load_state(path)
    if st is None:
        return State(status="created")
    if st.status in ("running", "paused") and not lock_held(lock):
        note = (f"monitor (pid {st.monitor_pid}) is gone: the container's exit was not recorded, "
                "its processes may still run")  # fmt: skip
        return State(**{**st.to_json(), "status": "exited", "exit_code": DEAD_MONITOR_EXIT, "error": note})
    return st


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address for ``connect``/``bind`` that reaches ``path`` even beyond ``sun_path``'s 108 bytes."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    dfd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dfd}/{path.name}"
    finally:
        os.close(dfd)


@contextlib.contextmanager
def foreground(cdir: Path, cid: str, runtime: str, runtime_root: str = "") -> Iterator[list[int]]:
    """The monitor's bookkeeping for a container run in the foreground by the command itself (no monitor):
    holds ``CDIR/monitor.lock`` and records ``running`` in ``state.json``, then ``exited`` with the code the
    caller put in the yielded list (255, as for a vanished monitor, when it put none). The lock is freed when
    the process ends however it ends, so a killed command reads as a dead monitor."""
    fd = os.open(Path(cdir) / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ContainerStateError(f"container {cid} is already running", cid=cid) from None
        base = State(status="running", started_at=rfc3339nano(now_nano()), id=cid, runtime=runtime,
                     runtime_root=runtime_root, monitor_pid=os.getpid())  # fmt: skip
        write_state(Path(cdir) / STATE, base)
        code: list[int] = []
        try:
            yield code
        finally:
            end = {"status": "exited", "exit_code": code[-1] if code else DEAD_MONITOR_EXIT,
                   "finished_at": rfc3339nano(now_nano())}  # fmt: skip
            write_state(Path(cdir) / STATE, State(**{**base.to_json(), **end}))
    finally:
        os.close(fd)


def exec_names(exec_id: str) -> dict[str, str]:
    """The file names an exec monitor uses in the container directory."""
    p = f"exec-{exec_id}"
    return {"state": f"{p}.state.json", "lock": f"{p}.lock", "sock": f"{p}.sock", "pid": f"{p}.pid",
            "process": f"{p}.process.json", "runc_log": f"{p}.runc.log", "console": f"{p}.console.sock"}  # fmt: skip


def now_nano() -> int:
    return time.time_ns()


def rfc3339nano(ns: int) -> str:
    """Go's ``RFC3339Nano`` in UTC: trailing zeros of the fraction trimmed (and the dot when none is left)."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(secs, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def fixed_nano(stamp: str) -> str:
    """A trimmed RFC 3339 stamp with the fraction padded to nine digits (docker's ``RFC3339NanoFixed``)."""
    if not stamp.endswith("Z"):
        return stamp
    body = stamp[:-1]
    base, _, frac = body.partition(".")
    return f"{base}.{frac.ljust(9, '0')[:9]}Z"


def parse_nano(stamp: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 stamp (``Z`` or a numeric offset; fraction optional)."""
    s = stamp.strip()
    offset = "+00:00"
    if s.endswith(("Z", "z")):
        s = s[:-1]
    elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
        s, offset = s[:-6], s[-6:]
    base, _, frac = s.partition(".")
    dt = datetime.datetime.fromisoformat(base + offset)
    return int(dt.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])
