"""Bounded JSON loading for documents that come from outside (registries, archives, the store on disk).

Invariants:

* No input makes the loader raise anything but the typed error it was given (``InvalidManifest`` by default;
  ``InvalidArchive`` for archive metadata, ``StoreError`` for the store's own files): never ``RecursionError``,
  ``MemoryError``, ``ValueError`` from Python's integer digit limit, ``UnicodeDecodeError`` or ``TypeError``.
* Size is checked before parsing: registry manifests are capped at :data:`MANIFEST_LIMIT` (4 MiB, as
  containers/image caps them), JSON from archives and the store at :data:`ARCHIVE_LIMIT` (20 MiB, as containerd
  caps imported JSON since CVE-2023-25153). :func:`read_json_file` never reads more than ``limit + 1`` bytes.
* Nesting deeper than :data:`MAX_DEPTH` (64) levels is refused before the recursive parser sees the text.
* Integer literals longer than :data:`MAX_INT_DIGITS` digits, ``NaN``/``Infinity`` and floats that overflow to
  infinity are refused (Go's encoding/json refuses the latter two too).
* The input must be UTF-8 (RFC 8259 section 8.1) without a byte order mark; Python's auto-detection of UTF-16/32
  is not used. Strings may not hold unpaired surrogates (``"\\ud800"``): they cannot be encoded again, so they
  would fail later, far from the document.
* Duplicate keys in one object are refused. Go's encoding/json keeps the last value, other parsers the first; a
  document that two parsers read differently is how descriptor-confusion bugs start (CVE-2021-41190), so an
  ambiguous document is an error rather than a choice.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from itertools import accumulate
from pathlib import Path
from typing import Any, NoReturn

from imgcore.errors import ImgcoreError, InvalidManifest

__all__ = [
    "ARCHIVE_LIMIT",
    "MANIFEST_LIMIT",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "load_array",
    "load_json",
    "load_object",
    "read_json_file",
]

MANIFEST_LIMIT = 4 << 20
ARCHIVE_LIMIT = 20 << 20
MAX_DEPTH = 64
MAX_INT_DIGITS = 100

# A JSON string literal (unrolled loop: linear time, no backtracking between alternatives).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# A \uD800-\uDFFF escape somewhere: the parsed strings may hold lone surrogates (checked exactly after parsing).
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]")
# +1 for an opening bracket, -1 (0xff as a signed byte) for a closing one.
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class _Refused(Exception):
    """Raised inside the parser's hooks; turned into the caller's error class with the document's name."""


def _fail(error: type[ImgcoreError], what: str, why: str) -> NoReturn:
    raise error(f"{what}: {why}")


def _depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether brackets outside string literals nest deeper than ``limit`` (unbalanced text: the parser decides).

    The running sum of +1 per opening and -1 per closing bracket is the depth; ``accumulate`` over a signed
    byte array keeps the loop in C (a 20 MiB document of brackets takes a fraction of a second).
    """
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    steps = array("b")
    steps.frombytes(brackets.translate(_STEP))
    return max(accumulate(steps)) > limit


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"integer with {len(text.lstrip('-'))} digits (more than {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > 4 * MAX_INT_DIGITS:
        raise _Refused(f"number literal of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:40]} is out of range")
    return value


def _parse_constant(name: str) -> NoReturn:
    raise _Refused(f"{name} is not valid JSON")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {json.dumps(key)[:80]} in an object")
            seen.add(key)
    return out


def load_json(
    raw: bytes | bytearray | memoryview | str,
    what: str,
    *,
    limit: int = ARCHIVE_LIMIT,
    error: type[ImgcoreError] = InvalidManifest,
) -> Any:
    """Parses ``raw`` (UTF-8 JSON of at most ``limit`` bytes) or raises ``error`` with ``what`` as context."""
    if isinstance(raw, str):
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError:
            _fail(error, what, "not valid UTF-8 (lone surrogate)")
    elif isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
    else:
        _fail(error, what, f"expected bytes, got {type(raw).__name__}")
    if len(data) > limit:
        _fail(error, what, f"document of {len(data)} bytes is larger than the limit of {limit} bytes")
    if data.startswith(b"\xef\xbb\xbf"):
        _fail(error, what, "not valid JSON: starts with a UTF-8 byte order mark")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        _fail(error, what, f"not valid UTF-8 at byte {e.start}")
    try:
        if _depth_exceeds(data, MAX_DEPTH):
            _fail(error, what, f"nested deeper than {MAX_DEPTH} levels")
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
        if _SURROGATE_HINT.search(data):
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                _fail(error, what, "not valid JSON: a string holds an unpaired UTF-16 surrogate escape")
        return value
    except ImgcoreError:  # our own refusal (the error classes are ValueErrors too): already says what and where
        raise
    except _Refused as e:
        _fail(error, what, f"not valid JSON: {e}")
    except json.JSONDecodeError as e:
        _fail(error, what, f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}")
    except RecursionError:
        _fail(error, what, f"nested deeper than {MAX_DEPTH} levels")
    except MemoryError:
        _fail(error, what, "not enough memory to parse the document")
    except ValueError as e:  # anything else the decoder refuses (integer digit limit, ...)
        _fail(error, what, f"not valid JSON: {e}")


def load_object(
    raw: bytes | bytearray | memoryview | str,
    what: str,
    *,
    limit: int = ARCHIVE_LIMIT,
    error: type[ImgcoreError] = InvalidManifest,
) -> dict[str, Any]:
    """:func:`load_json` for a document whose top level must be an object."""
    data = load_json(raw, what, limit=limit, error=error)
    if not isinstance(data, dict):
        _fail(error, what, f"expected a JSON object at the top level, got {_kind(data)}")
    return data


def load_array(
    raw: bytes | bytearray | memoryview | str,
    what: str,
    *,
    limit: int = ARCHIVE_LIMIT,
    error: type[ImgcoreError] = InvalidManifest,
) -> list[Any]:
    """:func:`load_json` for a document whose top level must be an array (docker-save's ``manifest.json``)."""
    data = load_json(raw, what, limit=limit, error=error)
    if not isinstance(data, list):
        _fail(error, what, f"expected a JSON array at the top level, got {_kind(data)}")
    return data


def read_json_file(
    path: Path,
    what: str | None = None,
    *,
    limit: int = ARCHIVE_LIMIT,
    error: type[ImgcoreError] = InvalidManifest,
) -> Any:
    """Reads at most ``limit + 1`` bytes of ``path`` and parses them with :func:`load_json`.

    OS errors (a missing file, no permission) stay ``OSError``s that carry the path.
    """
    name = what or str(path)
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        _fail(error, name, f"file is larger than the limit of {limit} bytes")
    return load_json(data, name, limit=limit, error=error)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
