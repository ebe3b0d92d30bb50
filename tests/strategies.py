"""Shared test builders and hypothesis strategies: tar entries and blobs, random layer stacks with their union
model (a dict from path to node), and tree snapshots to compare extractions.

``build_tar`` writes exactly the entries given (no implied parents), so hostile cases are expressible;
``layer_stacks()`` draws stacks that docker could produce (every layer lists the parents of what it writes,
hardlinks point into the same layer) so the kernel's overlayfs can serve as a second oracle.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "Layer",
    "TarEntry",
    "build_tar",
    "layer_stacks",
    "model_tree",
    "tree_snapshot",
]


@dataclass
class TarEntry:
    """One tar member as the test wants it written."""

    name: str
    kind: str = "file"  # file, dir, symlink, hardlink, char, block, fifo
    data: bytes = b""
    mode: int = 0o644
    link: str = ""
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    mtime_ns: int = 0
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)
    fmt: int = tarfile.PAX_FORMAT

    @classmethod
    def file(cls, name: str, data: bytes = b"", **kw: Any) -> TarEntry:
        return cls(name, "file", data, **kw)

    @classmethod
    def dir(cls, name: str, **kw: Any) -> TarEntry:
        kw.setdefault("mode", 0o755)
        return cls(name, "dir", **kw)

    @classmethod
    def symlink(cls, name: str, target: str, **kw: Any) -> TarEntry:
        kw.setdefault("mode", 0o777)
        return cls(name, "symlink", link=target, **kw)

    @classmethod
    def hardlink(cls, name: str, target: str, **kw: Any) -> TarEntry:
        return cls(name, "hardlink", link=target, **kw)

    @classmethod
    def device(cls, name: str, kind: str, major: int = 0, minor: int = 0, **kw: Any) -> TarEntry:
        return cls(name, kind, devmajor=major, devminor=minor, **kw)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def build_tar(entries: Iterable[TarEntry], compression: str = "none") -> bytes:
    """A tar stream of exactly ``entries`` (PAX by default), ended by two zero blocks, optionally compressed."""
    out = io.BytesIO()
    for e in entries:
        ti = tarfile.TarInfo(e.name)
        ti.type = _TYPES[e.kind]
        ti.mode = e.mode
        ti.uid, ti.gid = e.uid, e.gid
        ti.mtime = e.mtime
        ti.linkname = e.link
        ti.devmajor, ti.devminor = e.devmajor, e.devminor
        ti.size = len(e.data) if e.kind == "file" else 0
        pax = dict(e.pax)
        if e.mtime_ns:
            pax.setdefault("mtime", f"{e.mtime}.{e.mtime_ns:09d}")
        ti.pax_headers = pax
        out.write(ti.tobuf(e.fmt, "utf-8", "surrogateescape"))
        if e.kind == "file":
            out.write(e.data)
            out.write(b"\0" * (-len(e.data) % 512))
    out.write(b"\0" * 1024)
    raw = out.getvalue()
    if compression == "gzip":
        return gzip.compress(raw, 6)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(raw)
    return raw


# -- tree snapshots -------------------------------------------------------------------------------------------


def tree_snapshot(root: Path, *, nlink: bool = True, owners: bool = True) -> dict[str, tuple[Any, ...]]:
    """path -> (kind, mode, uid, gid, size, content hash or link target, mtime_ns, nlink) for everything below
    ``root`` (the root itself excluded). Overlay whiteouts (char 0/0) are reported as kind 'whiteout'."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            s = p.lstat()
            rel = str(p.relative_to(root))
            m = s.st_mode
            if stat.S_ISREG(m):
                kind, content = "file", hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            elif stat.S_ISDIR(m):
                kind, content = "dir", None
            elif stat.S_ISLNK(m):
                kind, content = "symlink", str(p.readlink())
            elif stat.S_ISCHR(m) and s.st_rdev == 0:
                kind, content = "whiteout", None
            else:
                kind, content = "other", None
            out[rel] = (
                kind,
                stat.S_IMODE(m) if kind != "symlink" else None,
                s.st_uid if owners else None,
                s.st_gid if owners else None,
                s.st_size if kind == "file" else None,
                content,
                s.st_mtime_ns,
                s.st_nlink if nlink and kind == "file" else None,
            )
    return out


# -- random layer stacks --------------------------------------------------------------------------------------

NAMES = ["a", "b", "c", "d"]


@dataclass
class Node:
    kind: str  # file, dir, symlink
    mode: int
    uid: int
    gid: int
    mtime: int
    mtime_ns: int
    data: bytes = b""
    link: str = ""
    inode: int = 0


@dataclass
class Layer:
    """One generated layer: its tar entries (in archive order)."""

    entries: list[TarEntry]

    def blob(self, compression: str = "none") -> bytes:
        return build_tar(self.entries, compression)


def write_blobs(layers: Iterable[Layer], directory: Path, compression: str = "none") -> list[Path]:
    """Each layer as a blob file ``directory/l<i>`` (bottom first)."""
    paths = []
    for i, layer in enumerate(layers):
        p = directory / f"l{i}"
        p.write_bytes(layer.blob(compression))
        paths.append(p)
    return paths


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _children(model: dict[str, Node], path: str) -> list[str]:
    prefix = path + "/"
    return [p for p in model if p.startswith(prefix)]


@st.composite
def layer_stacks(draw: st.DrawFn, max_layers: int = 4, max_ops: int = 6) -> tuple[list[Layer], dict[str, Node]]:
    """A stack of layers and the union model of the final tree (path -> Node)."""
    model: dict[str, Node] = {}
    layers: list[Layer] = []
    inode = [0]
    t = [1_600_000_000]

    def meta(kind: str) -> dict[str, Any]:
        t[0] += draw(st.integers(1, 1000))
        modes = {"file": [0o644, 0o755, 0o600, 0o4755, 0o2711, 0o444], "dir": [0o755, 0o700, 0o1777, 0o2755, 0o555]}
        return {
            "mode": draw(st.sampled_from(modes.get(kind, [0o777]))),
            "uid": draw(st.sampled_from([0, 1000, 65534])),
            "gid": draw(st.sampled_from([0, 100, 1000])),
            "mtime": t[0],
            "mtime_ns": draw(st.sampled_from([0, 1, 123_456_789, 999_999_999])),
        }

    for _ in range(draw(st.integers(1, max_layers))):
        entries: list[TarEntry] = []
        touched: set[str] = set()  # paths this layer writes or whites out
        layer_files: list[str] = []  # files written in this layer (hardlink targets)
        written_dirs: set[str] = set()

        def ensure_parents(
            path: str,
            entries: list[TarEntry] = entries,
            touched: set[str] = touched,
            written_dirs: set[str] = written_dirs,
        ) -> bool:
            for par in _parents(path):
                if par in written_dirs:
                    continue
                if par in touched:
                    return False
                node = model.get(par)
                md = meta("dir")
                if node is not None and node.kind == "dir":
                    md = {k: getattr(node, k) for k in ("mode", "uid", "gid", "mtime", "mtime_ns")}
                else:
                    for c in _children(model, par):
                        del model[c]
                entries.append(TarEntry.dir(par, **md))
                model[par] = Node("dir", **md)
                written_dirs.add(par)
                touched.add(par)
            return True

        for _ in range(draw(st.integers(1, max_ops))):
            op = draw(st.sampled_from(["file", "file", "dir", "symlink", "delete", "opaque", "hardlink", "modify"]))
            depth = draw(st.integers(1, 3))
            path = "/".join(draw(st.lists(st.sampled_from(NAMES), min_size=depth, max_size=depth)))
            if op == "modify" or op == "delete":
                existing = sorted(p for p in model if p not in touched and not any(q in touched for q in _parents(p)))
                if not existing:
                    continue
                path = draw(st.sampled_from(existing))
            if op == "opaque":
                dirs = sorted(p for p, n in model.items() if n.kind == "dir" and p not in touched)
                if not dirs:
                    continue
                path = draw(st.sampled_from(dirs))
            if path in touched or any(q in touched and q not in written_dirs for q in _parents(path)):
                continue
            if any(p in touched for p in _children(model, path)) or any(e.name.startswith(path + "/") for e in entries):
                continue
            if not ensure_parents(path):
                continue
            touched.add(path)
            if op == "delete":
                parent, _, name = path.rpartition("/")
                entries.append(TarEntry.file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", b""))
                for c in _children(model, path):
                    del model[c]
                del model[path]
                continue
            if op == "opaque":
                md = meta("dir")
                entries.append(TarEntry.dir(path, **md))
                entries.append(TarEntry.file(f"{path}/.wh..wh..opq", b""))
                for c in _children(model, path):
                    del model[c]
                model[path] = Node("dir", **md)
                written_dirs.add(path)
                continue
            if op == "hardlink":
                targets = [f for f in layer_files if f in model and model[f].kind == "file"]
                if not targets:
                    continue
                target = draw(st.sampled_from(targets))
                for c in _children(model, path):
                    del model[c]
                entries.append(TarEntry.hardlink(path, target))
                tn = model[target]
                model[path] = Node("file", tn.mode, tn.uid, tn.gid, tn.mtime, tn.mtime_ns, tn.data, inode=tn.inode)
                continue
            kind = {"modify": "file"}.get(op, op)
            if op == "modify" and model[path].kind == "dir":
                kind = "dir"
            md = meta(kind)
            if kind != "dir" or (path in model and model[path].kind != "dir"):
                for c in _children(model, path):
                    del model[c]
            if kind == "file":
                data = draw(st.binary(max_size=64)) + draw(st.sampled_from([b"", b"x" * 5000]))
                inode[0] += 1
                xattrs = draw(st.sampled_from([{}, {"SCHILY.xattr.user.imgcore": "v1"}]))
                entries.append(TarEntry.file(path, data, pax=dict(xattrs), **md))
                model[path] = Node("file", data=data, inode=inode[0], **md)
                layer_files.append(path)
            elif kind == "dir":
                entries.append(TarEntry.dir(path, **md))
                model[path] = Node("dir", **md)
                written_dirs.add(path)
            else:
                target = draw(st.sampled_from(["a", "../b", "/c/d", "nowhere", "a/b/c"]))
                md["mode"] = 0o777
                entries.append(TarEntry.symlink(path, target, **md))
                model[path] = Node("symlink", link=target, **md)
        layers.append(Layer(entries))
    return layers, model


def model_tree(model: dict[str, Node], *, nlink: bool = True, owners: bool = True) -> dict[str, tuple[Any, ...]]:
    """The snapshot ``tree_snapshot`` should give for ``model``."""
    counts: dict[int, int] = {}
    for n in model.values():
        if n.kind == "file":
            counts[n.inode] = counts.get(n.inode, 0) + 1
    out = {}
    for p, n in model.items():
        out[p] = (
            n.kind,
            n.mode if n.kind != "symlink" else None,
            n.uid if owners else None,
            n.gid if owners else None,
            len(n.data) if n.kind == "file" else None,
            hashlib.sha256(n.data).hexdigest()[:16] if n.kind == "file" else (n.link if n.kind == "symlink" else None),
            n.mtime * 10**9 + n.mtime_ns,
            counts[n.inode] if nlink and n.kind == "file" else None,
        )
    return out
