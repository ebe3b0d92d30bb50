"""Pure-Python twin of the Rust digest entry points (hashlib)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any

from imgcore.errors import InvalidDigest

__all__ = ["Digest", "Hasher", "hash_files", "sha256", "sha256_file", "sha256_files"]

_HEX_LEN = {"sha256": 64, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]*")
_CHUNK = 256 * 1024
StrPath = str | os.PathLike[str]


def _algorithm(name: str, value: str | None = None) -> str:
    if name not in _HEX_LEN:
        raise InvalidDigest(
            f"invalid digest {value if value is not None else name!r}: "
            f"unsupported algorithm {name!r}{'' if value is not None else ' (expected sha256 or sha512)'}"
        )
    return name


class Digest:
    """A validated ``algorithm:hex`` digest."""

    __slots__ = ("_algorithm", "_hex")

    def __init__(self, value: str) -> None:
        def bad(reason: str) -> InvalidDigest:
            return InvalidDigest(f'invalid digest "{value}": {reason}')

        alg, sep, hexpart = value.partition(":")
        if not sep:
            raise bad("missing ':' between algorithm and hex")
        if not alg:
            raise bad("empty algorithm")
        if alg not in _HEX_LEN:
            raise bad(f'unsupported algorithm "{alg}"')
        if not _LOWER_HEX.fullmatch(hexpart):
            raise bad("hex must be lowercase [0-9a-f]")
        if len(hexpart) != _HEX_LEN[alg]:
            raise bad(f"{alg} needs {_HEX_LEN[alg]} hex characters, got {len(hexpart)}")
        self._algorithm, self._hex = alg, hexpart

    @property
    def algorithm(self) -> str:
        """The algorithm name, ``sha256`` or ``sha512``."""
        return self._algorithm

    @property
    def hex(self) -> str:
        """The lowercase hex part."""
        return self._hex

    @property
    def short(self) -> str:
        """The first 12 hex characters (docker's short ID)."""
        return self._hex[:12]

    def __str__(self) -> str:
        return f"{self._algorithm}:{self._hex}"

    def __repr__(self) -> str:
        return f"Digest('{self}')"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Digest):
            return str(self) == str(other)
        return isinstance(other, str) and other == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Digest, (str(self),))


class Hasher:
    """An incremental hasher for streams."""

    def __init__(self, algorithm: str = "sha256") -> None:
        self._h = hashlib.new(_algorithm(algorithm))
        self._size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Feeds a bytes-like chunk."""
        self._h.update(chunk)
        self._size += memoryview(chunk).nbytes

    def hexdigest(self) -> str:
        """The lowercase hex of what was fed so far."""
        return self._h.hexdigest()

    def digest(self) -> str:
        """``algorithm:hex`` of what was fed so far."""
        return f"{self._h.name}:{self._h.hexdigest()}"

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    @property
    def algorithm(self) -> str:
        """The algorithm name."""
        return str(self._h.name)


def sha256(data: bytes | bytearray | memoryview) -> str:
    """``"sha256:<hex>"`` of any bytes-like object."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hash_file(path: StrPath, algorithm: str) -> tuple[str, int]:
    h = Hasher(algorithm)
    with open(path, "rb") as f:  # noqa: PTH123 - mirrors the Rust open(2) path handling exactly
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest(), h.size


def sha256_file(path: StrPath) -> str:
    """``"sha256:<hex>"`` of a file, read in chunks."""
    return _hash_file(path, "sha256")[0]


def sha256_files(paths: Sequence[StrPath]) -> list[str]:
    """The digest of each file, in order; the first failure raises (as the Rust twin, which uses all cores)."""
    return [sha256_file(p) for p in paths]


def hash_files(paths: Sequence[StrPath], algorithm: str = "sha256") -> list[tuple[str | None, int, str | None]]:
    """``(digest | None, size, error | None)`` per file: never raises per file, so a verifier can report every
    bad one; an unknown ``algorithm`` raises before any file is read."""
    _algorithm(algorithm)
    out: list[tuple[str | None, int, str | None]] = []
    for p in paths:
        try:
            d, n = _hash_file(p, algorithm)
            out.append((d, n, None))
        except OSError as e:
            out.append((None, 0, f"{os.fspath(p)}: {e.strerror} (os error {e.errno})"))
    return out
