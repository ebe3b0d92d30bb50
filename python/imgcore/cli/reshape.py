"""The reshape commands: ``squash``, ``flatten``, ``rebase``, ``append`` and ``config IMAGE -c ... -t OUT``.

Only argument parsing and output (the new image's ID on stdout, as ``docker commit`` prints it); the work is
:mod:`imgcore.reshape`. Loaded by :mod:`imgcore.cli` through :func:`register`. The one ``config`` command
(:func:`cmd_config`) changes a stored image's config with ``-c``/``-t`` (:func:`run_config_change`) and otherwise
prints a registry image's config (:func:`imgcore.cli.remote.run_config_print`).
"""

from __future__ import annotations

import argparse
from typing import Any

from imgcore.cli.remote import add_config_print_arguments, run_config_print
from imgcore.image.catalog import resolve
from imgcore.reshape.mutate import append_layers, rebase, reconfigure
from imgcore.reshape.squash import flatten, squash
from imgcore.store import ContentStore

__all__ = ["cmd_config", "register", "run_config_change"]


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


def cmd_rebase(args: argparse.Namespace) -> int:
    store = _store(args)
    img = rebase(
        store, resolve(store, args.image), resolve(store, args.old_base), resolve(store, args.new_base), args.tag
    )
    return _done(img.id)


def cmd_append(args: argparse.Namespace) -> int:
    store = _store(args)
    img = append_layers(store, resolve(store, args.image), args.layers, args.tag)
    return _done(img.id)


def run_config_change(args: argparse.Namespace) -> int:
    """Runs the change form: a new image with the changed config, its ID printed."""
    store = _store(args)
    img = reconfigure(store, resolve(store, args.image), [c.removeprefix("=") for c in args.change], args.tag)
    return _done(img.id)


def cmd_config(args: argparse.Namespace) -> int:
    """``config REF`` prints REF's config from its registry; ``config IMAGE -c ... [-t OUT]`` changes a stored
    image's config (a ``-t`` alone re-tags an unchanged copy, as ``crane mutate`` does)."""
    if args.change or args.tag:
        args.image = args.reference
        return run_config_change(args)
    return run_config_print(args)


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

    p = sub.add_parser("rebase", help="swap an image's base layers for another base (crane rebase)")
    p.add_argument("image")
    p.add_argument("--old-base", required=True, metavar="OLD", help="the image's current base")
    p.add_argument("--new-base", required=True, metavar="NEW", help="the base to put in its place")
    _tag(p)
    p.set_defaults(func=cmd_rebase)

    p = sub.add_parser("append", help="add layer tarballs on top of an image (every platform of an index)")
    p.add_argument("image")
    p.add_argument("layers", nargs="+", metavar="LAYER.tar", help="tar, tar.gz or tar.zst")
    _tag(p)
    p.set_defaults(func=cmd_append)

    p = sub.add_parser("config", help="print an image's config from its registry (crane config); with -c/-t, "
                       "change a stored image's config without adding a layer")  # fmt: skip
    add_config_print_arguments(p)
    p.add_argument("-c", "--change", action="append", default=[], help="Dockerfile instruction (ENV, CMD, LABEL, ...)")
    _tag(p)
    p.set_defaults(func=cmd_config)
