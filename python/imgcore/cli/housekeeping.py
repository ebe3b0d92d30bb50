"""CLI: the commands that change or measure the store as a whole, in docker's words: rmi, import, export, df and
prune. Parsing and output only; the work is :mod:`imgcore.gc`, :mod:`imgcore.image.importer` and
:mod:`imgcore.containers.export`. Kept apart from :mod:`imgcore.cli.images` so that ``imgcore images`` loads none
of them."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from imgcore._humanize import ago, human_size, short_id, since, tabwrite
from imgcore._progress import make_progress
from imgcore.cli.images import _err, _go_json, _store, _unequal, add_image_commands
from imgcore.containers.export import export
from imgcore.errors import ImgcoreError, InvalidArgument, InvalidReference
from imgcore.gc.collect import prune, remove_image
from imgcore.gc.usage import disk_usage
from imgcore.image.importer import import_image
from imgcore.models import Platform
from imgcore.reference import parse

__all__ = ["add_image_commands", "register"]


def cmd_rmi(args: argparse.Namespace) -> int:
    store = _store(args)
    failed = 0
    for name in args.images:
        try:
            records = remove_image(store, name, force=args.force)
        except ImgcoreError as e:
            _err(e)
            failed += 1
            continue
        for r in records:
            print(r)
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------------- history


def cmd_import(args: argparse.Namespace) -> int:
    platform = None
    if args.platform:
        try:
            platform = Platform.parse(args.platform)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
    store = _store(args)
    changes = [c for c in (_unequal(c) for c in args.change or ()) if c is not None]
    progress = make_progress(stream=sys.stderr)
    if args.file == "-":
        img = import_image(
            store,
            sys.stdin.buffer,
            args.reference,
            message=_unequal(args.message),
            changes=changes,
            source_name="-",
            platform=platform,
            progress=progress,
        )
    else:
        img = import_image(
            store,
            args.file,
            args.reference,
            message=_unequal(args.message),
            changes=changes,
            platform=platform,
            progress=progress,
        )
    progress.close()
    print(img.id)
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    """The file ``-o`` names, written whole or not at all (temp file + rename); stdout otherwise."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def cmd_export(args: argparse.Namespace) -> int:
    if args.output is None and sys.stdout.isatty():
        _err("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        return 1
    store = _store(args)
    with _output(args.output) as out:
        export(store, args.container, out)
    return 0


# ------------------------------------------------------------------------------------------------- df, prune


def _familiar(name: str) -> str:
    """``docker.io/library/tomcat:latest`` -> ``tomcat:latest``, as docker prints image names."""
    try:
        return parse(name).familiar
    except InvalidReference:
        return name


def _pct(part: int, total: int) -> str:
    if total > 0:
        return f"{human_size(part, 4)} ({part * 100 // total}%)"
    return human_size(part, 4)


def cmd_df(args: argparse.Namespace) -> int:
    if args.files:
        # The analysis (numpy) is loaded only for --files, by module name, as the command groups are.
        report = importlib.import_module("imgcore.cli._analyze_report").store_report
        return int(report(_store(args), find=args.digest, top=args.top))
    du = disk_usage(_store(args))
    hs = human_size
    if args.format == "json":
        print(
            _go_json(
                {
                    "Images": {
                        "TotalCount": len(du.images),
                        "ActiveCount": du.images_active,
                        "Size": du.images_size,
                        "SizeWithoutSharing": du.images_size_without_sharing,
                        "SavedBySharing": du.saved_by_sharing,
                        "Reclaimable": du.images_reclaimable,
                        "Stored": du.stored,
                    },
                    "Containers": {"TotalCount": len(du.containers), "Size": du.containers_size},
                    "Layers": [
                        {
                            "Digest": layer.digest,
                            "DiffID": layer.diff_id,
                            "Size": layer.size,
                            "Stored": layer.stored,
                            "Unpacked": layer.unpacked,
                            "Images": list(layer.images),
                        }
                        for layer in du.layers
                    ],
                    "UnreferencedBlobs": du.other_blobs,
                    "Baselines": du.baselines,
                }
            )
        )
        return 0
    if not args.verbose:
        table = [
            ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            [
                "Images",
                str(len(du.images)),
                str(du.images_active),
                hs(du.images_size, 4),
                _pct(du.images_reclaimable, du.images_size),
            ],
            [
                "Containers",
                str(len(du.containers)),
                "0",
                hs(du.containers_size, 4),
                _pct(du.containers_size, du.containers_size),
            ],
        ]
        sys.stdout.write(tabwrite(table))
    else:
        print("Images space usage:\n")
        table = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"]]
        for iu in du.images:
            ref = iu.image.references[0] if iu.image.references else None
            table.append(
                [
                    ref.familiar_repository if ref else "<none>",
                    (ref.tag or "<none>") if ref else "<none>",
                    iu.image.short_id,
                    since(iu.image.created),
                    hs(iu.size, 4),
                    hs(iu.shared_size, 4),
                    hs(iu.unique_size, 4),
                    str(iu.containers),
                ]
            )
        sys.stdout.write(tabwrite(table))
        print("\nContainers space usage:\n")
        table = [["CONTAINER ID", "IMAGE", "DRIVER", "SIZE", "CREATED", "NAMES"]]
        for cu in du.containers:
            table.append([cu.id[:12], _familiar(cu.image), cu.driver, hs(cu.size, 4), ago(cu.created), cu.name])
        sys.stdout.write(tabwrite(table))
        print("\nLayers space usage:\n")
        table = [["LAYER", "SIZE", "STORED", "UNPACKED", "IMAGES", "SHARED"]]
        for layer in du.layers:
            table.append(
                [
                    short_id(layer.digest),
                    hs(layer.size, 4),
                    hs(layer.stored, 4),
                    hs(layer.unpacked, 4) if layer.unpacked else "-",
                    str(len(layer.images)),
                    "yes" if layer.shared else "no",
                ]
            )
        sys.stdout.write(tabwrite(table))
        print()
    shared = [layer for layer in du.layers if layer.shared]
    print(
        f"Layers: {len(du.layers)} stored once in {hs(du.stored, 4)} compressed ({hs(du.images_size, 4)} "
        f"uncompressed); {len(shared)} shared by more than one image, saving {hs(du.saved_by_sharing, 4)} "
        f"(without sharing: {hs(du.images_size_without_sharing, 4)})"
    )
    if du.baselines:
        print(
            f"Copy-driver baselines: {hs(du.baselines, 4)} (flattened image copies that copy containers diff against)"
        )
    if du.other_blobs:
        print(f"Unreferenced blobs: {hs(du.other_blobs, 4)} (imgcore prune removes them)")
    return 0


def _confirm(message: str) -> bool:
    print(f"{message}\nAre you sure you want to continue? [y/N] ", end="", flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def cmd_prune(args: argparse.Namespace) -> int:
    if not args.force:
        what = "all images without at least one container associated to them" if args.all else "all dangling images"
        if not _confirm(f"WARNING! This will remove {what}."):
            return 0
    report = prune(_store(args), all=args.all)
    if report.records:
        print("Deleted Images:")
        for r in report.records:
            print(r)
        print()
    if report.deleted_blobs:
        n = len(report.deleted_blobs)
        print(f"Deleted {n} unreferenced {'blob' if n == 1 else 'blobs'}.")
    if report.deleted_unpacked:
        n = len(report.deleted_unpacked)
        print(f"Deleted {n} unused unpacked layer {'directory' if n == 1 else 'directories'}.")
    print(f"Total reclaimed space: {human_size(report.reclaimed, 4)}")
    return 0


# ------------------------------------------------------------------------------------------------- parsers


def _add_rmi(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="force removal of the image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)


def _add_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE|-", help="a root filesystem tarball (plain, gzip, zstd)")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-m", "--message", help="commit message for the imported image")
    p.add_argument(
        "-c",
        "--change",
        action="append",
        metavar="INSTRUCTION",
        help="apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, ...)",
    )
    p.add_argument("--platform", help="os/arch[/variant] of the image (default: this host)")
    p.set_defaults(func=cmd_import)


def _add_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.set_defaults(func=cmd_prune)


def register(sub: Any) -> None:
    """Adds ``rmi``, ``import``, ``export``, ``df``, ``prune`` and the whole ``image`` group to the subparsers."""
    _add_rmi(sub.add_parser("rmi", help="remove one or more images"))
    _add_import(sub.add_parser("import", help="import a root filesystem tarball as an image"))
    p = sub.add_parser("export", help="export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", metavar="FILE", help="write to a file instead of stdout")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("df", help="show disk usage: images, containers, layers (shared and unique)")
    p.add_argument("-v", "--verbose", action="store_true", help="show detailed information on space usage")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    p.add_argument("--files", action="store_true", help="file content stored more than once across images")
    p.add_argument("--digest", help="with --files: the images holding a file of this sha256")
    p.add_argument("--top", type=int, default=20, help="with --files: rows of the list (default 20)")
    p.set_defaults(func=cmd_df)
    _add_prune(sub.add_parser("prune", help="remove dangling images (-a: unused ones) and unreferenced blobs"))

    image = sub.add_parser("image", help="manage images").add_subparsers(
        dest="image_command", metavar="COMMAND", required=True
    )
    add_image_commands(image)
    _add_rmi(image.add_parser("rm", aliases=["remove"], help="remove one or more images"))
    _add_import(image.add_parser("import", help="import a root filesystem tarball"))
    _add_prune(image.add_parser("prune", help="remove unused images and unreferenced blobs"))
