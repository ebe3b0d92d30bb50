"""CLI: ``ls IMAGE [PATH]`` (an image's merged tree and the layer providing each path, read from the blobs),
``layer apply LAYER DIR`` (extract one layer blob) and ``layer index LAYER...`` (the merged view of blobs)."""

from __future__ import annotations

import argparse
import errno
import stat
import sys
import time
from typing import Any

import imgcore
from imgcore.image.catalog import resolve
from imgcore.store import ContentStore

__all__ = ["register"]


def _id_map(value: str) -> tuple[int, int, int]:
    try:
        inner, outer, count = (int(x) for x in value.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected INSIDE:OUTSIDE:COUNT, got {value!r}") from None
    return inner, outer, count


def cmd_layer_apply(args: argparse.Namespace) -> int:
    stats = imgcore.extract_layer(
        args.layer,
        args.dir,
        overlay=args.overlay,
        expected_digest=args.digest,
        expected_diff_id=args.diff_id,
        same_owner=args.same_owner,
        uid_map=args.uid_map or None,
        gid_map=args.gid_map or None,
        allow_devices=args.allow_devices,
    )
    print(f"digest   {stats.digest}")
    print(f"diff_id  {stats.diff_id}")
    print(
        f"{stats.compression}: {stats.entries} entries ({stats.files} files, {stats.dirs} dirs, "
        f"{stats.symlinks} symlinks, {stats.hardlinks} hardlinks, {stats.whiteouts} whiteouts), "
        f"{stats.bytes} bytes from {stats.compressed_bytes}"
    )
    # Never silent: every entry (or attribute) not applied, as a path inside DIR.
    for path, reason in stats.skipped:
        print(f"skipped /{path.removeprefix('./').lstrip('/')}: {reason}", file=sys.stderr)
    if stats.skipped:
        print(f"skipped  {len(stats.skipped)} entries or attributes", file=sys.stderr)
    return 0


_TYPE = {"file": "-", "dir": "d", "symlink": "l", "hardlink": "-", "char": "c", "block": "b", "fifo": "p"}
_FT = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "hardlink": stat.S_IFREG}


def format_index_row(row: tuple[Any, ...]) -> str:
    """One ``ls -l``-like line of a ``layer_index`` row: mode, owner, size, mtime, path, link, layer."""
    path, kind, mode, uid, gid, size, mtime, link, layer = row
    perms = stat.filemode(_FT.get(kind, stat.S_IFCHR) | mode)
    perms = _TYPE.get(kind, "?") + perms[1:]
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
    arrow = f" -> {link}" if kind == "symlink" else (f" link to /{link}" if kind == "hardlink" else "")
    return f"{perms} {uid:>5} {gid:>5} {size:>10} {when} /{path}{arrow}  [layer {layer}]"


def cmd_layer_index(args: argparse.Namespace) -> int:
    for row in imgcore.layer_index(args.layers):
        print(format_index_row(row))
    return 0


def select_rows(rows: list[tuple[Any, ...]], path: str, recursive: bool) -> list[tuple[Any, ...]]:
    """The rows ``ls PATH`` shows: a directory's children (all descendants with ``recursive``), or the entry."""
    want = path.strip("/")
    if want:
        own = [r for r in rows if r[0] == want]
        if not own:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory in the image", "/" + want)
        if own[0][1] != "dir":
            return own
    prefix = want + "/" if want else ""
    out = [r for r in rows if r[0].startswith(prefix) and r[0] != want]
    if not recursive:
        out = [r for r in out if "/" not in r[0][len(prefix) :]]
    return out


def cmd_ls(args: argparse.Namespace) -> int:
    store = ContentStore(args.root)
    image = resolve(store, args.image)
    digests = [d.digest for d in image.manifest.layers]
    rows = imgcore.layer_index([store.blob_path(d) for d in digests])
    for row in select_rows(rows, args.path, args.recursive):
        line = format_index_row(row)
        print(line.rsplit("  [layer ", 1)[0] + f"  [layer {row[8]} {digests[row[8]].split(':')[1][:12]}]")
    return 0


def register(sub: Any) -> None:
    """Adds the layer commands (``ls``, ``layer ...``) to ``sub``."""
    p = sub.add_parser("ls", help="list an image's files (merged layers) and the layer each one comes from")
    p.add_argument("image")
    p.add_argument("path", nargs="?", default="/")
    p.add_argument("-R", "--recursive", action="store_true", help="list everything below PATH")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("layer", help="layer blobs: apply one to a directory, list a stack's merged view")
    lsub = p.add_subparsers(dest="layer_command", required=True)

    a = lsub.add_parser("apply", help="extract a layer blob (tar, tar+gzip, tar+zstd) into DIR, whiteouts applied")
    a.add_argument("layer")
    a.add_argument("dir")
    a.add_argument("--overlay", action="store_true", help="keep whiteouts in overlayfs form (needs root)")
    a.add_argument("--digest", help="expected digest of the blob")
    a.add_argument("--diff-id", help="expected digest of the uncompressed tar")
    owner = a.add_mutually_exclusive_group()
    owner.add_argument("--same-owner", dest="same_owner", action="store_true", default=None)
    owner.add_argument("--no-same-owner", dest="same_owner", action="store_false")
    a.add_argument("--uid-map", type=_id_map, action="append", metavar="IN:OUT:COUNT")
    a.add_argument("--gid-map", type=_id_map, action="append", metavar="IN:OUT:COUNT")
    a.add_argument("--allow-devices", action="store_true", help="create device nodes and FIFOs (needs root)")
    a.set_defaults(func=cmd_layer_apply)

    i = lsub.add_parser("index", help="list the merged view of layer blobs (lowest first) without extracting")
    i.add_argument("layers", nargs="+")
    i.set_defaults(func=cmd_layer_index)
