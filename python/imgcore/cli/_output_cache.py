"""A cache of ``imgcore analyze`` output: the second analysis of an image prints what the first one printed,
without loading numpy or reading a table.

Invariants:
- the key is a sha256 over everything the output depends on: this format and imgcore's version, the image's
  manifest digest, ID and tags, the baseline's (``--against``), every option that changes the output, and whether
  stdout is a terminal (bars); the image's content is immutable by digest, so an entry is never stale;
- an entry is a store file and so hostile: it is read bounded (:data:`MAX_BYTES`), through ``O_NOFOLLOW``, and
  used only when its header names this format, its length matches and its body hashes to the sha256 the header
  names (over the body and the exit status); anything else is a miss (the entry is removed and the analysis runs);
- entries are written atomically, only for output of at most :data:`MAX_BYTES` (a million-file ``--json`` is
  streamed, not cached), and at most :data:`MAX_ENTRIES` are kept (the oldest go first).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, TextIO

from imgcore import __version__, _fs

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "Recorder", "key", "read"]

FORMAT = 1
MAGIC = b"imgcore-analyze-output/%d" % FORMAT
MAX_BYTES = 64 << 20
MAX_ENTRIES = 64
_HEADER_MAX = 256
_NAME = re.compile("[0-9a-f]{64}")


def key(parts: dict[str, Any]) -> str:
    """The entry name for output determined by ``parts`` (JSON-able)."""
    doc = json.dumps({"format": FORMAT, "version": __version__, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


def _seal(status: int, body: bytes) -> bytes:
    """The sha256 an entry's header names: over its exit status and its body."""
    return hashlib.sha256(b"%d\n%s" % (status, body)).hexdigest().encode()


def read(directory: Path, name: str) -> tuple[int, str] | None:
    """``(exit status, output)`` of entry ``name``, or ``None`` when it is missing or not whole."""
    path = directory / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            head = f.readline(_HEADER_MAX)
            body = f.read(MAX_BYTES + 1)
    except OSError:
        return None
    fields = head.rstrip(b"\n").split(b" ")
    try:
        magic, status, digest, length = fields
        code = int(status)
        ok = magic == MAGIC and head.endswith(b"\n") and int(length) == len(body) <= MAX_BYTES
        ok = ok and _seal(code, body) == digest
        text = body.decode("utf-8", errors="surrogateescape") if ok else None
    except ValueError:
        text = None
    if text is None:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return code, text


class Recorder(io.TextIOBase):
    """A text stream that writes through to ``out`` and keeps a copy (up to :data:`MAX_BYTES`) to save."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self._out = out
        self._parts: list[bytes] | None = []
        self._size = 0

    def write(self, s: str) -> int:
        self._out.write(s)
        if self._parts is not None:
            b = s.encode("utf-8", errors="surrogateescape")
            self._size += len(b)
            if self._size > MAX_BYTES:
                self._parts = None  # too big to keep: the output is only streamed
            else:
                self._parts.append(b)
        return len(s)

    def flush(self) -> None:
        self._out.flush()

    def save(self, directory: Path, name: str, status: int) -> None:
        """Stores what was written as entry ``name`` with exit ``status`` (nothing when it was too big)."""
        if self._parts is None:
            return
        body = b"".join(self._parts)
        head = b"%s %d %s %d\n" % (MAGIC, status, _seal(status, body), len(body))
        directory.mkdir(parents=True, exist_ok=True)
        _fs.atomic_write(directory / name, head + body, durable=False)
        _evict(directory)


def _evict(directory: Path) -> None:
    """Keeps the newest :data:`MAX_ENTRIES` entries."""
    with contextlib.suppress(OSError):
        entries = []
        for e in os.scandir(directory):
            if not _NAME.fullmatch(e.name):
                continue  # another writer's temporary file
            with contextlib.suppress(OSError):
                entries.append((e.stat(follow_symlinks=False).st_mtime_ns, Path(e.path)))
        entries.sort(reverse=True)
        for _, p in entries[MAX_ENTRIES:]:
            with contextlib.suppress(OSError):
                p.unlink()
