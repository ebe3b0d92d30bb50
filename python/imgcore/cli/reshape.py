"""The reshape commands: ``squash`` and ``flatten``.

Only argument parsing and output (the new image's ID on stdout, as ``docker commit`` prints it); the work is
:mod:`imgcore.reshape`. Loaded by :mod:`imgcore.cli` through :func:`register`.
"""

from __future__ import annotations

import argparse
from typing import Any

from imgcore.image.catalog import resolve
from imgcore.reshape.squash import flatten, squash
from imgcore.store import ContentStore

__all__ = ["register"]


def _store(args: argparse.Namespace) -> ContentStore:
    return ContentStore(args.root)


def _done(image_id: str) -> int:
    print(image_id)
    return 0


def _layer_writer(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A command that writes one merged layer: IMAGE, --exclude, --compression, -t."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    p.add_argument("image")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave paths matching GLOB (and below them) out of the new layer; '*' also matches '/'",
    )
    p.add_argument("--compression", choices=["gzip", "zstd", "none"], default="gzip")
    _tag(p)
    return p


def _tag(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("-t", "--tag", required=required, metavar="NEW", help="tag the new image NEW")


def cmd_squash(args: argparse.Namespace) -> int:
    store = _store(args)
    img = squash(
        store,
        resolve(store, args.image),
        args.tag,
        last=args.last,
        from_layer=args.from_layer,
        exclude=args.exclude,
        compression=args.compression,
    )
    return _done(img.id)


def cmd_flatten(args: argparse.Namespace) -> int:
    store = _store(args)
    img = flatten(store, resolve(store, args.image), args.tag, exclude=args.exclude, compression=args.compression)
    return _done(img.id)


def register(sub: Any) -> None:
    """Adds the reshape commands to the ``imgcore`` parser."""
    p = _layer_writer(sub, "squash", "merge an image's top layers into one (all of them by default, as buildah)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--last", type=int, metavar="N", help="squash the top N layers")
    which.add_argument(
        "--from",
        dest="from_layer",
        metavar="LAYER",
        help="keep LAYER (a layer digest or diff_id, or a base image) and what is below; squash what is above",
    )
    p.set_defaults(func=cmd_squash)

    p = _layer_writer(sub, "flatten", "one layer equal to the image's merged filesystem")
    p.set_defaults(func=cmd_flatten)
