"""``imgcore manifest/config/digest/tags/catalog/copy/delete/sync``: registry-side commands, no store involved.

Argument parsing and output only (see :mod:`imgcore.transfer.remote`, :mod:`.copy` and :mod:`.sync`).
``manifest`` and ``config`` write the registry's bytes as they are, without a newline (``crane manifest``,
``crane config``); progress goes to stderr, results to stdout.

``config``'s printing form (``config REF``) is :func:`add_config_print_arguments` and :func:`run_config_print`;
the one ``config`` command is registered by :mod:`imgcore.cli.reshape`, which also serves the changing form
(``config IMAGE -c ... -t OUT``) and calls them when no change is asked for.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imgcore._progress import make_progress
from imgcore.cli._flags import positive, transport_flags
from imgcore.errors import InvalidArgument
from imgcore.reference import parse as parse_reference
from imgcore.transfer import copy as copying
from imgcore.transfer import remote
from imgcore.transfer import sync as syncing

__all__ = ["add_config_print_arguments", "register", "run_config_print"]


def _clients(args: argparse.Namespace) -> remote.Clients:
    jobs = max(getattr(args, "jobs", 1), getattr(args, "head_jobs", 1))
    return remote.Clients(insecure=args.insecure_registry, ca_file=args.ca_file, pool_size=jobs + 2)


def _write(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def cmd_manifest(args: argparse.Namespace) -> int:
    with _clients(args) as clients:
        if args.platform:
            img = remote.resolve(args.reference, clients, platform=args.platform)
            _write(img.manifest.raw)
        else:
            _write(remote.manifest(args.reference, clients).raw)
    return 0


def add_config_print_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``config REF`` (print a registry image's config blob)."""
    parser.add_argument("reference", help="NAME[:TAG|@DIGEST] on its registry")
    parser.add_argument("--platform", default=None, help="os/arch[/variant] when REF is an index (default: host)")
    transport_flags(parser)


def run_config_print(args: argparse.Namespace) -> int:
    """``config REF``: the config blob of REF as the registry serves it (``crane config``)."""
    with _clients(args) as clients:
        _write(remote.config(args.reference, clients, platform=args.platform))
    return 0


def cmd_digest(args: argparse.Namespace) -> int:
    with _clients(args) as clients:
        print(remote.digest(args.reference, clients, platform=args.platform))
    return 0


def cmd_tags(args: argparse.Namespace) -> int:
    with _clients(args) as clients:
        for tag in remote.list_tags(args.repository, clients, page_size=args.page_size):
            print(tag)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    with _clients(args) as clients:
        for repo in remote.catalog(args.registry, clients, page_size=args.page_size):
            print(repo)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _clients(args) as clients:
        for ref in args.references:
            digest = remote.delete(ref, clients)
            print(f"Deleted: {parse_reference(ref).repository}@{digest}")
    return 0


def _progress(args: argparse.Namespace) -> Any:
    return make_progress(quiet=args.quiet, stream=sys.stderr)


def cmd_copy(args: argparse.Namespace) -> int:
    if args.platform and args.all_platforms:
        raise InvalidArgument("copy: --platform and --all-platforms exclude each other")
    progress = _progress(args)
    try:
        with _clients(args) as clients:
            results = copying.copy(
                args.source, args.destination, clients=clients, all_tags=args.all_tags, platform=args.platform,
                jobs=args.jobs, chunk_size=args.chunk_size, progress=progress,
            )  # fmt: skip
    finally:
        progress.close()
    for r in results:
        print(r.destination if "@" in r.destination else f"{r.destination}@{r.digest}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    progress = _progress(args)
    try:
        with _clients(args) as clients:
            result = syncing.sync(
                args.source, args.destination, clients=clients, jobs=args.jobs, head_jobs=args.head_jobs,
                chunk_size=args.chunk_size, progress=progress,
            )  # fmt: skip
    finally:
        progress.close()
    total = len(result.copied) + len(result.unchanged) + len(result.vanished)
    gone = f", {len(result.vanished)} gone while syncing" if result.vanished else ""
    print(f"synced {total} tags from {result.source} to {result.destination}: {len(result.copied)} copied, "
          f"{len(result.unchanged)} unchanged{gone}")  # fmt: skip
    return 0


def _copy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-j", "--jobs", type=positive, default=copying.COPY_JOBS,
                   help=f"blobs copied at the same time (default {copying.COPY_JOBS})")  # fmt: skip
    p.add_argument("--chunk-size", type=positive, default=None,
                   help="upload in PATCH chunks of this many bytes instead of one streamed PUT")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def register(sub: Any) -> None:
    """Add the registry-side subcommands to ``imgcore``'s subparsers."""
    for name, func, text in (
        ("manifest", cmd_manifest, "print a manifest or index as the registry serves it"),
        ("digest", cmd_digest, "print the digest a reference names on its registry (one HEAD)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("reference", help="NAME[:TAG|@DIGEST] on its registry")
        p.add_argument("--platform", default=None, help="os/arch[/variant]: that platform's manifest of an index")
        transport_flags(p)
        p.set_defaults(func=func)

    for name, func, text, arg, arg_help, what in (
        ("tags", cmd_tags, "list the tags of a repository on its registry", "repository", "NAME (host/ns/app), no tag",
         "tags"),
        ("catalog", cmd_catalog, "list the repositories of a registry (/v2/_catalog)", "registry", "HOST[:PORT]",
         "names"),
    ):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument(arg, help=arg_help)
        p.add_argument("-n", "--page-size", type=positive, default=None, help=f"ask for pages of N {what} (?n=N)")
        transport_flags(p)
        p.set_defaults(func=func)

    p = sub.add_parser("delete", help="delete a manifest from its registry (by digest; a tag is resolved first)")
    p.add_argument("references", nargs="+", metavar="REF", help="NAME:TAG or NAME@DIGEST")
    transport_flags(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser(
        "copy",
        help="copy an image from one registry repository to another (blobs stream through, digests kept)",
        description="Copy SRC to DST registry to registry. An index is copied whole (every platform, digest kept) "
        "unless --platform names one; DST without a tag is :latest; with --all-tags SRC and DST are repositories.",
    )
    p.add_argument("source", help="NAME[:TAG|@DIGEST] (a repository with --all-tags)")
    p.add_argument("destination", help="NAME[:TAG|@DIGEST] (a repository with --all-tags)")
    p.add_argument("-a", "--all-tags", action="store_true", help="copy every tag of the source repository")
    p.add_argument("--platform", default=None, help="os/arch[/variant]: copy only that platform of an index")
    p.add_argument("--all-platforms", action="store_true", help="copy every platform of an index (the default)")
    _copy_flags(p)
    transport_flags(p)
    p.set_defaults(func=cmd_copy)

    p = sub.add_parser("sync", help="copy every tag of a repository to another, skipping unchanged tags")
    p.add_argument("source", help="source repository (host/ns/app)")
    p.add_argument("destination", help="destination repository (host/ns/app)")
    p.add_argument("--head-jobs", type=positive, default=syncing.HEAD_JOBS,
                   help=f"tags compared at the same time (default {syncing.HEAD_JOBS})")  # fmt: skip
    _copy_flags(p)
    transport_flags(p)
    p.set_defaults(func=cmd_sync)
