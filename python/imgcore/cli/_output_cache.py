"""A cache of ``imgcore analyze`` output: the second analysis of an image prints what the first one printed,
without loading numpy or reading a table.

Invariants:
- the key is a sha256 over everything the output depends on: this format, imgcore's version and the stamp (size,
  mtime) of the code that writes the report, the image's manifest digest, ID and tags, the baseline's
  (``--against``), every option that changes the output (dive's CI rules as they apply, from the options or
  ``.dive-ci``), and whether stdout is a terminal (bars); an image's content is immutable by digest, so an entry
  is never stale;
- an entry is a store file and so hostile: it is read bounded (:data:`MAX_BYTES`), through ``O_NOFOLLOW``, and
  used only when its header names this format, its length matches and its body hashes to the sha256 the header
  names (over the body and the exit status); anything else is a miss (the entry is removed and the analysis runs);
- entries are spooled to a temporary file as the report streams (no copy in memory) and renamed into place
  when whole, only for output of at most :data:`MAX_BYTES` (a million-file ``--json`` is streamed, not
  cached); at most :data:`MAX_ENTRIES` are kept (the oldest go first); a failure to keep one (a full disk)
  never fails the analysis.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, TextIO

from imgcore import __version__

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "Recorder", "key", "read"]

FORMAT = 1
MAGIC = b"imgcore-analyze-output/%d" % FORMAT
MAX_BYTES = 64 << 20
MAX_ENTRIES = 64
_HEADER = 160
"""An entry's header: magic, exit status, seal and body length, space-padded to a fixed size, then a newline."""
_NAME = re.compile("[0-9a-f]{64}")


def key(parts: dict[str, Any]) -> str:
    """The entry name for output determined by ``parts`` (JSON-able)."""
    doc = json.dumps({"format": FORMAT, "version": __version__, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


def _seal(status: int, body_hash: hashlib._Hash) -> bytes:
    """The sha256 an entry's header names: over its body, then its exit status (``body_hash`` has the body)."""
    h = body_hash.copy()
    h.update(b"\n%d" % status)
    return h.hexdigest().encode()


def read(directory: Path, name: str) -> tuple[int, str] | None:
    """``(exit status, output)`` of entry ``name``, or ``None`` when it is missing or not whole."""
    path = directory / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            head = f.read(_HEADER)
            body = f.read(MAX_BYTES + 1)
    except OSError:
        return None
    try:
        magic, status, digest, length = head.rstrip(b" \n").split(b" ")
        code = int(status)
        ok = magic == MAGIC and head.endswith(b"\n") and int(length) == len(body) <= MAX_BYTES
        ok = ok and _seal(code, hashlib.sha256(body)) == digest
        text = body.decode("utf-8", errors="surrogateescape") if ok else None
    except ValueError:
        text = None
    if text is None:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return code, text


class Recorder(io.TextIOBase):
    """A text stream that writes through to ``out`` and spools a copy (up to :data:`MAX_BYTES`) into a
    temporary file of ``directory``, so keeping the report costs no memory. Used as a context manager: what
    was not :meth:`save`-d is removed on exit. A failure of the copy (a full disk) only stops the caching."""

    def __init__(self, out: TextIO, directory: Path) -> None:
        super().__init__()
        self._out = out
        self._dir = directory
        self._tmp: Path | None = None
        self._file: Any = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._keep = True

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop()

    def write(self, s: str) -> int:
        self._out.write(s)
        if self._keep:
            b = s.encode("utf-8", errors="surrogateescape")
            self._size += len(b)
            try:
                if self._size > MAX_BYTES:
                    raise OSError("too big to keep: the output is only streamed")
                self._spool().write(b)
            except OSError:
                self._drop()
            else:
                self._hash.update(b)
        return len(s)

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return self._out.isatty()

    def _spool(self) -> Any:
        if self._file is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-")
            self._tmp, self._file = Path(tmp), os.fdopen(fd, "wb")
            self._file.write(b" " * _HEADER)
        return self._file

    def _drop(self) -> None:
        self._keep = False
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            self._tmp = None

    def save(self, name: str, status: int) -> None:
        """Stores what was written as entry ``name`` with exit ``status`` (nothing when it was not kept)."""
        if not self._keep:
            return
        try:
            f = self._spool()
            head = b"%s %d %s %d" % (MAGIC, status, _seal(status, self._hash), self._size)
            f.seek(0)
            f.write(head.ljust(_HEADER - 1) + b"\n")
            f.close()
            self._file = None
            assert self._tmp is not None
            self._tmp.replace(self._dir / name)
            self._tmp = None
        except OSError:
            self._drop()
            return
        _evict(self._dir)


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
