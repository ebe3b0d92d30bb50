"""``imgcore commit``: a container's changes as a new layer and image (``-m``, ``-a``, ``-c``, ``--squash``).

A group of its own, apart from :mod:`imgcore.cli.containers`, so that ``run``, ``exec`` and ``ps`` never load the
layer writer's workflow or the reshape code that ``commit --squash`` uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from imgcore._progress import make_progress
from imgcore.cli.containers import _bool, _ctx, _eq_value
from imgcore.containers.commit import commit
from imgcore.image.model import Image
from imgcore.reference import parse
from imgcore.reshape.squash import keep_count, squash_leased
from imgcore.store import ContentStore, Lease

__all__ = ["register"]


def cmd_commit(args: argparse.Namespace) -> int:
    store, cs = _ctx(args)
    c = cs.get(args.container)
    result = commit(
        store,
        cs,
        c,
        args.repo_tag,
        message=_eq_value(args.message),
        author=_eq_value(args.author),
        changes=[_eq_value(x) or "" for x in args.change or []],
        compression=args.compression,
        paranoid=args.paranoid,
        pause=args.pause,
        progress=(progress := make_progress(stream=sys.stderr)),
        exclude=args.exclude,
        then=_squasher(store, args),
    )
    progress.close()
    print(result.image_id)
    return 0


def _squasher(store: ContentStore, args: argparse.Namespace) -> Callable[[Image, Lease], Image] | None:
    """``commit --squash [--squash-last N | --squash-from LAYER]``: the committed image's layers squashed (all of
    them by default, as buildah's ``commit --squash``; the new layer counts as one of ``N``)."""
    if not (args.squash or args.squash_last is not None or args.squash_from is not None):
        return None
    tag = parse(args.repo_tag) if args.repo_tag else None

    def then(image: Image, lease: Lease) -> Image:
        keep = keep_count(store, image, last=args.squash_last, from_layer=args.squash_from)
        what = "imgcore commit --squash" + (
            f"-last {args.squash_last}" if args.squash_last is not None else
            f"-from {args.squash_from}" if args.squash_from is not None else ""
        )  # fmt: skip
        return squash_leased(store, lease, image, keep, tag=tag, compression=args.compression, created_by=what)

    return then


def register(sub: Any) -> None:
    """Adds ``commit`` to the ``imgcore`` parser."""
    p = sub.add_parser("commit", help="create a new image from a container's changes")
    p.add_argument("-m", "--message")
    p.add_argument("-a", "--author")
    p.add_argument("-c", "--change", action="append", help="Dockerfile instruction (CMD, ENV, WORKDIR, ...)")
    p.add_argument("-p", "--pause", type=_bool, default=True, help="pause a running container (default true)")
    p.add_argument("--compression", choices=["gzip", "zstd", "none"], default="gzip")
    p.add_argument("--paranoid", action="store_true")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="leave paths matching GLOB (and below them) out of the layer")  # fmt: skip
    p.add_argument("--squash", action="store_true",
                   help="squash the image's layers and the change into one layer (buildah's --squash)")  # fmt: skip
    squash_what = p.add_mutually_exclusive_group()
    squash_what.add_argument("--squash-last", type=int, metavar="N",
                             help="squash only the top N layers, the new one included (implies --squash)")  # fmt: skip
    squash_what.add_argument("--squash-from", metavar="LAYER",
                             help="keep LAYER (digest, diff_id or base image) and below; squash the rest")  # fmt: skip
    p.add_argument("container")
    p.add_argument("repo_tag", nargs="?")
    p.set_defaults(func=cmd_commit)
