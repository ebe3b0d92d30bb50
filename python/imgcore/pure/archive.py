"""Pure-Python twin of the layer engine (``extract_layer``, ``unpack_layers``, ``layer_index``).

Same signatures and semantics as the Rust entry points, built on :mod:`tarfile` (stream mode, headers only: the
writes are ours), :mod:`gzip`, ``zstandard`` and ``os`` calls relative to directory descriptors. Every directory
is resolved inside the root component by component with ``O_NOFOLLOW`` opens, symlinks expanded as if the root
were ``/``; the last component is never followed. It is the oracle of the property tests and the benchmark
baseline, so it favours clarity over speed.
"""

# The twin works on directory descriptors (os.open(..., dir_fd=...), os.listdir(fd)) on purpose: pathlib
# cannot express root-confined, no-follow operations.
# ruff: noqa: PTH123, PTH208

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from imgcore.errors import DigestMismatch, InvalidArchive, LimitExceeded, UnsafeArchiveEntry

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "LayerStats", "extract_layer", "layer_index", "unpack_layers"]

DEFAULT_MAX_BYTES = 64 << 30
"""Default cap on the uncompressed bytes of one layer (64 GiB): a decompression bomb stops with ``LimitExceeded``."""
DEFAULT_MAX_ENTRIES = 4_000_000
"""Default cap on the tar entries of one layer (``LimitExceeded`` beyond it), for the same reason."""
_MAX_SYMLINKS = 40
_WH = b".wh."
_OPQ = b".wh..wh..opq"
_BLOCK = 512
_MAX_SPARSE_ENTRIES = 1 << 20
_HOLE = 4096
_ZERO_BLOCK = bytes(_HOLE)
_ZEROS = bytes(1 << 20)  # a whole read chunk of zeros: ``==`` against it is a memcmp
IdMap = Sequence[tuple[int, int, int]]
StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class LayerStats:
    """What one layer extraction did (the twin of ``imgcore.LayerStats``)."""

    digest: str = ""
    diff_id: str = ""
    compression: str = "none"
    entries: int = 0
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    whiteouts: int = 0
    bytes: int = 0
    compressed_bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


class _Tap:
    """A reader that hashes and counts what passes, remembering the offset of the last non-zero byte."""

    def __init__(self, inner: Any, limit: int | None = None, ctx: str = "") -> None:
        self.inner = inner
        self.h = hashlib.sha256()
        self.n = 0
        self.last_nonzero = -1
        self.limit = limit
        self.ctx = ctx

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.inner.read(size)
        if data:
            self.h.update(data)
            stripped = 0 if data == _ZEROS else len(data.rstrip(b"\0"))
            if stripped:
                self.last_nonzero = self.n + stripped - 1
            self.n += len(data)
            if self.limit is not None and self.n > self.limit:
                raise LimitExceeded(
                    f"{self.ctx}: limit exceeded: more than {self.limit} uncompressed bytes (max_bytes)"
                )
        return data

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


def _detect(head: bytes, ctx: str) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:3] == b"BZh":
        raise InvalidArchive(f"{ctx}: bzip2 compression is not supported (OCI layers are tar, tar+gzip or tar+zstd)")
    if head[:6] == b"\xfd7zXZ\0":
        raise InvalidArchive(f"{ctx}: xz compression is not supported (OCI layers are tar, tar+gzip or tar+zstd)")
    return "none"


class _Checked:
    """Turns a decompressor's own exceptions into ``InvalidArchive`` naming the stream."""

    def __init__(self, inner: Any, stream: _Stream) -> None:
        self.inner = inner
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self.inner.read(size)
        except (EOFError, OSError) as e:
            raise self.stream.stream_error(e) from None
        except Exception as e:
            if type(e).__name__ == "ZstdError":
                raise self.stream.stream_error(e) from None
            raise
        return data


class _Stream:
    """Opens a blob: raw tap (digest) -> decompressor -> decoded tap (diff_id)."""

    def __init__(self, src: StrPath, max_bytes: int, ctx: str) -> None:
        self.ctx = ctx
        self.file = open(src, "rb")  # noqa: SIM115 - closed in close()
        try:
            self.compression = _detect(self.file.read(6), ctx)
        except BaseException:
            self.file.close()
            raise
        self.file.seek(0)
        self.raw = _Tap(self.file)
        dec: Any
        if self.compression == "gzip":
            dec = gzip.GzipFile(fileobj=self.raw, mode="rb")  # type: ignore[call-overload]
        elif self.compression == "zstd":
            import zstandard

            dec = zstandard.ZstdDecompressor().stream_reader(self.raw, read_across_frames=True)  # type: ignore[arg-type]
        else:
            dec = self.raw
        self.decoded = _Tap(_Checked(dec, self), max_bytes, ctx)

    def drain(self) -> None:
        while self.decoded.read(1 << 20):
            pass

    def close(self) -> None:
        self.file.close()

    def stream_error(self, e: BaseException) -> InvalidArchive:
        return InvalidArchive(f"{self.ctx}: bad {self.compression} stream: {e}")


@dataclass
class _Meta:
    path: bytes
    kind: str
    mode: int
    uid: int
    gid: int
    mtime: int
    mtime_ns: int
    size: int
    link: bytes
    dev: tuple[int, int]
    xattrs: list[tuple[bytes, bytes]]
    #: a GNU sparse file's data segments (``size`` is then its real size; tarfile's reader yields the holes as zeros)
    sparse: list[tuple[int, int]] | None = None


class _SparseError(Exception):
    """A GNU sparse map tarfile would read without bounds: raised from inside tarfile, turned into a typed error."""

    def __init__(self, name: str, reason: str, limit: bool = False) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason
        self.limit = limit


class _TarInfo(tarfile.TarInfo):
    """tarfile's TarInfo with a bounded reader of GNU sparse 1.0 maps (tarfile's own trusts the announced count and
    reads on through the following headers)."""

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: dict[str, str], tarfile_: Any) -> None:
        name = pax_headers.get("GNU.sparse.name", next.name)
        stored = next.size  # the header's size: the map blocks and the data
        numbers: list[int] = []
        count: int | None = None
        buf = b""
        consumed = 0
        while count is None or len(numbers) < 2 * count:
            if b"\n" not in buf:
                if len(buf) > 20:
                    raise _SparseError(name, "overlong number in the sparse 1.0 map")
                if consumed >= stored:
                    raise _SparseError(name, "sparse 1.0 map runs past the member's data")
                block = tarfile_.fileobj.read(_BLOCK)
                if len(block) < _BLOCK:
                    raise _SparseError(name, "truncated sparse 1.0 map")
                consumed += _BLOCK
                buf += block
                continue
            line, buf = buf.split(b"\n", 1)
            if not line.isdigit() or len(line) > 20:
                raise _SparseError(name, f"bad number {line.decode(errors='replace')!r} in the sparse 1.0 map")
            n = int(line)
            if count is None:
                if n > _MAX_SPARSE_ENTRIES:
                    raise _SparseError(
                        name, f"sparse map of {n} entries exceeds the {_MAX_SPARSE_ENTRIES}-entry limit", limit=True
                    )
                count = n
            else:
                numbers.append(n)
        next.offset_data = tarfile_.fileobj.tell()
        # typeshed says bytes; tarfile keeps (offset, size) pairs there.
        next.sparse = list(zip(numbers[::2], numbers[1::2], strict=True))  # type: ignore[assignment]


def _check_sparse(ti: tarfile.TarInfo, span: int, max_bytes: int | None) -> list[tuple[int, int]]:
    """The twin of the Rust reader's ``check_sparse``: sorted, not overlapping, inside the real size, describing the
    member's data (``span``: its whole blocks), no more than the entry limit; zero-length entries dropped."""
    real = ti.size
    pax = ti.pax_headers
    numblocks = pax.get("GNU.sparse.numblocks")
    if numblocks is not None:
        if not numblocks.isdigit():
            raise _SparseError(ti.name, f"corrupt header field PAX sparse numblocks: {numblocks}")
        if int(numblocks) > _MAX_SPARSE_ENTRIES:
            raise _SparseError(
                ti.name, f"sparse map of {numblocks} entries exceeds the {_MAX_SPARSE_ENTRIES}-entry limit", limit=True
            )
    raw = cast("list[tuple[int, int]]", ti.sparse or [])  # typeshed says bytes: tarfile keeps (offset, size) pairs
    if "GNU.sparse.map" in pax and pax["GNU.sparse.map"].count(",") % 2 == 0:
        raise _SparseError(ti.name, "sparse map has an odd count of numbers")
    if len(raw) > _MAX_SPARSE_ENTRIES:
        raise _SparseError(ti.name, f"sparse map exceeds the {_MAX_SPARSE_ENTRIES}-entry limit", limit=True)
    if numblocks is not None and int(numblocks) != len(raw):
        raise _SparseError(ti.name, f"sparse map announces {numblocks} entries but lists {2 * len(raw)} numbers")
    if max_bytes is not None and real > max_bytes:
        raise _SparseError(
            ti.name, f"sparse file of {real} bytes exceeds the {max_bytes}-byte limit (max_bytes)", limit=True
        )
    out: list[tuple[int, int]] = []
    end = data = 0
    for off, length in raw:
        if off > real:
            raise _SparseError(ti.name, f"sparse map entry at offset {off} lies beyond the file's size {real}")
        if length == 0:
            continue
        if off + length > real:
            raise _SparseError(ti.name, f"sparse map entry {off}+{length} runs past the file's size {real}")
        if off < end:
            raise _SparseError(ti.name, f"sparse map entries overlap or are out of order at offset {off}")
        end = off + length
        data += length
        out.append((off, length))
    if data > span:
        raise _SparseError(ti.name, f"sparse map describes {data} data bytes but the member holds {span}")
    if -(-data // _BLOCK) * _BLOCK != span:
        raise _SparseError(ti.name, f"the member holds {span} data bytes but its sparse map describes only {data}")
    return out


def _write_holey(fd: int, pos: int, chunk: bytes) -> int | None:
    """Writes ``chunk`` at ``pos`` of a fresh file, leaving aligned all-zero 4 KiB blocks as holes; returns the end
    of the last byte written, if any (the twin of the Rust extractor's ``write_holey``)."""
    if pos % _HOLE == 0 and chunk == _ZEROS:
        return None
    if _ZERO_BLOCK not in chunk:
        os.pwrite(fd, chunk, pos)
        return pos + len(chunk)
    view = memoryview(chunk)
    last = None
    run: int | None = None
    i = 0
    while i < len(chunk):
        j = min(len(chunk), i + _HOLE - (pos + i) % _HOLE)
        if j - i == _HOLE and view[i:j] == _ZERO_BLOCK:
            if run is not None:
                os.pwrite(fd, view[run:i], pos + run)
                last = pos + i
                run = None
        elif run is None:
            run = i
        i = j
    if run is not None:
        os.pwrite(fd, view[run:], pos + run)
        last = pos + len(chunk)
    return last


_KIND = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.GNUTYPE_SPARSE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


_SPECIAL_NAME = {"char": "char device", "block": "block device", "fifo": "fifo"}
_TYPE_NAME = {
    "V": "GNU volume label",
    "M": "GNU multi-volume continuation",
    "N": "old GNU long names",
    "D": "GNU dumpdir",
    "A": "Solaris ACL",
    "E": "Solaris extended attributes",
    "X": "Solaris extended attributes",
    "I": "star inode metadata",
}


def _pax_time(v: str) -> tuple[int, int]:
    secs, _, frac = v.partition(".")
    s = int(secs)
    ns = int((frac[:9]).ljust(9, "0")) if frac else 0
    if s < 0 and ns:
        return s - 1, 1_000_000_000 - ns
    return s, ns


def _entries(stream: _Stream, max_entries: int) -> Iterator[tuple[_Meta, IO[bytes] | None]]:
    """Yields each entry's metadata (extension headers applied) and its data reader, in order."""
    ctx = stream.ctx
    try:
        # A stream over our reader (nothing to close); 1 MiB reads, not tarfile's 10 KiB records.
        tf = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
            fileobj=stream.decoded,
            mode="r|",
            encoding="utf-8",
            errors="surrogateescape",
            tarinfo=_TarInfo,
            bufsize=1 << 20,
        )
    except _SparseError as e:  # tarfile reads the first member while opening
        cls = LimitExceeded if e.limit else InvalidArchive
        raise cls(f"{ctx}: entry {e.name!r}: {e.reason}") from None
    except tarfile.ReadError as e:
        if stream.decoded.n == 0:
            raise InvalidArchive(f"{ctx}: truncated tar stream: no end-of-archive marker after entry ''") from None
        raise InvalidArchive(f"{ctx}: corrupt tar stream: {e}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise stream.stream_error(e) from None
    count = 0
    last = b""
    while True:
        try:
            ti = tf.next()
        except _SparseError as e:
            cls = LimitExceeded if e.limit else InvalidArchive
            raise cls(f"{ctx}: entry {e.name!r}: {e.reason}") from None
        except (OSError, EOFError) as e:
            if isinstance(e, tarfile.ReadError) and not isinstance(e.__context__, (OSError, EOFError)):
                raise InvalidArchive(
                    f"{ctx}: corrupt tar stream after {last.decode(errors='replace')!r}: {e}"
                ) from None
            raise stream.stream_error(e) from None
        except tarfile.TarError as e:
            raise InvalidArchive(f"{ctx}: corrupt tar stream after {last.decode(errors='replace')!r}: {e}") from None
        if ti is None:
            break
        tf.members = []
        if ti.type in (tarfile.XGLTYPE,):
            continue
        count += 1
        if count > max_entries:
            raise LimitExceeded(f"{ctx}: limit exceeded: more than {max_entries} entries (max_entries)")
        path = os.fsencode(ti.name)
        if ti.sparse is not None and "GNU.sparse.name" in ti.pax_headers:
            # The real name beats a ``path`` record (GNU tar's GNUSparseFile.NNN/...), as in Go and the Rust core;
            # tarfile applies the records in archive order instead.
            path = os.fsencode(ti.pax_headers["GNU.sparse.name"])
        if ti.type == tarfile.DIRTYPE or (ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and ti.name.endswith("/")):
            kind = "dir"
        else:
            kind = _KIND.get(ti.type, "other:" + ti.type.decode("latin-1"))
        pax = ti.pax_headers
        mtime, mtime_ns = int(ti.mtime), 0
        if "mtime" in pax:
            mtime, mtime_ns = _pax_time(pax["mtime"])
        xattrs = [
            (os.fsencode(k[len("SCHILY.xattr.") :]), v.encode("utf-8", "surrogateescape"))
            for k, v in pax.items()
            if k.startswith("SCHILY.xattr.")
        ]
        if not path:
            raise InvalidArchive(f"{ctx}: tar entry #{count}: entry with an empty name")
        meta = _Meta(
            path, kind, ti.mode & 0o7777, ti.uid, ti.gid, mtime, mtime_ns, ti.size if ti.isreg() else 0,
            os.fsencode(ti.linkname), (ti.devmajor, ti.devminor), xattrs,
        )  # fmt: skip
        if ti.sparse is not None and kind == "file":
            try:
                meta.sparse = _check_sparse(ti, tf.offset - ti.offset_data, stream.decoded.limit)
            except _SparseError as e:
                cls = LimitExceeded if e.limit else InvalidArchive
                raise cls(f"{ctx}: entry {e.name!r}: {e.reason}") from None
        data = tf.extractfile(ti) if ti.isreg() else None
        try:
            yield meta, data
        except (EOFError, gzip.BadGzipFile) as e:
            raise stream.stream_error(e) from None
        last = path
    end = tf.offset
    try:
        stream.drain()
    except (OSError, EOFError) as e:
        raise stream.stream_error(e) from None
    total = stream.decoded.n
    if total < end + _BLOCK and stream.decoded.last_nonzero < end:
        raise InvalidArchive(
            f"{ctx}: truncated tar stream: no end-of-archive marker after entry {last.decode(errors='replace')!r}"
        )
    if stream.decoded.last_nonzero >= end:
        if stream.decoded.last_nonzero < end + _BLOCK:
            raise InvalidArchive(f"{ctx}: corrupt tar stream after {last.decode(errors='replace')!r}: invalid header")
        raise InvalidArchive(f"{ctx}: trailing garbage after the end-of-archive marker")


def _clean(unsafe: bytes) -> list[bytes] | None:
    out: list[bytes] = []
    for c in unsafe.split(b"/"):
        if c in (b"", b"."):
            continue
        if c == b"..":
            if not out:
                return None
            out.pop()
        else:
            out.append(c)
    return out


def _name(p: bytes) -> str:
    return p.decode("utf-8", "replace")


class _Root:
    """Resolves directories inside the root with O_NOFOLLOW opens (the twin of root.rs's walk)."""

    def __init__(self, path: StrPath) -> None:
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def dir(self, comps: Sequence[bytes], create: bool) -> int:
        """A new O_PATH descriptor of directory ``comps`` (caller closes it)."""
        stack: list[int] = []
        todo = list(reversed(comps))
        links = 0
        flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            while todo:
                name = todo.pop()
                if name in (b"", b"."):
                    continue
                if name == b"..":
                    if stack:
                        os.close(stack.pop())
                    continue
                cur = stack[-1] if stack else self.fd
                try:
                    stack.append(os.open(name, flags, dir_fd=cur))
                    continue
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=cur)
                    todo.append(name)
                    continue
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                st = os.stat(name, dir_fd=cur, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "Too many levels of symbolic links")
                target = os.readlink(name, dir_fd=cur)
                tb = os.fsencode(target)
                if tb.startswith(b"/"):
                    while stack:
                        os.close(stack.pop())
                todo.extend(reversed(tb.split(b"/")))
            result = stack.pop() if stack else os.dup(self.fd)
            return result
        finally:
            for fd in stack:
                os.close(fd)


def _listdir(dirfd: int) -> list[bytes]:
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        return [os.fsencode(n) for n in os.listdir(fd)]
    finally:
        os.close(fd)


def _prune(dirfd: int, name: bytes, path: bytes, keep: Callable[[bytes], bool], depth: int = 0) -> None:
    """Removes ``name`` and below, keeping (and descending into) paths for which ``keep`` is true."""
    if depth > 4096:
        raise OSError("directory tree too deep to remove")
    kept = keep(path)
    if not kept:
        try:
            os.unlink(name, dir_fd=dirfd)
            return
        except FileNotFoundError:
            return
        except (IsADirectoryError, PermissionError):
            pass
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except FileNotFoundError:
        return
    except OSError as e:
        if kept and e.errno in (errno.ENOTDIR, errno.ELOOP):
            return
        raise
    try:
        names = [os.fsencode(n) for n in os.listdir(fd)]
        if not kept and names:
            os.fchmod(fd, 0o700)
        for child in names:
            cpath = path + b"/" + child if path else child
            _prune(fd, child, cpath, (lambda _p: False) if not kept else keep, depth + 1)
    finally:
        os.close(fd)
    if not kept:
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(name, dir_fd=dirfd)


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _map_id(i: int, maps: IdMap) -> int | None:
    if not maps:
        return i
    for inner, outer, count in maps:
        if inner <= i < inner + count:
            return outer + (i - inner)
    return None


class _LayerPaths:
    """The paths one layer has written, and their ancestors: a whiteout or an opaque directory never removes these
    (whiteouts act only on lower layers, wherever they stand in the archive)."""

    def __init__(self) -> None:
        self.written: set[bytes] = set()
        self.ancestors: set[bytes] = set()

    def add(self, comps: list[bytes]) -> None:
        self.written.add(b"/".join(comps))
        for i in range(len(comps) - 1, 0, -1):
            a = b"/".join(comps[:i])
            if a in self.ancestors:
                break
            self.ancestors.add(a)

    def __contains__(self, p: bytes) -> bool:
        return p in self.written or p in self.ancestors


class _Extractor:
    def __init__(self, dest: StrPath, *, overlay: bool, same_owner: bool | None, uid_map: IdMap | None,
                 gid_map: IdMap | None, allow_devices: bool) -> None:  # fmt: skip
        self.root = _Root(dest)
        self.overlay = overlay
        self.uid_map = list(uid_map or [])
        self.gid_map = list(gid_map or [])
        self.chown = (os.geteuid() == 0 if same_owner is None else same_owner) or bool(self.uid_map or self.gid_map)
        self.allow_devices = allow_devices
        self.umask = _umask()
        self.ctx = ""
        self.reset("")

    def reset(self, ctx: str) -> None:
        self.ctx = ctx
        self.layer_paths = _LayerPaths()
        self.dirs: dict[bytes, tuple[int, int, int]] = {}
        self.counts = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "whiteouts": 0}
        self.skipped: list[tuple[str, str]] = []

    # -- errors
    def unsafe(self, path: bytes, reason: str) -> UnsafeArchiveEntry:
        return UnsafeArchiveEntry(f"{self.ctx}: entry {_name(path)!r} {reason}", entry=_name(path))

    def invalid(self, path: bytes, reason: str) -> InvalidArchive:
        return InvalidArchive(f"{self.ctx}: entry {_name(path)!r}: {reason}")

    def fs_err(self, path: bytes, what: str, e: OSError) -> Exception:
        if e.errno == errno.ELOOP:
            return self.unsafe(path, f"{what}: too many levels of symbolic links")
        if e.errno == errno.ENOTDIR:
            return self.invalid(path, f"{what}: a parent of the entry is not a directory")
        return OSError(e.errno, e.strerror, f"{self.ctx}: entry {_name(path)!r} ({what})")

    def dir(self, comps: Sequence[bytes], create: bool, entry: bytes) -> int:
        try:
            return self.root.dir(comps, create)
        except OSError as e:
            raise self.fs_err(entry, "open parent", e) from None

    def keep(self, p: bytes) -> bool:
        return p in self.layer_paths

    def ids(self, m: _Meta) -> tuple[int, int] | None:
        if not self.chown:
            return None
        uid = _map_id(m.uid, self.uid_map)
        if uid is None:
            raise self.invalid(m.path, f"uid {m.uid} has no mapping in uid_map")
        gid = _map_id(m.gid, self.gid_map)
        if gid is None:
            raise self.invalid(m.path, f"gid {m.gid} has no mapping in gid_map")
        return uid, gid

    def clear(self, pdir: int, name: bytes, keep_dir: bool, entry: bytes) -> bool:
        try:
            st = os.stat(name, dir_fd=pdir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            _prune(pdir, name, entry, lambda _p: False)
        else:
            os.unlink(name, dir_fd=pdir)
        return False

    def set_xattrs(self, fd: int, m: _Meta) -> None:
        for k, v in m.xattrs:
            if k.startswith(b"trusted.overlay."):
                self.skipped.append((_name(m.path), f"xattr {_name(k)}: overlayfs metadata is not taken from archives"))
                continue
            try:
                os.setxattr(fd, k, v)
            except OSError as e:
                self.skipped.append((_name(m.path), f"xattr {_name(k)}: {e}"))

    # -- entries
    def entry(self, m: _Meta, data: IO[bytes] | None) -> None:
        comps = _clean(m.path)
        if comps is None:
            raise self.unsafe(m.path, 'escapes the root ("..")')
        if not comps:
            if m.kind == "dir":
                return
            raise self.unsafe(m.path, "names the root directory itself")
        name, parent = comps[-1], comps[:-1]
        if name.startswith(_WH):
            self.whiteout(m, parent, name)
            return
        self.layer_paths.add(comps)
        pdir = self.dir(parent, True, m.path)
        try:
            if m.kind == "file":
                self.file(pdir, name, m, data)
            elif m.kind == "dir":
                self.directory(pdir, name, comps, m)
            elif m.kind == "symlink":
                self.symlink(pdir, name, m)
            elif m.kind == "hardlink":
                self.hardlink(pdir, name, comps, m)
            elif m.kind in ("char", "block", "fifo"):
                self.special(pdir, name, m)
            else:
                t = m.kind[6:]
                self.skipped.append((_name(m.path), f"unsupported entry type {t!r} ({_TYPE_NAME.get(t, 'unknown')})"))
        finally:
            os.close(pdir)

    def whiteout(self, m: _Meta, parent: list[bytes], name: bytes) -> None:
        self.counts["whiteouts"] += 1
        if name == _OPQ:
            pdir = self.dir(parent, True, m.path)
            try:
                if self.overlay:
                    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pdir)
                    try:
                        os.setxattr(fd, b"trusted.overlay.opaque", b"y")
                    except OSError as e:
                        raise self.fs_err(m.path, "set trusted.overlay.opaque (needs root)", e) from None
                    finally:
                        os.close(fd)
                    return
                ppath = b"/".join(parent)
                for child in _listdir(pdir):
                    _prune(pdir, child, ppath + b"/" + child if ppath else child, self.keep)
            finally:
                os.close(pdir)
            return
        if name.startswith(b".wh..wh."):
            self.skipped.append((_name(m.path), "aufs metadata entry"))
            return
        target = name[len(_WH) :]
        if target in (b"", b".", b".."):
            raise self.unsafe(m.path, "whiteout names no entry of its directory")
        if self.overlay:
            pdir = self.dir(parent, True, m.path)
            try:
                self.clear(pdir, target, False, m.path)
                try:
                    os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pdir)
                except OSError as e:
                    raise self.fs_err(m.path, "create overlay whiteout (char 0/0, needs root)", e) from None
            finally:
                os.close(pdir)
            return
        try:
            pdir = self.root.dir(parent, False)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise self.fs_err(m.path, "open parent", e) from None
        try:
            ppath = b"/".join(parent)
            _prune(pdir, target, ppath + b"/" + target if ppath else target, self.keep)
        finally:
            os.close(pdir)

    def file(self, pdir: int, name: bytes, m: _Meta, data: IO[bytes] | None) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        create_mode = m.mode & 0o777
        try:
            fd = os.open(name, flags, create_mode, dir_fd=pdir)
        except FileExistsError:
            self.clear(pdir, name, False, m.path)
            fd = os.open(name, flags, create_mode, dir_fd=pdir)
        try:
            written = end = 0
            if data is not None:
                while True:
                    try:
                        chunk = data.read(1 << 20)
                    except tarfile.ReadError as e:
                        raise self.invalid(m.path, f"truncated: {e}") from None
                    if not chunk:
                        break
                    last = _write_holey(fd, written, chunk)
                    if last is not None:
                        end = last
                    written += len(chunk)
            if written != m.size:
                raise self.invalid(m.path, f"truncated: entry data ends after {written} of {m.size} bytes")
            if end < m.size:
                os.ftruncate(fd, m.size)  # trailing zeros or a trailing hole: the length, not written blocks
            ids = self.ids(m)
            if ids is not None:
                os.fchown(fd, *ids)
            if m.mode != create_mode & ~self.umask or (ids is not None and m.mode & 0o6000):
                os.fchmod(fd, m.mode)
            if m.xattrs:
                self.set_xattrs(fd, m)
            os.utime(fd, ns=(m.mtime * 10**9 + m.mtime_ns,) * 2)
        finally:
            os.close(fd)
        self.counts["files"] += 1

    def directory(self, pdir: int, name: bytes, comps: list[bytes], m: _Meta) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=pdir)
        except FileExistsError:
            if not self.clear(pdir, name, True, m.path):
                os.mkdir(name, 0o700, dir_fd=pdir)
        ids = self.ids(m)
        if ids is not None:
            os.chown(name, *ids, dir_fd=pdir, follow_symlinks=False)
        if m.xattrs:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pdir)
            try:
                self.set_xattrs(fd, m)
            finally:
                os.close(fd)
        self.dirs[b"/".join(comps)] = (m.mode, m.mtime, m.mtime_ns)
        self.counts["dirs"] += 1

    def after_node(self, pdir: int, name: bytes, m: _Meta) -> None:
        ids = self.ids(m)
        if ids is not None:
            os.chown(name, *ids, dir_fd=pdir, follow_symlinks=False)
        for k, _ in m.xattrs:
            self.skipped.append((_name(m.path), f"xattr {_name(k)} on a {m.kind} is not applied"))
        os.utime(name, ns=(m.mtime * 10**9 + m.mtime_ns,) * 2, dir_fd=pdir, follow_symlinks=False)

    def symlink(self, pdir: int, name: bytes, m: _Meta) -> None:
        if not m.link:
            raise self.invalid(m.path, "symlink with an empty target")
        try:
            os.symlink(m.link, name, dir_fd=pdir)
        except FileExistsError:
            self.clear(pdir, name, False, m.path)
            os.symlink(m.link, name, dir_fd=pdir)
        self.after_node(pdir, name, m)
        self.counts["symlinks"] += 1

    def hardlink(self, pdir: int, name: bytes, comps: list[bytes], m: _Meta) -> None:
        tcomps = _clean(m.link)
        if tcomps is None:
            raise self.unsafe(m.path, "hardlink target escapes the root")
        if not tcomps:
            raise self.unsafe(m.path, "hardlink to the root directory")
        if tcomps == comps:
            return
        missing = self.invalid(m.path, f"hardlink target {_name(m.link)!r} does not exist")
        try:
            tdir = self.root.dir(tcomps[:-1], False)
        except FileNotFoundError:
            raise missing from None
        except OSError as e:
            raise self.fs_err(m.path, "open parent", e) from None
        try:
            for attempt in (0, 1):
                try:
                    os.link(tcomps[-1], name, src_dir_fd=tdir, dst_dir_fd=pdir, follow_symlinks=False)
                    break
                except FileExistsError:
                    if attempt:
                        raise
                    self.clear(pdir, name, False, m.path)
                except FileNotFoundError:
                    raise missing from None
                except PermissionError:
                    raise self.invalid(m.path, f"hardlink target {_name(m.link)!r} is a directory") from None
        finally:
            os.close(tdir)
        self.counts["hardlinks"] += 1

    def special(self, pdir: int, name: bytes, m: _Meta) -> None:
        if not self.allow_devices:
            why = "(needs allow_devices)" if m.kind == "fifo" else "(needs root and allow_devices)"
            self.skipped.append((_name(m.path), f"{_SPECIAL_NAME[m.kind]} {why}"))
            return
        ft = {"char": stat.S_IFCHR, "block": stat.S_IFBLK, "fifo": stat.S_IFIFO}[m.kind]
        dev = os.makedev(*m.dev) if m.kind != "fifo" else 0
        try:
            try:
                os.mknod(name, ft | (m.mode & 0o777), dev, dir_fd=pdir)
            except FileExistsError:
                self.clear(pdir, name, False, m.path)
                os.mknod(name, ft | (m.mode & 0o777), dev, dir_fd=pdir)
        except PermissionError:
            self.skipped.append((_name(m.path), f"{_SPECIAL_NAME[m.kind]} (needs root: mknod not permitted)"))
            return
        self.after_node(pdir, name, m)

    def finish_dirs(self) -> None:
        for path, (mode, mtime, ns) in sorted(self.dirs.items(), key=lambda kv: -kv[0].count(b"/")):
            comps = path.split(b"/")
            try:
                pdir = self.root.dir(comps[:-1], False)
            except OSError:
                continue
            try:
                fd = os.open(comps[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pdir)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                if e.errno == errno.ELOOP:
                    continue
                raise
            finally:
                os.close(pdir)
            try:
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime * 10**9 + ns,) * 2)
            finally:
                os.close(fd)

    def layer(self, src: StrPath, max_bytes: int, max_entries: int, expected: dict[str, str | None]) -> LayerStats:
        stream = _Stream(src, max_bytes, self.ctx)
        try:
            entries = 0
            for meta, data in _entries(stream, max_entries):
                entries += 1
                self.entry(meta, data)
            self.finish_dirs()
            digest, diff_id = stream.raw.digest(), stream.decoded.digest()
            stats = LayerStats(
                digest=digest, diff_id=diff_id, compression=stream.compression, entries=entries,
                bytes=stream.decoded.n, compressed_bytes=stream.raw.n, skipped=self.skipped, **self.counts,
            )  # fmt: skip
        finally:
            stream.close()
        # NOTE: the content is already written; on a mismatch the caller must discard dest.
        for what, actual in (("digest", digest), ("diff_id", diff_id)):
            want = expected.get(what)
            if want is not None and want != actual:
                raise DigestMismatch(
                    f"{self.ctx}: {what}: digest mismatch: expected {want}, got {actual}", expected=want, actual=actual
                )
        return stats


def extract_layer(
    src: StrPath,
    dest: StrPath,
    *,
    overlay: bool = False,
    expected_digest: str | None = None,
    expected_diff_id: str | None = None,
    same_owner: bool | None = None,
    uid_map: IdMap | None = None,
    gid_map: IdMap | None = None,
    allow_devices: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> LayerStats:
    """Twin of ``imgcore.extract_layer``."""
    ex = _Extractor(dest, overlay=overlay, same_owner=same_owner, uid_map=uid_map, gid_map=gid_map,
                    allow_devices=allow_devices)  # fmt: skip
    try:
        ex.reset(f"extract {os.fspath(src)}")
        return ex.layer(src, max_bytes, max_entries, {"digest": expected_digest, "diff_id": expected_diff_id})
    finally:
        ex.root.close()


def unpack_layers(
    layers: Sequence[StrPath],
    dest: StrPath,
    *,
    same_owner: bool | None = None,
    uid_map: IdMap | None = None,
    gid_map: IdMap | None = None,
    allow_devices: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    expected_diff_ids: Sequence[str] | None = None,
) -> list[LayerStats]:
    """Twin of ``imgcore.unpack_layers``."""
    if expected_diff_ids and len(expected_diff_ids) != len(layers):
        raise InvalidArchive(
            f"unpack {os.fspath(dest)}: {len(layers)} layers but {len(expected_diff_ids)} expected diff_ids"
        )
    ex = _Extractor(dest, overlay=False, same_owner=same_owner, uid_map=uid_map, gid_map=gid_map,
                    allow_devices=allow_devices)  # fmt: skip
    out = []
    try:
        for i, src in enumerate(layers):
            ex.reset(f"extract layer {i} ({os.fspath(src)})")
            want = expected_diff_ids[i] if expected_diff_ids else None
            out.append(ex.layer(src, max_bytes, max_entries, {"diff_id": want}))
    finally:
        ex.root.close()
    return out


IndexRow = tuple[str, str, int, int, int, int, int, str, int]


class _Union:
    """The twin of index.rs: the merged view as a dict, in archive order."""

    def __init__(self) -> None:
        self.map: dict[bytes, list[Any]] = {}
        self.layer = 0
        self.ctx = ""
        self.layer_paths = _LayerPaths()

    def kept(self, p: bytes) -> bool:
        return p in self.layer_paths

    def prune(self, p: bytes, include_self: bool) -> None:
        prefix = p + b"/" if p else b""
        for k in [k for k in self.map if k.startswith(prefix) and k != p and not self.kept(k)]:
            del self.map[k]
        if include_self and p in self.map and not self.kept(p):
            del self.map[p]

    def resolve_dir(self, comps: Sequence[bytes], create: bool, entry: bytes) -> list[bytes] | None:
        real: list[bytes] = []
        todo = list(reversed(comps))
        links = 0
        while todo:
            c = todo.pop()
            if c in (b"", b"."):
                continue
            if c == b"..":
                if real:
                    real.pop()
                continue
            real.append(c)
            key = b"/".join(real)
            e = self.map.get(key)
            if e is None:
                if not create:
                    return None
                self.map[key] = [key, "dir", 0o755, 0, 0, 0, 0, b"", self.layer]
            elif e[1] == "symlink":
                links += 1
                if links > _MAX_SYMLINKS:
                    raise UnsafeArchiveEntry(
                        f"{self.ctx}: entry {_name(entry)!r} open parent: too many levels of symbolic links",
                        entry=_name(entry),
                    )
                real.pop()
                if e[7].startswith(b"/"):
                    real.clear()
                todo.extend(reversed(e[7].split(b"/")))
            elif e[1] != "dir":
                raise InvalidArchive(
                    f"{self.ctx}: entry {_name(entry)!r}: open parent: a parent of the entry is not a directory"
                )
        return real

    def entry(self, m: _Meta) -> None:
        comps = _clean(m.path)

        def unsafe(reason: str) -> UnsafeArchiveEntry:
            return UnsafeArchiveEntry(f"{self.ctx}: entry {_name(m.path)!r} {reason}", entry=_name(m.path))

        if comps is None:
            raise unsafe('escapes the root ("..")')
        if not comps:
            if m.kind == "dir":
                return
            raise unsafe("names the root directory itself")
        name, parent = comps[-1], comps[:-1]
        if name.startswith(_WH):
            if name == _OPQ:
                real = self.resolve_dir(parent, True, m.path)
                if real is not None:
                    self.prune(b"/".join(real), False)
                return
            if name.startswith(b".wh..wh."):
                return
            target = name[4:]
            if target in (b"", b".", b".."):
                raise unsafe("whiteout names no entry of its directory")
            try:
                real = self.resolve_dir(parent, False, m.path)
            except InvalidArchive:
                return
            if real is not None:
                self.prune(b"/".join([*real, target]), True)
            return
        self.layer_paths.add(comps)
        real = self.resolve_dir(parent, True, m.path)
        if real is None:
            return
        key = b"/".join([*real, name])
        e = [key, m.kind, m.mode, m.uid, m.gid, m.size if m.kind == "file" else 0, m.mtime, m.link, self.layer]
        if m.kind == "hardlink":
            tcomps = _clean(m.link)
            if tcomps is None:
                raise unsafe("hardlink target escapes the root")
            if not tcomps:
                raise unsafe("hardlink to the root directory")
            if tcomps == comps:
                return
            missing = InvalidArchive(
                f"{self.ctx}: entry {_name(m.path)!r}: hardlink target {_name(m.link)!r} does not exist"
            )
            treal = self.resolve_dir(tcomps[:-1], False, m.path)
            if treal is None:
                raise missing
            tkey = b"/".join([*treal, tcomps[-1]])
            t = self.map.get(tkey)
            if t is None:
                raise missing
            if t[1] == "dir":
                raise InvalidArchive(
                    f"{self.ctx}: entry {_name(m.path)!r}: hardlink target {_name(m.link)!r} is a directory"
                )
            e[2:7] = t[2:7]
            e[7] = tkey
        elif m.kind.startswith("other"):
            return
        old = self.map.get(key)
        if old is not None and old[1] == "dir" and m.kind != "dir":
            prefix = key + b"/"
            for k in [k for k in self.map if k.startswith(prefix)]:
                del self.map[k]
        self.map[key] = e


def layer_index(
    layers: Sequence[StrPath], *, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES
) -> list[IndexRow]:
    """Twin of ``imgcore.layer_index``."""
    u = _Union()
    for i, src in enumerate(layers):
        u.layer = i
        u.ctx = f"index layer {i} ({os.fspath(src)})"
        u.layer_paths = _LayerPaths()
        stream = _Stream(src, max_bytes, u.ctx)
        try:
            for meta, _data in _entries(stream, max_entries):
                u.entry(meta)
        finally:
            stream.close()
    rows = []
    for key in sorted(u.map):
        p, kind, mode, uid, gid, size, mtime, link, layer = u.map[key]
        rows.append((os.fsdecode(p), kind, mode, uid, gid, size, mtime, os.fsdecode(link), layer))
    return rows
