"""Type stubs for the Rust extension ``imgcore._core`` (hand-written; checked by ``make stubtest``).

Users import these names from :mod:`imgcore`, never from ``imgcore._core``.
"""

from collections.abc import Sequence
from typing import Any, Literal, final

from _typeshed import StrPath
from typing_extensions import Buffer

__version__: str
__all__ = [
    "Change",
    "Digest",
    "Hasher",
    "LayerResult",
    "LayerStats",
    "__version__",
    "_panic_for_tests",
    "diff",
    "extract_layer",
    "file_list_json",
    "gzip_backend",
    "hash_files",
    "image_pass",
    "inspect_blob",
    "layer_index",
    "layer_tables",
    "merged_tree",
    "sha256",
    "sha256_file",
    "sha256_files",
    "unpack_layers",
    "write_layer",
]

def _panic_for_tests(message: str) -> None:
    """Test hook: panics in Rust without the GIL; raises ``imgcore.errors.InternalError``."""

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
    def __eq__(self, other: object, /) -> bool: ...
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
    ``(path, reason)`` for every entry or attribute not applied, never silently: device nodes and FIFOs without
    ``allow_devices`` (``"block device (needs root and allow_devices)"``, ``"fifo (needs allow_devices)"``),
    mknod refused (``"... (needs root: mknod not permitted)"``), tar types imgcore does not extract
    (``"unsupported entry type 'V' (GNU volume label)"``), xattrs the filesystem refused or overlayfs' own; its
    length is the count."""

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
    which needs root. The blob's digest and the tar's diff_id are computed in the same pass, over the raw bytes.

    Sizes follow POSIX: a PAX ``size`` record beats the header field (how Go, GNU tar, Python and
    :func:`write_layer` store files of 8 GiB and more), base-256 header sizes are read. GNU sparse files (old GNU
    ``S`` headers with extension blocks, PAX sparse 0.0, 0.1 and 1.0) are expanded under their real name and
    size; a sparse map that is malformed, unsorted, overlapping or claims more than its bounds is refused. Holes
    stay holes: aligned all-zero 4 KiB blocks are skipped, not written, and the file's length is set at the end,
    so an 8 GiB file of zeros takes a few blocks of disk.

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
        max_bytes: limit on uncompressed bytes per layer (``LimitExceeded``); default 64 GiB.
        max_entries: limit on entries per layer (``LimitExceeded``); default 4,000,000.

    Raises:
        imgcore.errors.DigestMismatch: a digest differs. The content is already written: discard ``dest``.
        imgcore.errors.UnsafeArchiveEntry: an entry would escape ``dest`` (``..``, hardlink out of the root).
        imgcore.errors.InvalidArchive: malformed input (truncated, corrupt header, bad gzip/zstd stream,
            trailing garbage), naming the entry.
        imgcore.errors.LimitExceeded: ``max_bytes`` or ``max_entries`` exceeded, or an entry (or a sparse file's
            real size) claims more than ``max_bytes``, or a sparse map has more than 1,048,576 entries.
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

def layer_tables(
    layers: Sequence[tuple[StrPath, str | None]], *, max_bytes: int = ..., max_entries: int = ...
) -> list[dict[str, Any]]:
    """Per-layer file tables for image analysis: each ``(blob, expected digest or None)`` read once, in parallel.

    Returns one dict per layer with numpy columns (moved from Rust, not copied), one element per tar entry in
    archive order: ``path`` (uint32 index into the string table), ``kind`` (uint8: 0 file, 1 dir, 2 symlink,
    3 hardlink, 4 char, 5 block, 6 fifo, 7 whiteout, 8 opaque, 9 other), ``size`` (uint64), ``mode``, ``uid``,
    ``gid`` (uint32), ``mtime`` (int64), ``sha256`` (uint8, 32 per row, zeros unless a file), ``link`` (int32
    string index or -1), ``xattrs`` (uint8 bits: 1 any, 2 capability, 4 ACL, 8 SELinux, 16 other),
    ``xattr_hash`` (uint64); the string table ``strings`` (uint8, each string NUL-terminated) with ``offsets``
    (uint64); and ``digest``, ``diff_id`` (``""`` for a compressed blob: its stream is not hashed, one SHA-256
    pass less), ``compression``, ``compressed_bytes``, ``bytes``. A whiteout row's
    path is the path it removes, an opaque row's the directory it empties.

    Raises:
        DigestMismatch: a blob does not hash to its expected digest.
        InvalidArchive: corrupt or truncated stream, or a path with a NUL byte.
        UnsafeArchiveEntry: an entry climbs out of the root.
        LimitExceeded: more than ``max_bytes`` uncompressed bytes or ``max_entries`` entries in one layer.
    """

def image_pass(
    tables: Sequence[dict[str, Any]],
) -> tuple[list[Any], list[Any], list[Any], list[Any], tuple[int, int, tuple[Any, Any, Any, Any]], list[Any]]:
    """The image-wide passes over ``layer_tables`` dicts (bottom first), reading their numpy columns in place.

    Returns per layer (numpy arrays, one element per row) ``changes`` (uint8: 1 added, 2 modified, 3 deleted,
    4 opaque, 5 metadata-only, 6 identical copy), ``shadowed_by`` (int32: the layer that hid the row, -1 when
    the final image shows it), ``prev_layer``/``prev_row`` (int32/uint32: the copy the row replaced, layer -1
    for none); then dive 0.13's sums ``(minimum, discovered, inefficient)``, ``inefficient`` being columns
    ``(paths, offsets, references, cumulative bytes)`` (uint8 NUL-joined paths with a leading slash, uint64
    start offsets, uint32, int64) for every path dive saw in two layers or more, largest first then by path;
    and per layer ``path_id`` (uint32: an image-wide id of each row's path, equal paths equal ids, numbered in
    the order of the paths' text as Python sorts their ``surrogateescape`` decodings).

    Raises:
        ValueError: a column is missing, not contiguous, of the wrong dtype or length, or an index points
            outside its string table.
    """

def merged_tree(
    tables: Sequence[dict[str, Any]], shadowed: Sequence[Any], changes: Sequence[Any], index: int, keep: int
) -> dict[str, Any]:
    """The merged tree as of layer ``index`` (the explorer's view) from ``layer_tables`` dicts (bottom first) and
    ``image_pass``'s ``shadowed_by`` and ``changes`` arrays, read in place; ``keep`` has bit ``1 << mark`` set for
    each mark to keep (0: every row).

    Returns numpy columns, one element per node in depth-first order (siblings by name, ``/`` first): ``strings``
    and ``offsets`` (each node's path, no leading ``/``, NUL-joined), ``kind``, ``size``, ``layer`` (int32, -1 for
    an implied directory), ``mark`` (uint8: 0 none, the change codes, 7 waste), ``depth`` (uint32), ``end``
    (uint32: the index after the node's subtree) and ``total`` (uint64: file bytes in the subtree).

    Raises:
        ValueError: a column is missing, not contiguous, of the wrong dtype or length, an index points outside
            its string table, or ``index`` is not a layer.
    """

def inspect_blob(src: StrPath, *, max_bytes: int = ...) -> tuple[str, str, str, int, int]:
    """Decodes a layer blob once (compression detected from its bytes) and measures it.

    Returns ``(digest, diff_id, compression, compressed_bytes, bytes)``: the blob's digest, the digest of its
    uncompressed tar stream, ``none``/``gzip``/``zstd``, and both sizes. This is the one decompression path for
    every reader of a layer that does not extract it (sizes, diff_id checks).

    Raises:
        InvalidArchive: corrupt or truncated stream, or an unsupported compression (bzip2, xz).
        LimitExceeded: more than ``max_bytes`` uncompressed bytes (default 64 GiB).
    """

def gzip_backend() -> str:
    """The gzip inflate this build uses: ``isa-l`` or ``zlib-rs``."""

# --- layer diff (rust/py/src/diff.rs) -------------------------------------------------------------------------

@final
class Change:
    """One change of a container against its image: ``kind`` ``"A"``/``"C"``/``"D"``, ``path`` absolute inside
    the image. ``metadata_only`` is True for a ``C`` whose content is unchanged (chmod, chown, touch, xattrs,
    hardlink group); a ``C`` directory is always metadata-only (its children are reported on their own)."""

    def __new__(cls, kind: str, path: StrPath, metadata_only: bool = False) -> Change: ...
    @property
    def kind(self) -> str:
        """``"A"``, ``"C"`` or ``"D"``."""
    @property
    def path(self) -> str:
        """Absolute path inside the image (``/etc/passwd``)."""
    @property
    def metadata_only(self) -> bool:
        """Only metadata changed (``C`` only)."""
    def astuple(self) -> tuple[str, str, bool]:
        """``(kind, path, metadata_only)``."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __lt__(self, value: Change, /) -> bool: ...
    def __le__(self, value: Change, /) -> bool: ...
    def __gt__(self, value: Change, /) -> bool: ...
    def __ge__(self, value: Change, /) -> bool: ...

@final
class LayerResult:
    """What :func:`write_layer` wrote."""

    @property
    def digest(self) -> str:
        """``sha256:`` digest of the blob as written (compressed)."""
    @property
    def diff_id(self) -> str:
        """``sha256:`` digest of the uncompressed tar (``rootfs.diff_ids``)."""
    @property
    def size(self) -> int:
        """Blob size in bytes."""
    @property
    def uncompressed_size(self) -> int:
        """Size of the uncompressed tar."""
    @property
    def media_type(self) -> str:
        """OCI layer media type matching the compression."""
    @property
    def compression(self) -> str:
        """``"gzip"``, ``"zstd"`` or ``"none"``."""
    @property
    def changes(self) -> list[Change]:
        """The change set that was written (empty: nothing changed)."""
    @property
    def entries(self) -> int:
        """Tar entries written (PAX headers not counted)."""
    @property
    def whiteouts(self) -> int:
        """Whiteout and opaque-marker entries."""
    @property
    def hardlinks(self) -> int:
        """Hardlink entries."""
    @property
    def added(self) -> int:
        """Number of ``A`` changes."""
    @property
    def changed(self) -> int:
        """Number of ``C`` changes."""
    @property
    def deleted(self) -> int:
        """Number of ``D`` changes."""

def diff(
    base: StrPath | Sequence[StrPath], target: StrPath, *, overlay: bool = False, paranoid: bool = False
) -> list[Change]:
    """The changes of ``target`` against ``base``, sorted like ``docker diff`` (parents right before children).

    Args:
        base: copy mode: the image's flattened rootfs. Overlay mode: the lowerdirs, top first, or the merged
            lower rootfs.
        target: copy mode: the container's private copy. Overlay mode: the overlayfs upperdir (only it is
            walked, so the cost grows with the change).
        overlay: ``target`` is an overlayfs upperdir (whiteouts, opaque directories understood).
        paranoid: copy mode: compare the bytes of every same-size regular file instead of trusting size+mtime.

    Raises:
        OSError: a root is missing or not a directory, or an entry cannot be read (with the path).
        imgcore.errors.InvalidTree: copy mode with several bases; overlayfs redirect_dir in the upperdir.
    """

def write_layer(
    base: StrPath | Sequence[StrPath],
    target: StrPath,
    out: StrPath,
    *,
    overlay: bool = False,
    paranoid: bool = False,
    compression: Literal["gzip", "zstd", "none"] | str = "gzip",
    level: int | None = None,
    source_date_epoch: int | None = None,
    changes: Sequence[Change | tuple[str, str] | tuple[str, str, bool]] | None = None,
) -> LayerResult:
    """Writes the change set as an OCI layer blob at ``out`` (created or truncated; removed on error).

    Whiteouts for deletions, an opaque marker for an opaque overlay directory, hardlinks kept, entries in
    change order, PAX headers like ``tarfile`` with empty uname/gname and whole-second mtimes; digest and
    diff_id in the same pass; gzip compressed on all cores in fixed 1 MiB blocks (same bytes whatever the
    core count), or zstd. Same inputs, same digest.

    Args:
        level: gzip 0-9 (default 6) or zstd 1-22 (default 3).
        source_date_epoch: clamp mtimes to at most this; ``None`` reads ``$SOURCE_DATE_EPOCH`` (BuildKit's rule).
        changes: a precomputed :func:`diff` result (skips the walk).

    Raises:
        ValueError: bad compression, level, change list or ``$SOURCE_DATE_EPOCH``.
        imgcore.errors.InvalidTree: a change names a missing path, a file shrank while read, unsupported overlayfs.
        OSError: reading the trees or writing ``out``.
    """

def file_list_json(table: dict[str, Any], changes: Any, shadowed_by: Any, start: int, stop: int) -> str:
    """Rows ``start`` to ``stop`` of one layer's ``analyze --json`` file list, each entry as ``json.dumps``
    writes it (``ensure_ascii``), joined by ``", "``: ``path`` (with a leading slash), ``kind``, ``change``,
    ``size``, ``mode``, ``uid``, ``gid``, ``mtime``, then ``sha256`` for a file, ``link``, ``xattrs`` and
    ``hidden_by`` where they apply. ``table`` is a ``layer_tables`` dict, ``changes``/``shadowed_by`` the
    layer's ``image_pass`` arrays. Only the lengths and the rows' own indexes are checked (a chunk costs its
    rows, not its layer).

    Raises:
        ValueError: a column is missing, not contiguous or of another length, the rows are outside the table,
            or a row's index points outside its string table.
    """
