"""The per-container monitor (what containerd-shim and podman's conmon are): ``python3 -m imgcore.runtime.monitor``.

One monitor runs per started container (mode ``container``) and per exec process that needs one (mode ``exec``:
a tty or a detached exec). :func:`imgcore.runtime.lifecycle.start` spawns it in a new session; it forks once more
(the first process exits at once, so the monitor is nobody's child and outlives imgcore), then:

1. takes ``monitor.lock`` (``flock``, held until it exits: lock free = monitor gone) and becomes a child
   subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so the container's init is re-parented to it when runc exits;
2. makes the container's stdio: pipes for stdout/stderr (and stdin with ``--open-stdin``, else ``/dev/null``),
   or, with ``--tty``, a console socket on which runc sends the pty master (``SCM_RIGHTS``);
3. runs ``runc create --bundle CDIR/bundle --pid-file CDIR/init.pid [--console-socket] ID`` and ``runc start ID``
   (exec mode: ``runc exec -d --process ...``), runc by absolute path with a fixed environment
   (:data:`~imgcore.runtime._runc_cmd.RUNC_ENV`); it reports success, or runc's own error message, as one JSON
   line on the ``--ready-fd`` pipe to the starter, and only then is ``start`` done;
4. serves ``attach.sock`` (protocol in :mod:`imgcore.runtime.attach`), writes output to ``container.log``
   (:class:`~imgcore.runtime.logs.JsonFileWriter`; exec processes are not logged, as docker), reaps children;
5. when the init process exits: reads the output pipes to their end (bounded by :data:`DRAIN_SECONDS`), runs
   ``runc delete``, records ``exit_code`` (``128+N`` for signal N, as docker) and ``finished_at`` in
   ``state.json`` atomically, sends the exit to attached clients, and exits (which frees the lock). With
   ``--wait-client`` (``start(attach_first=True)``, and interactive exec) the output is also kept for the first
   client, which is waited for (at most ``_CLIENT_WAIT`` s) even after the exit is recorded.

Clients' signals (``S`` frames, docker's ``--sig-proxy``) go to the process with ``runc kill`` (exec mode:
``kill(2)`` on the exec'd pid, which cannot be reused while the monitor has not reaped it).

Invariants: ``state.json`` is written by the monitor only; the exit is recorded after ``runc delete``, so a
record saying exited means the id is free for the next ``start``; nothing the container controls (output volume,
a client that stops reading, stdin that is never read) can block the monitor: every descriptor is non-blocking
and every buffer bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgcore import _fs
from imgcore.errors import InvalidStateFile
from imgcore.runtime._runc_cmd import MONITOR_ENV, RUNC_ENV, Runc, last_error, start_failure_exit_status
from imgcore.runtime._state import (
    ATTACH_SOCK,
    LOCK,
    LOG,
    STATE,
    State,
    exec_names,
    now_nano,
    rfc3339nano,
    write_state,
)
from imgcore.runtime.attach import (
    ANSWER,
    CONTROL,
    EXIT,
    HELLO,
    MAX_BACKLOG,
    RESIZE,
    SIGNAL,
    STDERR,
    STDIN,
    STDIN_EOF,
    STDOUT,
    FrameReader,
    encode,
    encode_json,
)
from imgcore.runtime.logs import JsonFileWriter

__all__ = ["DRAIN_SECONDS", "main"]

DRAIN_SECONDS = 2.0
"""How long the monitor keeps draining output after the process exited."""
PR_SET_CHILD_SUBREAPER = 36
_LOCK_WAIT = 10.0
_CREATE_TIMEOUT = 60.0
_STDIN_CAP = 4 << 20
_CLIENT_WAIT = 30.0

Handler = Callable[[int], None]


def _bind(fn: Callable[[Any, int], None], arg: Any) -> Handler:
    return lambda mask: fn(arg, mask)


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.out = bytearray()
        self.hello = False
        self.stdin = False
        self.stdin_once = False


class _Failed(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


class Monitor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.mode: str = args.mode
        self.cdir = Path(args.cdir)
        self.cid: str = args.id
        self.runc = Runc(args.runtime, args.runtime_root)
        self.tty: bool = args.tty
        self.open_stdin: bool = args.open_stdin
        if self.mode == "exec":
            n = exec_names(args.exec_id)
            self.state_path, self.lock_path, self.sock_path = Path(n["state"]), Path(n["lock"]), Path(n["sock"])
            self.pid_path, self.runc_log, self.console_path = Path(n["pid"]), Path(n["runc_log"]), Path(n["console"])
            self.process_path: Path | None = Path(n["process"])
        else:
            self.state_path, self.lock_path, self.sock_path = Path(STATE), Path(LOCK), Path(ATTACH_SOCK)
            self.pid_path, self.runc_log, self.console_path = Path("init.pid"), Path("runc.log"), Path("console.sock")
            self.process_path = None
        self.sel = selectors.DefaultSelector()
        self.clients: dict[int, _Client] = {}
        self.stdin_owner: _Client | None = None
        self.stdin_fd: int | None = None  # where client stdin goes (pipe write end or the pty master)
        self.stdin_buf = bytearray()
        self.pty: int | None = None
        self.outputs: dict[int, str] = {}  # fd -> stream name
        self.log: JsonFileWriter | None = None
        self.console_dir: Path | None = None
        self.pid = 0
        self.exit_code: int | None = None
        self.exited_at = 0
        self.wait_client: bool = args.wait_client
        self.remove_on_exit: str = args.remove_on_exit
        self.greeted = False  # a client has said hello (wait_client: output is kept for the first one until then)
        self.replay = bytearray()
        self.state = State(status="created", monitor_pid=os.getpid(), id=self.cid, tty=self.tty,
                           open_stdin=self.open_stdin, runtime=self.runc.path, runtime_root=self.runc.root)  # fmt: skip

    # ------------------------------------------------------------------ set-up

    def _lock(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + _LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _Failed("monitor", f"{self.cdir / self.lock_path}: held by another monitor") from None
                time.sleep(0.02)
        self.lock_fd = fd  # held until the process exits

    def _save(self, **changes: Any) -> None:
        self.state = State(**{**self.state.to_json(), **changes})
        write_state(self.state_path, self.state)

    def _setup(self) -> None:
        os.chdir(self.cdir)
        self._lock()
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise _Failed("monitor", f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        full = self.cdir / self.sock_path
        # relative to the cwd (CDIR) when the full path does not fit sun_path
        self.listener.bind(str(full) if len(os.fsencode(full)) < 100 else str(self.sock_path))
        self.sock_path.chmod(0o600)  # connecting needs write permission: the owner (root) only
        self.listener.listen(16)
        self.listener.setblocking(False)

    def _spawn_runtime(self, args: list[str]) -> None:
        """Runs runc ``args`` (create or exec -d) with the container's stdio; fills pty/outputs/stdin_fd."""
        with contextlib.suppress(FileNotFoundError):
            self.runc_log.unlink()
        argv = self.runc.argv(*args, log=self.cdir / self.runc_log)
        if self.tty:
            with contextlib.suppress(FileNotFoundError):
                self.console_path.unlink()
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            console.bind(str(self.console_path))  # the absolute path fits sun_path (see _console_path)
            self.console_path.chmod(0o600)
            console.listen(1)
            console.settimeout(0.05)
            try:
                proc = subprocess.Popen(argv, env=RUNC_ENV, cwd=self.cdir, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
                deadline = time.monotonic() + _CREATE_TIMEOUT
                while self.pty is None:
                    try:
                        conn, _ = console.accept()
                    except TimeoutError:
                        if proc.poll() is not None or time.monotonic() > deadline:
                            break
                        continue
                    with conn:
                        conn.settimeout(5)
                        _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
                        if fds:
                            self.pty = fds[0]
                _, err = proc.communicate(timeout=_CREATE_TIMEOUT)
            finally:
                console.close()
                with contextlib.suppress(FileNotFoundError):
                    self.console_path.unlink()
                if self.console_dir is not None:
                    with contextlib.suppress(OSError):
                        self.console_dir.rmdir()
            if proc.returncode == 0 and self.pty is None:
                raise _Failed(args[0], f"runc {args[0]}: no terminal received on the console socket")
            if self.pty is not None:
                os.set_blocking(self.pty, False)
                os.set_inheritable(self.pty, False)
                self.outputs[self.pty] = "stdout"
                if self.open_stdin:
                    self.stdin_fd = self.pty
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            if self.open_stdin:
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
            else:
                in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
            try:
                proc = subprocess.Popen(argv, env=RUNC_ENV, cwd=self.cdir, stdin=in_r, stdout=out_w, stderr=err_w)
                proc.wait(timeout=_CREATE_TIMEOUT)
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            err = b""
            if proc.returncode != 0:
                os.set_blocking(err_r, False)
                with contextlib.suppress(OSError):
                    err = os.read(err_r, 65536)  # runc's own message (passed-through stderr)
            for fd, name in ((out_r, "stdout"), (err_r, "stderr")):
                os.set_blocking(fd, False)
                self.outputs[fd] = name
            if in_w >= 0:
                os.set_blocking(in_w, False)
                self.stdin_fd = in_w
        if proc.returncode != 0:
            text = err.decode(errors="replace").strip() if isinstance(err, bytes) else ""
            msg = last_error(self.cdir / self.runc_log) or text or f"runc {args[0]}: exit status {proc.returncode}"
            raise _Failed(args[0], msg)

    def _console_path(self) -> Path:
        """Where runc finds the console socket: runc changes into the bundle, so the path must be absolute; a
        CDIR too deep for sun_path gets a private directory under the system's temporary directory."""
        path = self.cdir / self.console_path.name
        if len(os.fsencode(path)) < 100:
            return path
        self.console_dir = Path(tempfile.mkdtemp(prefix="imgcore-console-"))
        return self.console_dir / "console.sock"

    def _start(self) -> None:
        if self.tty:
            self.console_path = self._console_path()
        pid_file = str(self.cdir / self.pid_path)
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        console = ["--console-socket", str(self.console_path)] if self.tty else []
        if self.mode == "container":
            if self.tty != self._spec_terminal():
                raise _Failed("create", f"bundle/config.json: process.terminal is {not self.tty}, --tty is {self.tty}")
            self._spawn_runtime(["create", "--bundle", str(self.cdir / "bundle"), "--pid-file", pid_file,
                                 *console, self.cid])  # fmt: skip
            self.pid = int(self.pid_path.read_text().strip())
            self._save(status="created", pid=self.pid, exit_code=None, error="", finished_at="")
            started = rfc3339nano(now_nano())
            r = self.runc.run("start", self.cid, log=self.cdir / self.runc_log)
            if r.returncode != 0:
                self.runc.run("delete", "--force", self.cid)
                raise _Failed("start", r.message)
            self._save(status="running", started_at=started)
        else:
            assert self.process_path is not None
            tty = ["--tty"] if self.tty else []
            started = rfc3339nano(now_nano())
            process = str(self.cdir / self.process_path)
            self._spawn_runtime(["exec", "--detach", "--pid-file", pid_file, "--process", process, *tty, *console,
                                 self.cid])  # fmt: skip
            self.pid = int(self.pid_path.read_text().strip())
            self._save(status="running", pid=self.pid, started_at=started)

    def _spec_terminal(self) -> bool:
        spec = _fs.read_json(self.cdir / "bundle" / "config.json", error=InvalidStateFile)
        process = spec.get("process") if isinstance(spec, dict) else None
        return isinstance(process, dict) and process.get("terminal") is True

    # ------------------------------------------------------------------ event loop

    def _register(self, fd: int | socket.socket, events: int, handler: Handler) -> None:
        try:
            self.sel.modify(fd, events, handler)
        except KeyError:
            self.sel.register(fd, events, handler)

    def _update_stdin_fd(self) -> None:
        if self.stdin_fd is None:
            return
        want = selectors.EVENT_WRITE if self.stdin_buf else 0
        if self.stdin_fd == self.pty:
            self._register(self.pty, selectors.EVENT_READ | want, self._on_pty)
        elif want:
            self._register(self.stdin_fd, want, self._on_stdin_writable)
        else:
            with contextlib.suppress(KeyError):
                self.sel.unregister(self.stdin_fd)

    def _write_stdin(self) -> None:
        if self.stdin_fd is None:
            self.stdin_buf.clear()
            return
        while self.stdin_buf:
            try:
                n = os.write(self.stdin_fd, self.stdin_buf)
            except BlockingIOError:
                break
            except OSError:  # the reader is gone
                self.stdin_buf.clear()
                break
            del self.stdin_buf[:n]
        self._update_stdin_fd()

    def _on_stdin_writable(self, mask: int) -> None:
        self._write_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_fd is not None and self.stdin_fd != self.pty:
            with contextlib.suppress(KeyError):
                self.sel.unregister(self.stdin_fd)
            os.close(self.stdin_fd)
            self.stdin_fd = None
            self.stdin_buf.clear()

    def _output(self, fd: int) -> None:
        stream = self.outputs[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's slave side is closed
                raise
            data = b""
        if not data:
            self.sel.unregister(fd)
            del self.outputs[fd]
            if self.log is not None:
                self.log.flush(stream)
            if fd == self.pty:
                self.stdin_fd = None
                self.pty = None
            os.close(fd)
            return
        if self.log is not None:
            self.log.feed(stream, data)
        self._broadcast(encode(STDERR if stream == "stderr" else STDOUT, data))

    def _on_output(self, fd: int, mask: int) -> None:
        self._output(fd)

    def _on_pty(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._write_stdin()
        if mask & selectors.EVENT_READ and self.pty is not None:
            self._output(self.pty)

    def _broadcast(self, frame: bytes) -> None:
        if self.wait_client and not self.greeted:
            if len(self.replay) + len(frame) <= MAX_BACKLOG:
                self.replay += frame
            return
        for client in list(self.clients.values()):
            if client.hello:
                self._send(client, frame)

    def _send(self, client: _Client, frame: bytes) -> None:
        client.out += frame
        if len(client.out) > MAX_BACKLOG:
            self._drop(client)
            return
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        try:
            while client.out:
                n = client.sock.send(client.out)
                del client.out[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(client)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        self._register(client.sock, events, _bind(self._on_client, client))

    def _drop(self, client: _Client) -> None:
        if self.clients.pop(client.sock.fileno(), None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.sock)
        client.sock.close()
        if self.stdin_owner is client:
            self.stdin_owner = None

    def _on_accept(self, mask: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        client = _Client(sock)
        self.clients[sock.fileno()] = client
        self._register(sock, selectors.EVENT_READ, _bind(self._on_client, client))

    def _on_client(self, client: _Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(client)
            if client.sock.fileno() not in self.clients:
                return
        if not mask & selectors.EVENT_READ:
            return
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        try:
            frames = client.reader.feed(data)
        except Exception:
            self._drop(client)
            return
        for kind, payload in frames:
            if client.sock.fileno() not in self.clients:
                return
            try:
                self._frame(client, kind, payload)
            except (ValueError, TypeError, AttributeError, struct.error):  # a malformed frame: that client goes
                traceback.print_exc()
                self._drop(client)
                return

    def _frame(self, client: _Client, kind: bytes, payload: bytes) -> None:
        if kind == HELLO:
            opts = json.loads(payload or b"{}")
            client.hello = True
            if opts.get("stdin") and self.stdin_fd is not None and self.stdin_owner is None:
                self.stdin_owner, client.stdin = client, True
                client.stdin_once = bool(opts.get("stdin_once"))
            self._send(client, encode_json(ANSWER, {"ok": True, "error": "", "stdin": client.stdin}))
            if not self.greeted:
                self.greeted = True
                if self.replay:
                    self._send(client, bytes(self.replay))
                    self.replay.clear()
        elif kind == STDIN and client.stdin:
            if len(self.stdin_buf) + len(payload) <= _STDIN_CAP:
                self.stdin_buf += payload
            self._write_stdin()
        elif kind == STDIN_EOF and client.stdin:
            if client.stdin_once:
                self._write_stdin()
                self._close_stdin()
            self.stdin_owner, client.stdin = None, False
        elif kind == RESIZE and self.pty is not None and len(payload) == 4:
            rows, cols = struct.unpack(">HH", payload)
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.pty, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        elif kind == CONTROL:
            op = json.loads(payload or b"{}").get("op")
            self._send(client, encode_json(ANSWER, self._control(str(op))))
        elif kind == SIGNAL and len(payload) == 4 and self.exit_code is None:
            (signum,) = struct.unpack(">I", payload)
            if 0 < signum < signal.NSIG:
                if self.mode == "container":
                    self.runc.run("kill", self.cid, str(signum))
                else:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signum)  # not yet reaped by us: the pid cannot have been reused

    def _control(self, op: str) -> dict[str, Any]:
        if self.exit_code is not None or self.mode != "container":
            return {"ok": False, "error": f"container {self.cid} is not running"}
        if op == "pause" and self.state.status == "running":
            r = self.runc.run("pause", self.cid)
            if r.returncode == 0:
                self._save(status="paused")
        elif op == "resume" and self.state.status == "paused":
            r = self.runc.run("resume", self.cid)
            if r.returncode == 0:
                self._save(status="running")
        elif op == "pause":
            return {"ok": False, "error": f"container {self.cid} is already paused"}
        elif op == "resume":
            return {"ok": False, "error": f"container {self.cid} is not paused"}
        else:
            return {"ok": False, "error": f"unknown operation {op!r}"}
        return {"ok": r.returncode == 0, "error": r.message}

    def _on_wake(self, mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass
        self._reap()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid and self.exit_code is None:
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = 128 - code if code < 0 else code
                self.exited_at = now_nano()

    def _loop(self) -> None:
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_wake)
        self.sel.register(self.listener, selectors.EVENT_READ, self._on_accept)
        for fd in self.outputs:
            if fd == self.pty:
                self._register(fd, selectors.EVENT_READ, self._on_pty)
            else:
                self._register(fd, selectors.EVENT_READ, _bind(self._on_output, fd))
        self._reap()
        while True:
            timeout = None
            if self.exit_code is not None:
                if not self.outputs:
                    return
                timeout = self.exited_at / 1e9 + DRAIN_SECONDS - time.time()
                if timeout <= 0:
                    return
            self._dispatch(timeout)

    def _dispatch(self, timeout: float | None) -> None:
        for key, mask in self.sel.select(timeout):
            handler: Handler = key.data
            handler(mask)

    def _finish(self) -> None:
        for fd in list(self.outputs):
            stream = self.outputs.pop(fd)
            if self.log is not None:
                self.log.flush(stream)
            with contextlib.suppress(KeyError):
                self.sel.unregister(fd)
            os.close(fd)
        if self.log is not None:
            self.log.close()
        self._close_stdin()
        code = self.exit_code if self.exit_code is not None else 255
        if self.mode == "container":
            r = self.runc.run("delete", self.cid)
            if r.returncode != 0:
                self.runc.run("delete", "--force", self.cid)
        # transient files go before the exit is recorded: a recorded exit means the monitor is done with them
        transient = []
        if self.mode == "exec":
            transient += [self.pid_path, self.runc_log, *([self.process_path] if self.process_path else [])]
        if not self.wait_client or self.greeted:
            self.listener.close()  # a client that connects after the exit is recorded finds no monitor
            transient.append(self.sock_path)
        for name in transient:
            with contextlib.suppress(FileNotFoundError):
                name.unlink()
        self._save(status="exited", exit_code=code, finished_at=rfc3339nano(self.exited_at))
        if self.wait_client and not self.greeted:
            # nobody has seen the output yet: wait (bounded) for the client that asked for it, then give it
            # everything and the exit
            while not self.greeted:
                left = self.exited_at / 1e9 + _CLIENT_WAIT - time.time()
                if left <= 0:
                    break
                self._dispatch(left)
            self.listener.close()
            with contextlib.suppress(FileNotFoundError):
                self.sock_path.unlink()
        frame = encode_json(EXIT, {"exit_code": code})
        deadline = time.monotonic() + DRAIN_SECONDS
        for client in list(self.clients.values()):
            if not client.hello:
                continue
            client.out += frame
            client.sock.setblocking(True)
            client.sock.settimeout(max(0.01, deadline - time.monotonic()))
            with contextlib.suppress(OSError):
                client.sock.sendall(client.out)
            client.sock.close()

    def run(self, report: Callable[[dict[str, Any]], None]) -> int:
        try:
            self._setup()
            self._start()
        except _Failed as e:
            code = start_failure_exit_status(e.message) if e.stage in ("create", "start", "exec") else 125
            if e.stage != "monitor" and self.mode == "container":
                self._save(status="created", exit_code=code, error=e.message)
            elif e.stage != "monitor":
                self._save(status="exited", exit_code=code, error=e.message)
            report({"ok": False, "stage": e.stage, "message": e.message, "exit_status": code})
            return 1
        if self.mode == "container":
            self.log = JsonFileWriter(Path(LOG))
        report({"ok": True, "pid": self.pid})
        self._loop()
        self._finish()
        if self.remove_on_exit:
            os.close(self.lock_fd)  # the hook finds the container exited, with no monitor
            self._run_hook()
        return 0

    def _run_hook(self) -> None:
        """``--remove-on-exit ROOT`` (``run -d --rm``): starts ``imgcore --root ROOT rm -f ID``, as docker's daemon
        removes the container on exit, in a session of its own, not waited for. Should it fail, the next ``ps``
        removes the container."""
        cmd = [sys.executable, "-m", "imgcore", "--root", self.remove_on_exit, "rm", "-f", self.cid]
        try:
            subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd="/", start_new_session=True, env=MONITOR_ENV)  # fmt: skip
        except OSError as e:
            print(f"monitor: removing {self.cid} on exit: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m imgcore.runtime.monitor``: runs one monitor (container or exec mode); returns its exit status."""
    p = argparse.ArgumentParser(prog="python3 -m imgcore.runtime.monitor")
    p.add_argument("mode", choices=("container", "exec"))
    p.add_argument("--cdir", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--runtime", required=True, help="the OCI runtime's absolute path")
    p.add_argument("--runtime-root", required=True)
    p.add_argument("--tty", action="store_true")
    p.add_argument("--open-stdin", action="store_true")
    p.add_argument("--exec-id", default="")
    p.add_argument("--wait-client", action="store_true", help="keep output for, and wait for, a first client")
    p.add_argument("--ready-fd", type=int, default=-1)
    p.add_argument("--remove-on-exit", default="", metavar="ROOT", help="run -d --rm: remove the container from the "
                   "store at ROOT once the exit is recorded")  # fmt: skip
    p.add_argument("--no-fork", action="store_true", help="stay in the foreground (debugging)")
    args = p.parse_args(argv)
    if not args.no_fork and os.fork() != 0:
        os._exit(0)
    ready = args.ready_fd

    def report(msg: dict[str, Any]) -> None:
        nonlocal ready
        if ready >= 0:
            with contextlib.suppress(OSError):
                os.write(ready, (json.dumps(msg) + "\n").encode())
            os.close(ready)
            ready = -1

    try:
        return Monitor(args).run(report)
    except BaseException as e:
        traceback.print_exc()
        report({"ok": False, "stage": "monitor", "message": f"monitor: {type(e).__name__}: {e}", "exit_status": 125})
        return 1


if __name__ == "__main__":
    sys.exit(main())
