"""Container logs in docker's json-file format: the monitor writes them, ``logs`` reads them.

One line of ``CDIR/container.log`` is one JSON object, keys in docker's order::

    {"log":"hello\\n","stream":"stdout","time":"2026-12-01T10:06:48.123456789Z"}

Invariants:

- Output is cut at newlines; a line longer than 16 KiB is written in 16 KiB pieces without a trailing newline
  (docker's partial entries); what is left at end of stream is written as it is. Bytes that are not UTF-8 become
  U+FFFD, as Go's JSON encoder does. A tty has one stream: everything is ``stdout`` (with the tty's ``\\r\\n``).
- Each entry goes to the file in one ``write`` on an ``O_APPEND`` descriptor, so a reader sees whole entries
  (a follower keeps an unfinished last line until its newline arrives). The file is appended to across
  restarts and survives imgcore restarts: it is just the file.
- ``read`` follows docker ``logs``: stdout entries to stdout, stderr entries to stderr, ``timestamps`` prefixes
  the entry's time with nine fraction digits and a space, ``tail`` keeps the last N entries (read backwards in
  64 KiB blocks, never the whole file), ``since``/``until`` filter by time, ``follow`` keeps reading until the
  container's monitor has exited (then reads what is left and returns).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from imgcore.errors import InvalidArgument
from imgcore.runtime._state import LOCK, LOG, fixed_nano, lock_held, now_nano, parse_nano, rfc3339nano

__all__ = ["JsonFileWriter", "parse_since", "read"]

MAX_ENTRY = 16 * 1024  # docker's json-file cuts longer lines into partial entries of this size
_FOLLOW_POLL = 0.05
_ENCODER = json.JSONEncoder(ensure_ascii=False)
_NEEDS_ESCAPE = re.compile(rb"[^\x20\x21\x23-\x5b\x5d-\x7e\t\r\n]")  # besides printable ASCII minus " and \\


class JsonFileWriter:
    """Appends a container's output streams to a json-file log."""

    def __init__(self, path: Path, clock: Callable[[], int] = now_nano, *, fast: bool = True) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._pending: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._clock = clock
        self._fast = fast  # False: every entry through the JSON encoder (the oracle for the bulk path)

    def _tail(self, stream: str) -> str:
        return ',"stream":"' + stream + '","time":"' + rfc3339nano(self._clock()) + '"}\n'

    def _entries(self, stream: str, chunks: list[bytes]) -> None:
        # one clock reading and one write per batch: the lines of one read arrived at the same moment
        if not chunks:
            return
        tail = self._tail(stream)
        dumps = _ENCODER.encode
        os.write(self._fd, "".join('{"log":' + dumps(c.decode("utf-8", "replace")) + tail for c in chunks).encode())

    def _plain_lines(self, stream: str, buf: bytearray) -> None:
        """Writes the complete lines at the start of ``buf`` in bulk when they need no JSON escaping beyond
        ``\\t``/``\\r`` and none is too long (the common case: a 64 KiB read of short ASCII lines would
        otherwise cost a JSON encoding per line)."""
        last = buf.rfind(b"\n")
        if last < 0:
            return
        region = bytes(buf[: last + 1])
        if _NEEDS_ESCAPE.search(region) is not None:
            return
        if len(region) > MAX_ENTRY and max(map(len, region.split(b"\n"))) >= MAX_ENTRY:
            return
        tail = self._tail(stream).encode()
        body = region[:-1].replace(b"\t", b"\\t").replace(b"\r", b"\\r")
        os.write(self._fd, b'{"log":"' + body.replace(b"\n", b'\\n"' + tail + b'{"log":"') + b'\\n"' + tail)
        del buf[: last + 1]

    def feed(self, stream: str, data: bytes) -> None:
        """Adds output of ``stream`` (``stdout``/``stderr``); complete lines are written at once."""
        buf = self._pending[stream]
        buf += data
        if self._fast:
            self._plain_lines(stream, buf)
        start = 0
        chunks = []
        while True:
            nl = buf.find(b"\n", start, start + MAX_ENTRY)
            if nl >= 0:
                chunks.append(bytes(buf[start : nl + 1]))
                start = nl + 1
            elif len(buf) - start >= MAX_ENTRY:
                chunks.append(bytes(buf[start : start + MAX_ENTRY]))
                start += MAX_ENTRY
            else:
                break
        del buf[:start]
        self._entries(stream, chunks)

    def flush(self, stream: str) -> None:
        """Writes what is left of ``stream`` (its end was reached) as a last entry without newline."""
        buf = self._pending[stream]
        if buf:
            self._entries(stream, [bytes(buf)])
            buf.clear()

    def close(self) -> None:
        """Flushes and closes the log file."""
        for stream in self._pending:
            self.flush(stream)
        os.close(self._fd)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_since(value: str | float | int, now_ns: int | None = None) -> int:
    """Nanoseconds since the epoch for docker's ``--since``/``--until``: a Go duration relative to now
    (``10m``, ``1h30m``), a Unix timestamp (``1700000000.5``) or an RFC 3339 date (``2026-12-01T10:00:00Z``)."""
    if isinstance(value, int | float):
        return int(value * 1_000_000_000)
    text = value.strip()
    now = now_nano() if now_ns is None else now_ns
    if re.fullmatch(r"(?:" + _DURATION.pattern + r")+", text):
        total = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
        return now - int(total)
    if re.fullmatch(r"\d+(?:\.\d{1,9})?", text):
        secs, _, frac = text.partition(".")
        return int(secs) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            text += "T00:00:00Z"
        return parse_nano(text)
    except ValueError:
        raise InvalidArgument(f"logs: invalid time {value!r}: want a duration (10m), a Unix time or RFC 3339") from None


def _tail_offset(f: BinaryIO, size: int, n: int) -> int:
    """The offset where the last ``n`` complete lines of the first ``size`` bytes begin."""
    if n <= 0:
        return size
    pos = size
    count = 0
    block = 65536
    # the last byte is the newline of the last entry: it does not start another line
    skip_last = True
    while pos > 0:
        start = max(0, pos - block)
        f.seek(start)
        data = f.read(pos - start)
        end = len(data)
        while True:
            nl = data.rfind(b"\n", 0, end)
            if nl < 0:
                break
            if skip_last and start + nl == size - 1:
                skip_last = False
            else:
                count += 1
                if count == n:
                    return start + nl + 1
            end = nl
        pos = start
    return 0


class _Reader:
    def __init__(self, out: BinaryIO, err: BinaryIO, timestamps: bool, since: int | None, until: int | None) -> None:
        self.out, self.err = out, err
        self.timestamps, self.since, self.until = timestamps, since, until

    def entry(self, line: bytes) -> None:
        try:
            obj = json.loads(line)
        except ValueError:
            return  # a damaged entry (a crash mid-write): skipped, as docker's decoder resyncs
        if not isinstance(obj, dict):
            return
        stamp = str(obj.get("time", ""))
        if self.since is not None or self.until is not None:
            try:
                t = parse_nano(stamp)
            except ValueError:
                return
            if (self.since is not None and t < self.since) or (self.until is not None and t > self.until):
                return
        text = str(obj.get("log", "")).encode("utf-8", "surrogateescape")
        if self.timestamps:
            text = fixed_nano(stamp).encode() + b" " + text
        stream = self.err if obj.get("stream") == "stderr" else self.out
        stream.write(text)


def read(
    cdir: Path,
    follow: bool = False,
    tail: int | None = None,
    timestamps: bool = False,
    since: str | float | None = None,
    until: str | float | None = None,
    *,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
) -> None:
    """Writes the container's logs, docker ``logs`` style, to ``stdout``/``stderr`` (binary; default the process's)."""
    cdir = Path(cdir)
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr.buffer
    since_ns = parse_since(since) if since is not None else None
    until_ns = parse_since(until) if until is not None else None
    reader = _Reader(out, err, timestamps, since_ns, until_ns)
    path = cdir / LOG
    lock = cdir / LOCK
    try:
        f = path.open("rb")
    except FileNotFoundError:
        if not follow:
            return
        f = None
    pending = b""
    try:
        if f is not None:
            size = os.fstat(f.fileno()).st_size
            f.seek(_tail_offset(f, size, tail) if tail is not None and tail >= 0 else 0)
        while True:
            alive = follow and lock_held(lock)
            if f is None:
                try:
                    f = path.open("rb")
                except FileNotFoundError:
                    if not alive:
                        return
                    time.sleep(_FOLLOW_POLL)
                    continue
            chunk = f.read(1 << 20)
            if chunk:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line:
                        reader.entry(line)
                out.flush()
                err.flush()
                continue
            if not alive:
                return
            time.sleep(_FOLLOW_POLL)
    finally:
        if f is not None:
            f.close()
