"""Attaching to a container (or exec process) through its monitor's unix socket: the protocol and the client.

Protocol (``CDIR/attach.sock``, ``SOCK_STREAM``). Every message is a frame: one type byte, a 4-byte big-endian
payload length (at most :data:`MAX_FRAME`), the payload.

client -> monitor::

    H  hello, JSON {"stdin": bool, "stdin_once": bool}  -- must be first; answered by an A frame
    0  bytes for the container's stdin (ignored unless this client holds stdin)
    E  end of this client's stdin (closes the container's stdin when the hello said stdin_once)
    R  window size, struct ">HH" rows, cols (the monitor sets it on the pty: TIOCSWINSZ, the kernel sends SIGWINCH)
    C  control, JSON {"op": "pause" | "resume"}  -- answered by an A frame
    S  a signal for the process, struct ">I" number (docker's --sig-proxy: what the client itself received)

monitor -> client::

    A  answer, JSON {"ok": bool, "error": str, "stdin": bool}  ("stdin": whether this client got stdin)
    1  bytes the container wrote to stdout (all output of a tty)
    2  bytes the container wrote to stderr
    X  the process exited, JSON {"exit_code": int}; the monitor closes the connection after it

Invariants: any number of clients may attach; each gets every output frame from the time it attached (fan-out;
a client that stops reading and falls more than :data:`MAX_BACKLOG` behind is disconnected, never the container
slowed). Only one client at a time holds stdin: the first that asks; it is released when that client goes.
The detach keys (docker's ``ctrl-p,ctrl-q`` by default) are recognised by the client in its stdin stream; a
partial match is held back and sent on when the next key does not continue it, as docker does. On detach the
client restores the terminal and raises :class:`Detached` (``read escape sequence``: docker prints it on
stderr and exits 1); the process keeps running.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import selectors
import signal
import socket
import struct
import termios
import tty as ttymod
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from imgcore.errors import InvalidArgument
from imgcore.runtime._state import (
    ATTACH_SOCK,
    LOCK,
    STATE,
    ContainerNotRunning,
    Detached,
    MonitorError,
    read_state,
    socket_address,
)

__all__ = [
    "DEFAULT_DETACH_KEYS",
    "MAX_FRAME",
    "FrameReader",
    "attach",
    "attach_socket",
    "control",
    "encode",
    "parse_detach_keys",
]

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
"""docker's default detach sequence."""
MAX_FRAME = 1 << 20
"""Largest frame accepted on the attach socket."""
MAX_BACKLOG = 8 << 20
_HEADER = struct.Struct(">BI")

HELLO, STDIN, STDIN_EOF, RESIZE, CONTROL, SIGNAL = b"H", b"0", b"E", b"R", b"C", b"S"
#: what a non-tty client forwards to the process (docker's --sig-proxy; a tty sends ^C etc. as bytes)
PROXIED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
ANSWER, STDOUT, STDERR, EXIT = b"A", b"1", b"2", b"X"


def encode(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame."""
    return _HEADER.pack(kind[0], len(payload)) + payload


def encode_json(kind: bytes, obj: Any) -> bytes:
    return encode(kind, json.dumps(obj, separators=(",", ":")).encode())


class FrameReader:
    """Cuts a byte stream into ``(type, payload)`` frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Buffers ``data`` and returns the complete ``(kind, payload)`` frames it finished."""
        self._buf += data
        frames = []
        while len(self._buf) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise MonitorError(f"attach: frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
            if len(self._buf) < _HEADER.size + length:
                break
            frames.append((bytes([kind]), bytes(self._buf[_HEADER.size : _HEADER.size + length])))
            del self._buf[: _HEADER.size + length]
        return frames


def parse_detach_keys(spec: str) -> bytes:
    """docker's ``--detach-keys`` syntax: comma-separated keys, each one character or ``ctrl-<key>``
    (``a``-``z``, ``@``, ``[``, ``\\``, ``]``, ``^``, ``_``). An empty spec means the default."""
    spec = spec or DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        k = key.strip()
        if len(k) == 1:
            out.append(ord(k))
        elif k.lower().startswith("ctrl-") and len(k) == 6:
            c = k[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise InvalidArgument(f"invalid detach keys {spec!r}: unknown key {k!r}")
        else:
            raise InvalidArgument(f"invalid detach keys {spec!r}: unknown key {k!r}")
    return bytes(out)


class _Escape:
    """Finds the detach sequence in the stdin stream, holding back a partial match."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = 0  # how many bytes of keys matched so far (held back)

    def scan(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes to forward, and whether the sequence was completed."""
        if not self.keys:
            return data, False
        out = bytearray()
        for b in data:
            if b == self.keys[self.held]:
                self.held += 1
                if self.held == len(self.keys):
                    return bytes(out), True
                continue
            if self.held:
                out += self.keys[: self.held]
                self.held = 0
                if b == self.keys[0]:
                    self.held = 1
                    continue
            out.append(b)
        return bytes(out), False


@contextlib.contextmanager
def attach_socket(path: Path, timeout: float | None = None) -> Iterator[socket.socket]:
    """A connection to the monitor socket at ``path`` (long paths handled)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(timeout)
        with socket_address(path) as addr:
            s.connect(addr)
        yield s
    finally:
        s.close()


def _recv_frames(s: socket.socket, reader: FrameReader) -> list[tuple[bytes, bytes]]:
    data = s.recv(65536)
    if not data:
        raise MonitorError("attach: the monitor closed the connection")
    return reader.feed(data)


def _answer(s: socket.socket, reader: FrameReader, others: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """Reads up to the monitor's next answer; the other frames read on the way are kept in ``others``."""
    while True:
        frames = _recv_frames(s, reader)
        for i, (kind, payload) in enumerate(frames):
            if kind == ANSWER:
                if others is not None:
                    others += frames[:i] + frames[i + 1 :]
                obj = json.loads(payload)
                if not isinstance(obj, dict):
                    raise MonitorError("attach: malformed answer from the monitor")
                return obj
        if others is not None:
            others += frames


def control(sock: Path, op: str, timeout: float = 60.0) -> None:
    """Asks the monitor behind ``sock`` to do ``op`` (``pause``/``resume``); raises MonitorError with its error."""
    try:
        with attach_socket(sock, timeout) as s:
            s.sendall(encode_json(HELLO, {"stdin": False}) + encode_json(CONTROL, {"op": op}))
            reader = FrameReader()
            _answer(s, reader)  # the hello's
            ans = _answer(s, reader)
    except OSError as e:
        raise MonitorError(f"{op}: cannot reach the monitor at {sock}: {e.strerror or e}") from None
    if not ans.get("ok"):
        raise MonitorError(f"{op}: {ans.get('error') or 'failed'}")


def _winsize(fd: int) -> tuple[int, int] | None:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


def attach(
    cdir: Path,
    stdin: bool = True,
    tty: bool = True,
    detach_keys: str = DEFAULT_DETACH_KEYS,
    *,
    sock: Path | None = None,
    stdin_once: bool = False,
    sig_proxy: bool | None = None,
    stdio: tuple[int, int, int] = (0, 1, 2),
) -> int:
    """Attaches the local terminal (``stdio`` fds) to the container in ``cdir``; returns its exit code when it
    exits while attached. Raises :class:`Detached` on the detach keys, :class:`ContainerNotRunning` when there
    is nothing to attach to. ``sock`` names another monitor socket (an exec process's). ``sig_proxy``
    (default: when not ``tty``, as docker) forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 that this
    process receives to the container's process."""
    cdir = Path(cdir)
    keys = parse_detach_keys(detach_keys)
    path = sock if sock is not None else cdir / ATTACH_SOCK
    in_fd, out_fd, err_fd = stdio
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with socket_address(path) as addr:
            conn.connect(addr)
    except OSError as e:
        conn.close()
        if e.errno not in (errno.ENOENT, errno.ECONNREFUSED):
            raise MonitorError(f"attach: cannot connect to {path}: {e.strerror or e}") from None
        if sock is not None:
            raise ContainerNotRunning(f"{path.name}: the process is not running") from None
        st = read_state(cdir / STATE, cdir / LOCK)
        cid = st.id or cdir.name
        if not st.running:
            raise ContainerNotRunning(f"you cannot attach to a stopped container {cid}, start it first", cid=cid,
                                      status=st.status) from None  # fmt: skip
        raise ContainerNotRunning(f"container {cid} is not running", cid=cid, status=st.status) from None
    reader = FrameReader()
    saved: list[Any] | None = None
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_handlers: dict[int, Any] = {}
    local_tty = tty and stdin and os.isatty(in_fd)
    proxy = (not tty) if sig_proxy is None else sig_proxy

    def on_signal(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(wake_w, bytes([signum]))

    early: list[tuple[bytes, bytes]] = []  # output that came with the answer
    try:
        conn.sendall(encode_json(HELLO, {"stdin": stdin, "stdin_once": stdin_once}))
        _answer(conn, reader, early)
        if local_tty:
            saved = termios.tcgetattr(in_fd)
            ttymod.setraw(in_fd, termios.TCSANOW)
            size = _winsize(in_fd)
            if size is not None:
                conn.sendall(encode(RESIZE, struct.pack(">HH", *size)))
        wanted = ([signal.SIGWINCH] if local_tty else []) + (list(PROXIED_SIGNALS) if proxy else [])
        with contextlib.suppress(ValueError):  # not the main thread: no resize or signal forwarding
            for sig in wanted:
                old_handlers[sig] = signal.signal(sig, on_signal)
        code = _deliver(early, out_fd, err_fd)
        if code is not None:
            return code
        return _copy(conn, reader, in_fd if stdin else None, out_fd, err_fd, keys if tty else b"", wake_r)
    finally:
        for number, handler in old_handlers.items():
            signal.signal(number, handler)
        if saved is not None:
            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        os.close(wake_r)
        os.close(wake_w)
        conn.close()


def _copy(conn: socket.socket, reader: FrameReader, in_fd: int | None, out_fd: int, err_fd: int, keys: bytes,
          wake_r: int) -> int:  # fmt: skip
    sel = selectors.DefaultSelector()
    sel.register(conn, selectors.EVENT_READ, "conn")
    sel.register(wake_r, selectors.EVENT_READ, "signals")
    if in_fd is not None:
        sel.register(in_fd, selectors.EVENT_READ, "stdin")
    escape = _Escape(keys)
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "signals":
                    try:
                        received = os.read(wake_r, 64)
                    except BlockingIOError:
                        received = b""
                    for signum in received:
                        if signum != signal.SIGWINCH:
                            conn.sendall(encode(SIGNAL, struct.pack(">I", signum)))
                            continue
                        size = _winsize(in_fd if in_fd is not None else out_fd)
                        if size is not None:
                            conn.sendall(encode(RESIZE, struct.pack(">HH", *size)))
                elif key.data == "stdin":
                    assert in_fd is not None
                    try:
                        data = os.read(in_fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(in_fd)
                        conn.sendall(encode(STDIN_EOF))
                        continue
                    fwd, detached = escape.scan(data)
                    if fwd:
                        conn.sendall(encode(STDIN, fwd))
                    if detached:
                        raise Detached("read escape sequence")
                else:
                    data = conn.recv(65536)
                    if not data:
                        raise MonitorError("attach: the monitor closed the connection without an exit status")
                    code = _deliver(reader.feed(data), out_fd, err_fd)
                    if code is not None:
                        return code
    finally:
        sel.close()


def _deliver(frames: list[tuple[bytes, bytes]], out_fd: int, err_fd: int) -> int | None:
    """Writes output frames out; the exit code when one of them is the exit."""
    for kind, payload in frames:
        if kind == STDOUT:
            _write_all(out_fd, payload)
        elif kind == STDERR:
            _write_all(err_fd, payload)
        elif kind == EXIT:
            return int(json.loads(payload)["exit_code"])
    return None
