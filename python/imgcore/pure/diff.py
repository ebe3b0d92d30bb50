# ruff: noqa: PTH115, PTH116, PTH118, PTH123, PTH208
# (PTH off: the twin mirrors the Rust walk on str paths with os.lstat/os.listdir, close to the syscalls)
"""Pure-Python twin of the Rust layer diff (``imgcore.diff`` / ``imgcore.write_layer``).

Same signatures, same change sets and the same uncompressed tar bytes (so the same ``diff_id``) as the Rust
core, built only on ``os.lstat``/``os.listdir``, ``tarfile``, ``hashlib`` and ``gzip``. It is the oracle of
the property tests and the baseline of ``benches/bench_diff.py``; it is sequential and slow on purpose.

Rules shared with the Rust core (``rust/core/src/diff.rs``):

- Paths are absolute inside the image (``/etc/passwd``), sorted by path components (a depth-first walk).
- Copy mode compares type, mode, uid/gid, size, mtime (ns), symlink target, device number, xattrs and the
  in-tree hardlink group; content is read only when size is equal and the mtime differs (always when
  ``paranoid``). Overlay mode walks the upperdir only and looks each entry up in the lower view.
- A deleted directory is one ``D``; every ancestor of a change is a ``C``; a changed member of a hardlink group
  brings in the whole group. ``C`` on a directory is always ``metadata_only``.
- The layer is ``tarfile``'s PAX format with empty uname/gname, whole-second mtimes clamped to
  SOURCE_DATE_EPOCH, whiteouts/opaque markers as empty mode-0 files with mtime 0.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import importlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from imgcore.errors import InvalidTree

__all__ = ["Change", "LayerResult", "diff", "write_layer"]

StrPath = str | os.PathLike[str]

_MEDIA_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


@dataclass(frozen=True, order=True)
class Change:
    """One change: ``kind`` is ``"A"``, ``"C"`` or ``"D"``; ``path`` is absolute inside the image."""

    kind: str
    path: str
    metadata_only: bool = False

    def astuple(self) -> tuple[str, str, bool]:
        """``(kind, path, metadata_only)``, the form the Rust ``Change`` compares and pickles as."""
        return (self.kind, self.path, self.metadata_only)

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


@dataclass(frozen=True)
class LayerResult:
    """What :func:`write_layer` wrote."""

    digest: str
    diff_id: str
    size: int
    uncompressed_size: int
    media_type: str
    compression: str
    changes: list[Change]
    entries: int
    whiteouts: int
    hardlinks: int
    added: int
    changed: int
    deleted: int


# --------------------------------------------------------------------------------------------------------------
# Metadata.

_FILE, _DIR, _LNK, _CHR, _BLK, _FIFO, _SOCK = "file", "dir", "symlink", "char", "block", "fifo", "socket"


@dataclass
class _Meta:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    rdev: int
    dev: int
    ino: int
    nlink: int
    xattrs: list[tuple[bytes, bytes]]
    opaque: bool = False
    whiteout_xattr: bool = False
    redirect: bool = False
    metacopy: bool = False

    @property
    def mtime(self) -> int:
        return self.mtime_ns // 1_000_000_000

    def is_whiteout(self) -> bool:
        return (self.kind == _CHR and self.rdev == 0) or (self.kind == _FILE and self.whiteout_xattr)

    def same_attrs(self, other: _Meta) -> bool:
        return (
            self.mode == other.mode
            and self.uid == other.uid
            and self.gid == other.gid
            and self.mtime_ns == other.mtime_ns
            and self.xattrs == other.xattrs
        )


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return _FILE
    if stat.S_ISDIR(mode):
        return _DIR
    if stat.S_ISLNK(mode):
        return _LNK
    if stat.S_ISCHR(mode):
        return _CHR
    if stat.S_ISBLK(mode):
        return _BLK
    if stat.S_ISFIFO(mode):
        return _FIFO
    return _SOCK


def _read_meta(path: str) -> _Meta | None:
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    kind = _kind(st.st_mode)
    m = _Meta(
        kind=kind,
        mode=st.st_mode & 0o7777,
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if kind == _FILE else 0,
        mtime_ns=st.st_mtime_ns,
        rdev=st.st_rdev,
        dev=st.st_dev,
        ino=st.st_ino,
        nlink=st.st_nlink,
        xattrs=[],
    )
    if kind == _SOCK:
        return None  # never part of a layer
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            names = []
        else:
            raise
    xattrs = []
    for name in names:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.EPERM, errno.EACCES):
                continue
            raise
        bname = os.fsencode(name)
        if bname.startswith((b"trusted.overlay.", b"user.overlay.")):
            suffix = bname.split(b".", 1)[1][len(b"overlay.") :]
            if suffix == b"opaque":
                m.opaque = value == b"y"
            elif suffix == b"whiteout":
                m.whiteout_xattr = True
            elif suffix == b"redirect":
                m.redirect = True
            elif suffix == b"metacopy":
                m.metacopy = True
            continue
        xattrs.append((bname, value))
    xattrs.sort()
    m.xattrs = xattrs
    return m


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca = fa.read(256 * 1024)
            cb = fb.read(256 * 1024)
            if ca != cb:
                return False
            if not ca:
                return True


def _same_payload(a: _Meta, a_path: str, b: _Meta, b_path: str, compare_bytes: bool) -> bool:
    if a.kind == _FILE:
        return a.size == b.size and (not compare_bytes or _same_content(a_path, b_path))
    if a.kind == _LNK:
        return os.readlink(a_path) == os.readlink(b_path)
    if a.kind in (_CHR, _BLK):
        return a.rdev == b.rdev
    return True


def _key(rel: str) -> tuple[bytes, ...]:
    return tuple(os.fsencode(rel).split(b"/"))


def _listdir(path: str) -> list[str]:
    return sorted(os.listdir(path), key=os.fsencode)


def _join(root: str, rel: str) -> str:
    return os.path.join(root, rel) if rel else root


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


# --------------------------------------------------------------------------------------------------------------
# Walks.


class _Acc:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str, bool]] = []  # (kind, rel, metadata_only)
        self.tlinks: list[tuple[int, int, str]] = []
        self.blinks: list[tuple[int, int, str]] = []


def _note_link(links: list[tuple[int, int, str]], m: _Meta, rel: str) -> None:
    if m.kind == _FILE and m.nlink > 1:
        links.append((m.dev, m.ino, rel))


def _added_dir(acc: _Acc, root: str, rel: str) -> None:
    for name in _listdir(os.path.join(root, rel)):
        child = f"{rel}/{name}"
        m = _read_meta(os.path.join(root, child))
        if m is None:
            continue
        acc.changes.append(("A", child, False))
        _note_link(acc.tlinks, m, child)
        if m.kind == _DIR:
            _added_dir(acc, root, child)


def _copy_dir(acc: _Acc, base: str, target: str, rel: str, paranoid: bool) -> None:
    bnames = set(_listdir(_join(base, rel)))
    tnames = set(_listdir(_join(target, rel)))
    for name in sorted(bnames | tnames, key=os.fsencode):
        crel = f"{rel}/{name}" if rel else name
        bpath, tpath = os.path.join(base, crel), os.path.join(target, crel)
        b = _read_meta(bpath) if name in bnames else None
        t = _read_meta(tpath) if name in tnames else None
        if b is None and t is None:
            continue
        if t is None:
            acc.changes.append(("D", crel, False))
        elif b is None:
            acc.changes.append(("A", crel, False))
            _note_link(acc.tlinks, t, crel)
            if t.kind == _DIR:
                _added_dir(acc, target, crel)
        elif b.kind != t.kind:
            acc.changes.append(("C", crel, False))
            _note_link(acc.tlinks, t, crel)
            _note_link(acc.blinks, b, crel)
            if t.kind == _DIR:
                _added_dir(acc, target, crel)
        elif t.kind == _DIR:
            if not b.same_attrs(t):
                acc.changes.append(("C", crel, True))
            _copy_dir(acc, base, target, crel, paranoid)
        else:
            _note_link(acc.tlinks, t, crel)
            _note_link(acc.blinks, b, crel)
            size_differs = t.kind == _FILE and b.size != t.size
            must_read = t.kind == _FILE and not size_differs and (paranoid or b.mtime_ns != t.mtime_ns)
            payload_same = not size_differs and _same_payload(b, bpath, t, tpath, must_read)
            if not payload_same:
                acc.changes.append(("C", crel, False))
            elif not b.same_attrs(t):
                acc.changes.append(("C", crel, True))


def _canonical(links: list[tuple[int, int, str]]) -> dict[str, str]:
    groups: dict[tuple[int, int], list[str]] = {}
    for dev, ino, p in links:
        groups.setdefault((dev, ino), []).append(p)
    out = {}
    for members in groups.values():
        if len(members) > 1:
            first = min(members, key=_key)
            for m in members:
                out[m] = first
    return out


def _complete(changes: list[tuple[str, str, bool]], tlinks: list[tuple[int, int, str]], seen: set[str]) -> list[Change]:
    groups: dict[tuple[int, int], list[str]] = {}
    by_path: dict[str, tuple[int, int]] = {}
    for dev, ino, p in tlinks:
        groups.setdefault((dev, ino), []).append(p)
        by_path[p] = (dev, ino)
    extra = []
    for kind, rel, _ in changes:
        if kind == "D" or rel not in by_path:
            continue
        for member in groups[by_path[rel]]:
            if member not in seen:
                seen.add(member)
                extra.append(("C", member, True))
    changes = changes + extra
    parents = []
    for _, rel, _ in changes:
        p = _parent(rel)
        while p and p not in seen:
            seen.add(p)
            parents.append(("C", p, True))
            p = _parent(p)
    changes += parents
    changes.sort(key=lambda c: _key(c[1]))
    return [Change(k, "/" + rel, md) for k, rel, md in changes]


def _copy(base: str, target: str, paranoid: bool) -> list[Change]:
    acc = _Acc()
    _copy_dir(acc, base, target, "", paranoid)
    tcanon, bcanon = _canonical(acc.tlinks), _canonical(acc.blinks)
    seen = {rel for _, rel, _ in acc.changes}
    for p in sorted(set(tcanon) | set(bcanon), key=_key):
        if tcanon.get(p) != bcanon.get(p) and p not in seen:
            acc.changes.append(("C", p, True))
            seen.add(p)
    return _complete(acc.changes, acc.tlinks, seen)


_Stack = list[str]


def _lookup(stack: _Stack, name: str) -> tuple[str, _Meta, _Stack] | None:
    for i, d in enumerate(stack):
        path = os.path.join(d, name)
        m = _read_meta(path)
        if m is None:
            continue
        if m.is_whiteout():
            return None
        child: _Stack = []
        if m.kind == _DIR:
            child.append(path)
            if not m.opaque:
                for below in stack[i + 1 :]:
                    p = os.path.join(below, name)
                    bm = _read_meta(p)
                    if bm is None:
                        continue
                    if bm.kind != _DIR or bm.is_whiteout():
                        break
                    child.append(p)
                    if bm.opaque:
                        break
        return path, m, child
    return None


def _list_stack(stack: _Stack) -> list[str]:
    visible: set[str] = set()
    hidden: set[str] = set()
    for d in stack:
        for n in _listdir(d):
            if n in visible or n in hidden:
                continue
            m = _read_meta(os.path.join(d, n))
            if m is None:
                continue
            (hidden if m.is_whiteout() else visible).add(n)
    return sorted(visible, key=os.fsencode)


def _lookup_path(layers: list[str], rel: str) -> tuple[str, _Meta] | None:
    stack = list(layers)
    found = None
    parts = rel.split("/")
    for i, comp in enumerate(parts):
        hit = _lookup(stack, comp)
        if hit is None:
            return None
        path, m, child = hit
        if i + 1 < len(parts) and m.kind != _DIR:
            return None
        stack = child
        found = (path, m)
    return found


def _ovl_dir(acc: _Acc, upper: str, rel: str, stack: _Stack, opaque: bool) -> None:
    names = _listdir(_join(upper, rel))
    present = set()
    results: list[tuple[str, _Acc]] = []
    for name in names:
        sub = _Acc()
        if _ovl_entry(sub, upper, rel, name, stack, opaque):
            present.add(name)
        results.append((name, sub))
    if opaque and stack:
        for n in _list_stack(stack):
            if n not in present:
                sub = _Acc()
                sub.changes.append(("D", f"{rel}/{n}" if rel else n, False))
                results.append((n, sub))
    results.sort(key=lambda r: os.fsencode(r[0]))
    for _, sub in results:
        acc.changes += sub.changes
        acc.tlinks += sub.tlinks


def _ovl_entry(acc: _Acc, upper: str, rel: str, name: str, stack: _Stack, opaque: bool) -> bool:
    crel = f"{rel}/{name}" if rel else name
    upath = os.path.join(upper, crel)
    u = _read_meta(upath)
    if u is None:
        return False
    if u.is_whiteout():
        if not opaque and _lookup(stack, name) is not None:
            acc.changes.append(("D", crel, False))
        return False
    if u.redirect:
        raise InvalidTree(
            f"{upath}: overlayfs redirect (redirect_dir=on) is not supported; mount with redirect_dir=off", path=upath
        )
    _note_link(acc.tlinks, u, crel)
    lower = _lookup(stack, name)
    if lower is None:
        acc.changes.append(("A", crel, False))
        if u.kind == _DIR:
            _ovl_dir(acc, upper, crel, [], True)
        return True
    lpath, low, child_stack = lower
    if low.kind != u.kind:
        acc.changes.append(("C", crel, False))
        if u.kind == _DIR:
            _ovl_dir(acc, upper, crel, [], True)
    elif u.kind == _DIR:
        child_opaque = opaque or u.opaque
        if child_opaque or not u.same_attrs(low):
            acc.changes.append(("C", crel, True))
        _ovl_dir(acc, upper, crel, child_stack, child_opaque)
    else:
        payload_same = True if (u.kind == _FILE and u.metacopy) else _same_payload(u, upath, low, lpath, True)
        # A copy-up of a hardlinked lower file breaks the link in the merged view (overlayfs without index=on).
        linked = u.kind == _FILE and (u.nlink > 1 or low.nlink > 1)
        identical = payload_same and u.same_attrs(low) and not linked
        if not identical or opaque:
            acc.changes.append(("C", crel, payload_same))
    return True


def _overlay(layers: list[str], upper: str) -> list[Change]:
    acc = _Acc()
    _ovl_dir(acc, upper, "", list(layers), False)
    seen = {rel for _, rel, _ in acc.changes}
    return _complete(acc.changes, acc.tlinks, seen)


def _base_list(base: StrPath | Sequence[StrPath]) -> list[str]:
    if isinstance(base, str | os.PathLike):
        return [os.fspath(base)]
    try:
        paths = [os.fspath(p) for p in base]
    except TypeError:
        raise TypeError("base must be a path or a list of paths") from None
    if not paths:
        raise ValueError("base must name at least one directory")
    return paths


def _check_roots(base: list[str], target: str, overlay: bool) -> None:
    if not overlay and len(base) != 1:
        raise InvalidTree(f"{target}: copy mode compares with one base directory, got {len(base)}", path=target)
    for d in [*base, target]:
        st = os.stat(d)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), d)


def diff(
    base: StrPath | Sequence[StrPath], target: StrPath, *, overlay: bool = False, paranoid: bool = False
) -> list[Change]:
    """Compares ``target`` with ``base``; see the module docs and ``imgcore.diff``."""
    layers = _base_list(base)
    tgt = os.fspath(target)
    _check_roots(layers, tgt, overlay)
    if overlay:
        return _overlay(layers, tgt)
    return _copy(layers[0], tgt, paranoid)


# --------------------------------------------------------------------------------------------------------------
# Layer writing.


class _HashWriter(io.RawIOBase):
    """Hashes and counts what is written, then passes it on."""

    def __init__(self, out: IO[bytes] | None) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.count

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.hash.update(data)
        self.count += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)


def _source_date_epoch(arg: int | None) -> int | None:
    if arg is not None:
        return arg
    v = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not v:
        return None
    try:
        return int(v.strip())
    except ValueError:
        raise ValueError(f"SOURCE_DATE_EPOCH={v!r}: not an integer number of seconds") from None


def _change_list(changes: Iterable[Any]) -> list[Change]:
    out = []
    for c in changes:
        if hasattr(c, "kind") and hasattr(c, "path"):
            kind, path, md = c.kind, os.fspath(c.path), bool(getattr(c, "metadata_only", False))
        elif isinstance(c, tuple):
            kind, path, md = c[0], os.fspath(c[1]), bool(c[2]) if len(c) > 2 else False
        else:
            raise TypeError("changes must hold Change objects or (kind, path) tuples")
        if kind not in ("A", "C", "D"):
            raise ValueError(f"change kind must be 'A', 'C' or 'D', got {kind!r}")
        if not path.startswith("/"):
            raise ValueError(f"change path must be absolute, got {path!r}")
        rel = path.lstrip("/")
        if not rel or any(p in ("", ".", "..") for p in rel.split("/")):
            raise InvalidTree(f"{path}: change path must name an entry below the root, without '.' or '..'", path=path)
        out.append(Change(kind, "/" + rel, md))
    out.sort(key=lambda c: _key(c.path[1:]))
    dedup: list[Change] = []
    for c in out:
        if not dedup or dedup[-1].path != c.path:
            dedup.append(c)
    return dedup


def _under(rel: str, dirs: set[str]) -> bool:
    p = _parent(rel)
    while p:
        if p in dirs:
            return True
        p = _parent(p)
    return False


def _empty(name: str, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = 0
    ti.mtime = mtime
    ti.uname = ti.gname = ""
    return ti


def _write_tar(
    raw: _HashWriter, layers: list[str], target: str, changes: list[Change], overlay: bool, sde: int | None
) -> tuple[int, int, int]:
    def clamp(t: int) -> int:
        return t if sde is None else min(t, sde)

    entries = whiteouts = hardlinks = 0
    first_link: dict[tuple[int, int], str] = {}
    opaque_dirs: set[str] = set()
    tf = tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
    for c in changes:
        rel = c.path[1:]
        tpath = os.path.join(target, rel)
        if c.kind == "D":
            if overlay and _under(rel, opaque_dirs):
                continue  # hidden by the opaque marker already written for an ancestor
            # A deletion of something the target still has would make the image lose it: refuse.
            there = _read_meta(tpath)
            if there is not None and not (overlay and there.is_whiteout()):
                raise InvalidTree(f"{tpath}: D change for a path that exists in the target", path=tpath)
            parent, _, name = rel.rpartition("/")
            tf.addfile(_empty(f"{parent}/.wh.{name}" if parent else f".wh.{name}", clamp(0)))
            entries += 1
            whiteouts += 1
            continue
        m = _read_meta(tpath)
        if m is None:
            if os.path.lexists(tpath):
                continue  # a socket
            raise InvalidTree(f"{tpath}: {c.kind} change for a path that does not exist in the target", path=tpath)
        if overlay and m.is_whiteout():
            raise InvalidTree(f"{tpath}: {c.kind} change for an overlayfs whiteout", path=tpath)
        data_from = tpath
        if overlay and m.kind == _FILE and m.metacopy:
            hit = _lookup_path(layers, rel)
            if hit is None or m.redirect:
                raise InvalidTree(
                    f"{tpath}: overlayfs metacopy file whose data is not at the same path in the lower layers",
                    path=tpath,
                )
            data_from = hit[0]
        ti = tarfile.TarInfo(rel)
        ti.mode, ti.uid, ti.gid, ti.mtime = m.mode, m.uid, m.gid, clamp(m.mtime)
        ti.uname = ti.gname = ""
        ti.pax_headers = {"SCHILY.xattr." + os.fsdecode(k): v.decode("utf-8", "surrogateescape") for k, v in m.xattrs}
        fileobj: BinaryIO | None = None
        if m.kind == _DIR:
            ti.type = tarfile.DIRTYPE
        elif m.kind == _LNK:
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(data_from)
        elif m.kind in (_CHR, _BLK):
            ti.type = tarfile.CHRTYPE if m.kind == _CHR else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(m.rdev), os.minor(m.rdev)
        elif m.kind == _FIFO:
            ti.type = tarfile.FIFOTYPE
        else:
            key = (m.dev, m.ino)
            if m.nlink > 1 and key in first_link:
                ti.type = tarfile.LNKTYPE
                ti.linkname = first_link[key]
                hardlinks += 1
            else:
                if m.nlink > 1:
                    first_link[key] = rel
                ti.type = tarfile.REGTYPE
                ti.size = m.size
                fileobj = open(data_from, "rb")  # noqa: SIM115
        try:
            tf.addfile(ti, fileobj)
        except OSError as e:
            if "unexpected end of data" in str(e):
                raise InvalidTree(f"{data_from}: file shrank while being read", path=data_from) from e
            raise
        finally:
            if fileobj is not None:
                fileobj.close()
        entries += 1
        if overlay and m.kind == _DIR and m.opaque:
            opaque_dirs.add(rel)
            tf.addfile(_empty(f"{rel}/.wh..wh..opq", clamp(0)))
            entries += 1
            whiteouts += 1
    tf.close()
    return entries, whiteouts, hardlinks


def write_layer(
    base: StrPath | Sequence[StrPath],
    target: StrPath,
    out: StrPath,
    *,
    overlay: bool = False,
    paranoid: bool = False,
    compression: str = "gzip",
    level: int | None = None,
    source_date_epoch: int | None = None,
    changes: Iterable[Any] | None = None,
) -> LayerResult:
    """Writes the change set between ``base`` and ``target`` to ``out`` as an OCI layer blob."""
    layers = _base_list(base)
    tgt = os.fspath(target)
    if compression not in _MEDIA_TYPES:
        raise ValueError(f"compression must be 'gzip', 'zstd' or 'none', got {compression!r}")
    if level is not None:
        ok = {"gzip": 0 <= level <= 9, "zstd": 1 <= level <= 22, "none": True}[compression]
        if not ok:
            raise ValueError(f"level {level} is out of range for {compression}")
    sde = _source_date_epoch(source_date_epoch)
    _check_roots(layers, tgt, overlay)
    change_list = (
        _change_list(changes) if changes is not None else diff(layers, tgt, overlay=overlay, paranoid=paranoid)
    )
    out_path = Path(out)
    try:
        with open(out_path, "wb") as f:
            blob = _HashWriter(f)
            codec: Any
            if compression == "gzip":
                codec = gzip.GzipFile(
                    filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=6 if level is None else level
                )
            elif compression == "zstd":
                try:
                    zstandard: Any = importlib.import_module("zstandard")  # optional; typed loosely on purpose
                except ImportError:
                    raise ValueError("the pure-Python twin writes zstd only with the 'zstandard' package") from None
                codec = zstandard.ZstdCompressor(level=3 if level is None else level).stream_writer(blob, closefd=False)
            else:
                codec = None
            sink: IO[bytes] = codec if codec is not None else blob  # type: ignore[assignment]
            tar = _HashWriter(sink)
            entries, whiteouts, hardlinks = _write_tar(tar, layers, tgt, change_list, overlay, sde)
            if codec is not None:
                codec.close()
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    diff_id = "sha256:" + tar.hash.hexdigest()
    digest = "sha256:" + blob.hash.hexdigest()
    return LayerResult(
        digest=digest,
        diff_id=diff_id,
        size=blob.count,
        uncompressed_size=tar.count,
        media_type=_MEDIA_TYPES[compression],
        compression=compression,
        changes=change_list,
        entries=entries,
        whiteouts=whiteouts,
        hardlinks=hardlinks,
        added=sum(c.kind == "A" for c in change_list),
        changed=sum(c.kind == "C" for c in change_list),
        deleted=sum(c.kind == "D" for c in change_list),
    )
