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

# -- layers (rust/py/src/archive.rs) ----------------------------------------------------------------------------

_IdMap = Sequence[tuple[int, int, int]]

@final
class LayerStats:
    """What one layer extraction did (frozen). ``bytes`` is the uncompressed size, ``skipped`` lists
    ``(path, reason)`` for entries or attributes not applied (device nodes without ``allow_devices``, xattrs the
    filesystem refused, ...)."""

    @property
    def digest(self) -> str: ...
    @property
    def diff_id(self) -> str: ...
    @property
    def compression(self) -> str: ...
    @property
    def entries(self) -> int: ...
    @property
    def files(self) -> int: ...
    @property
    def dirs(self) -> int: ...
    @property
    def symlinks(self) -> int: ...
    @property
    def hardlinks(self) -> int: ...
    @property
    def whiteouts(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def compressed_bytes(self) -> int: ...
    @property
    def skipped(self) -> list[tuple[str, str]]: ...

def extract_layer(
    src: StrPath,
    dest: StrPath,
    *,
    overlay: bool = False,
    expected_digest: str | None = None,
    expected_diff_id: str | None = None,
    same_owner: bool | None = None,
    uid_map: _IdMap | None = None,
    gid_map: _IdMap | None = None,
    allow_devices: bool = False,
    max_bytes: int = ...,
    max_entries: int = ...,
) -> LayerStats:
    """Extracts one layer blob (tar, tar+gzip or tar+zstd, detected from its bytes) into ``dest``, streaming.

    Every entry is resolved inside ``dest`` (openat2 ``RESOLVE_IN_ROOT``, or an ``O_NOFOLLOW`` walk); nothing
    outside it is ever touched. Flatten mode applies OCI whiteouts onto what ``dest`` already holds (lower
    layers); ``overlay=True`` keeps them as overlayfs markers (char device 0/0, ``trusted.overlay.opaque=y``),
    which needs root. The blob's digest and the tar's diff_id are computed in the same pass.

    Args:
        src: the layer blob.
        dest: an existing directory (the root filesystem being built).
        overlay: keep whiteouts in overlayfs form.
        expected_digest: checked against the blob's digest after extraction.
        expected_diff_id: checked against the uncompressed tar's digest after extraction.
        same_owner: keep archive uid/gid (default: when running as root).
        uid_map: ``(archive_id, host_id, count)`` ranges; ids outside them are an error.
        gid_map: as ``uid_map`` for groups.
        allow_devices: create device nodes and FIFOs (else skipped and reported).
        max_bytes: limit on uncompressed bytes (``LimitExceeded``).
        max_entries: limit on entries (``LimitExceeded``).

    Raises:
        imgcore.errors.DigestMismatch: a digest differs. The content is already written: discard ``dest``.
        imgcore.errors.UnsafeArchiveEntry: an entry would escape ``dest`` (``..``, hardlink out of the root).
        imgcore.errors.InvalidArchive: malformed input (truncated, corrupt header, bad gzip/zstd stream,
            trailing garbage), naming the entry.
        imgcore.errors.LimitExceeded: ``max_bytes`` or ``max_entries`` exceeded.
    """

def unpack_layers(
    layers: Sequence[StrPath],
    dest: StrPath,
    *,
    same_owner: bool | None = None,
    uid_map: _IdMap | None = None,
    gid_map: _IdMap | None = None,
    allow_devices: bool = False,
    max_bytes: int = ...,
    max_entries: int = ...,
    expected_diff_ids: Sequence[str] | None = None,
) -> list[LayerStats]:
    """Unpacks an image's layers, lowest first, into one root filesystem (flatten form); see ``extract_layer``.

    Raises:
        imgcore.errors.DigestMismatch: a layer's diff_id differs from ``expected_diff_ids``; discard ``dest``.
    """

def layer_index(
    layers: Sequence[StrPath], *, max_bytes: int = ..., max_entries: int = ...
) -> list[tuple[str, str, int, int, int, int, int, str, int]]:
    """The merged union view of a layer stack, read from the blobs without extracting.

    Returns rows ``(path, type, mode, uid, gid, size, mtime, linkname, layer)`` sorted by path; ``path`` is
    root-relative without a leading slash, ``type`` one of file, dir, symlink, hardlink, char, block, fifo;
    ``layer`` is the index (0 = lowest) of the layer that provides the entry. Implied parent directories appear
    as ``dir`` with mode 0o755. A hardlink row carries its target's metadata and path.
    """

def gzip_backend() -> str:
    """The gzip inflate this build uses: ``isa-l`` or ``zlib-rs``."""
