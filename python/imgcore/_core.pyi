"""Type stubs for the Rust extension ``imgcore._core`` (hand-written; checked by ``make stubtest``).

Users import these names from :mod:`imgcore`, never from ``imgcore._core``.
"""

from collections.abc import Sequence
from typing import final

from _typeshed import StrPath
from typing_extensions import Buffer

__version__: str
__all__: list[str]

def sha256(data: Buffer) -> str:
    """The ``sha256:<hex>`` digest of a bytes-like object; the GIL is released for large inputs.

    Args:
        data: bytes, bytearray, memoryview or any buffer of bytes (non-``bytes`` buffers are copied first).
    """

def sha256_file(path: StrPath) -> str:
    """The ``sha256:<hex>`` digest of a file's content, streamed without the GIL.

    Raises:
        OSError: the file cannot be read (``FileNotFoundError`` etc., with the path as ``filename``).
    """

def sha256_files(paths: Sequence[StrPath]) -> list[str]:
    """Digests of many files, hashed on all cores, in input order. The first unreadable file raises ``OSError``."""

def hash_files(paths: Sequence[StrPath], algorithm: str = "sha256") -> list[tuple[str | None, int, str | None]]:
    """``(digest, size, error)`` per file, hashed on all cores; never raises for one file (for verifiers).

    Raises:
        imgcore.errors.InvalidDigest: ``algorithm`` is not sha256 or sha512.
    """

@final
class Digest:
    """A validated ``algorithm:hex`` digest (sha256 or sha512, lowercase hex of the right length).

    Raises:
        imgcore.errors.InvalidDigest: on a malformed value (a ``ValueError``).
    """

    def __new__(cls, value: str) -> Digest: ...
    @property
    def algorithm(self) -> str:
        """``sha256`` or ``sha512``."""
    @property
    def hex(self) -> str:
        """The lowercase hex part."""
    @property
    def short(self) -> str:
        """The first 12 hex characters (docker's short ID)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Hasher:
    """An incremental hasher for streams; ``update`` releases the GIL on large chunks."""

    def __new__(cls, algorithm: str = "sha256") -> Hasher: ...
    def update(self, chunk: Buffer) -> None:
        """Feeds a bytes-like chunk."""
    def hexdigest(self) -> str:
        """The lowercase hex of what was fed so far (the hasher stays usable)."""
    def digest(self) -> str:
        """``algorithm:hex`` of what was fed so far."""
    @property
    def size(self) -> int:
        """Bytes fed so far."""
    @property
    def algorithm(self) -> str:
        """``sha256`` or ``sha512``."""
