"""The image commands, in docker's output formats: images, tag, rmi, history, inspect, import, export, df, prune.

Only argument parsing and formatting; the work is :mod:`imgcore.images`. Loaded by :mod:`imgcore.cli` through
:func:`register`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import sys
from typing import Any

from imgcore._gotemplate import render, render_rows
from imgcore._humanize import ellipsis, format_created, human_size, printable, since, tabwrite
from imgcore.errors import ContainerNotFound, ImgcoreError
from imgcore.image.catalog import ImageRow, artifacts, history, inspect, list_images, tag
from imgcore.image.model import Artifact
from imgcore.store import ContentStore

__all__ = ["add_image_commands", "register"]


def _store(args: argparse.Namespace) -> Any:
    return ContentStore(args.root)


def _err(message: object) -> None:
    print(f"Error: {message}", file=sys.stderr)


def _go_json(obj: Any, indent: int | None = None) -> str:
    """JSON as Go's encoder writes it: ``<``, ``>`` and ``&`` escaped, non-ASCII kept."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, separators=(",", ":") if indent is None else None)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _unequal(value: str | None) -> str | None:
    """``-m="msg"`` arrives as ``=msg`` (argparse keeps the ``=`` of a short option); docker stores ``msg``."""
    return value[1:] if value is not None and value.startswith("=") else value


def _created_at(when: _dt.datetime | None) -> str:
    """Go's ``time.Time.String()`` in UTC: ``2023-05-04 17:37:03 +0000 UTC``."""
    if when is None:
        return ""
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


# ------------------------------------------------------------------------------------------------- images


_IMAGE_HEADERS = {
    "Containers": "CONTAINERS",
    "CreatedAt": "CREATED AT",
    "CreatedSince": "CREATED",
    "Digest": "DIGEST",
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "SharedSize": "SHARED SIZE",
    "Size": "SIZE",
    "Tag": "TAG",
    "UniqueSize": "UNIQUE SIZE",
    "VirtualSize": "SIZE",
}
_HISTORY_HEADERS = {
    "Comment": "COMMENT",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "CreatedSince": "CREATED",
    "ID": "IMAGE",
    "Size": "SIZE",
}


def _artifact_rows(store: ContentStore) -> list[tuple[str, str, Artifact]]:
    """The artifacts as (repository, tag, artifact) rows, one per tag, ``<none>`` when untagged."""
    out = []
    for a in artifacts(store):
        names = [(r.familiar_repository, r.tag or "<none>") for r in a.references] or [("<none>", "<none>")]
        out += [(repo, t, a) for repo, t in sorted(names)]
    return out


def cmd_images(args: argparse.Namespace) -> int:
    rows = list_images(_store(args), args.filter or (), reference=args.reference)
    extra = _artifact_rows(_store(args)) if args.all_types else []
    trunc = not args.no_trunc

    def ident(image_id: str) -> str:
        return image_id.partition(":")[2][:12] if trunc else image_id

    def size(row: ImageRow, precision: int = 3) -> str:
        # A broken image (missing or corrupt config, manifest, ...) is listed with an error marker, not hidden.
        if row.image.error:
            return f"<error: {row.image.error if not trunc else ellipsis(row.image.error, 60)}>"
        return human_size(row.size, precision)

    if args.quiet:
        for row in rows:
            print(ident(row.image.id))
        for _, _, a in extra:
            print(ident(a.digest))
        return 0
    if args.format != "table":
        objs = [
            {
                "Containers": "N/A",
                "CreatedAt": _created_at(row.image.created),
                "CreatedSince": since(row.image.created),
                "Digest": row.digest if not row.dangling else "<none>",
                "ID": ident(row.image.id),
                "Repository": row.repository,
                "SharedSize": "N/A",
                "Size": size(row),
                "Tag": row.tag,
                "UniqueSize": "N/A",
                "VirtualSize": size(row, 4),
            }
            for row in rows
        ]
        objs += [{"Containers": "N/A", "CreatedAt": "", "CreatedSince": "N/A", "Digest": a.digest,
                  "ID": ident(a.digest), "Repository": repo, "SharedSize": "N/A", "Size": human_size(a.size), "Tag": t,
                  "UniqueSize": "N/A", "VirtualSize": human_size(a.size, 4)} for repo, t, a in extra]  # fmt: skip
        if args.format == "json":
            for obj in objs:
                print(_go_json(obj))
        else:
            sys.stdout.write(render_rows(args.format, objs, _IMAGE_HEADERS, missing_key="error"))
        return 0
    header = ["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID", "CREATED", "SIZE"]
    table = [header]
    for row in rows:
        digest = [row.digest if not row.dangling else "<none>"] if args.digests else []
        table.append([row.repository, row.tag, *digest, ident(row.image.id), since(row.image.created), size(row)])
    for repo, t, a in extra:  # artifacts: their manifest digest stands for the ID; they have no created time
        table.append([repo, t, *([a.digest] if args.digests else []), ident(a.digest), "N/A", human_size(a.size)])
    sys.stdout.write(tabwrite(table))
    return 0


def cmd_artifacts(args: argparse.Namespace) -> int:
    """``artifacts``: the OCI artifacts ``images`` leaves out, one row per tag (``<none>`` when untagged)."""
    rows = [{"Repository": repo, "Tag": t, "ArtifactType": a.artifact_type,
             "Digest": a.digest if args.no_trunc else a.digest.partition(":")[2][:12], "Size": human_size(a.size)}
            for repo, t, a in _artifact_rows(_store(args))]  # fmt: skip
    if args.format == "json":
        for obj in rows:
            print(_go_json(obj))
        return 0
    table = [["REPOSITORY", "TAG", "ARTIFACT TYPE", "DIGEST", "SIZE"]]
    table += [[o["Repository"], o["Tag"], o["ArtifactType"], o["Digest"], o["Size"]] for o in rows]
    sys.stdout.write(tabwrite(table))
    return 0


# ------------------------------------------------------------------------------------------------- tag, rmi


def cmd_tag(args: argparse.Namespace) -> int:
    tag(_store(args), args.source, args.target)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    rows = history(_store(args), args.image)
    trunc = not args.no_trunc

    def ident(value: str) -> str:
        return value.partition(":")[2][:12] if trunc and ":" in value else value

    if args.quiet:
        for row in rows:
            print(ident(row.id))
        return 0
    if args.format != "table":
        objs = []
        for row in rows:
            created_by = printable(row.created_by.replace("\t", " "))
            objs.append(
                {
                    "Comment": printable(row.comment),
                    "CreatedAt": format_created(row.created),
                    "CreatedBy": ellipsis(created_by, 45) if trunc else created_by,
                    "CreatedSince": since(row.created) if args.human else format_created(row.created),
                    "ID": ident(row.id),
                    "Size": human_size(row.size) if args.human else str(row.size),
                }
            )
        if args.format == "json":
            for obj in objs:
                print(_go_json(obj))
        else:
            sys.stdout.write(render_rows(args.format, objs, _HISTORY_HEADERS, missing_key="error"))
        return 0
    table = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
    for row in rows:
        created_by = printable(row.created_by.replace("\t", " "))
        table.append(
            [
                ident(row.id),
                since(row.created) if args.human else format_created(row.created),
                ellipsis(created_by, 45) if trunc else created_by,
                human_size(row.size) if args.human else str(row.size),
                printable(row.comment),
            ]
        )
    sys.stdout.write(tabwrite(table))
    return 0


# ------------------------------------------------------------------------------------------------- inspect


def cmd_inspect(args: argparse.Namespace) -> int:
    store = _store(args)
    found = []
    failed = 0
    for name in args.images:
        try:
            found.append(inspect(store, name))
        except ImgcoreError as e:
            # not an image: a container? (the containers group is loaded only for this fallback)
            containers_cli = importlib.import_module("imgcore.cli.containers")
            try:
                found.append(containers_cli.inspect_any_container(store, name))
            except ContainerNotFound:
                _err(e)
                failed += 1
            except ImgcoreError as ce:  # the container is there but cannot be read: say why, not "no such image"
                _err(ce)
                failed += 1
    if args.format and args.format != "json":
        for obj in found:
            print(render(args.format, obj))
    else:
        print(_go_json(found, indent=4) if found else "[]")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------------- import, export


def _add_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]", help="only images matching this")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--all-types", action="store_true", help="also list OCI artifacts (see 'imgcore artifacts')")
    p.add_argument(
        "--format",
        default="table",
        metavar="FORMAT",
        help="table (default), json, or a Go template: '{{.Repository}}:{{.Tag}}', 'table {{.ID}}\\t{{.Size}}'",
    )
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        metavar="KEY=VALUE",
        help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE",
    )
    p.set_defaults(func=cmd_images)


def _add_tag(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=cmd_tag)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def _add_history(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument(
        "-H",
        "--human",
        type=_bool,
        default=True,
        metavar="BOOL",
        help="print sizes and dates in human readable format (default true)",
    )
    p.add_argument(
        "--format",
        default="table",
        metavar="FORMAT",
        help="table (default), json, or a Go template: '{{.ID}} {{.CreatedBy}}'",
    )
    p.set_defaults(func=cmd_history)


def _add_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "-f", "--format", default=None, help="a Go template, e.g. '{{.Id}}', '{{json .Config}}', '{{range .RepoTags}}'"
    )
    p.set_defaults(func=cmd_inspect)


def register(sub: Any) -> None:
    """Adds the read-side image commands to ``imgcore``'s subparsers: ``images``, ``tag``, ``history``,
    ``inspect`` (``rmi``, ``import``, ``export``, ``df`` and ``prune`` are :mod:`imgcore.cli.housekeeping`'s)."""
    _add_images(sub.add_parser("images", help="list images"))
    _add_tag(sub.add_parser("tag", help="create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"))
    _add_history(sub.add_parser("history", help="show the history of an image"))
    _add_inspect(sub.add_parser("inspect", help="display detailed information on images (JSON)"))
    p = sub.add_parser("artifacts", help="list OCI artifacts (manifests that are not images)")
    p.add_argument("--no-trunc", action="store_true", help="show full digests")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_artifacts)


def add_image_commands(image: Any) -> None:
    """The read-side members of the ``image`` group: ``image ls|tag|history|inspect``."""
    _add_images(image.add_parser("ls", aliases=["list"], help="list images"))
    _add_tag(image.add_parser("tag", help="create a tag"))
    _add_history(image.add_parser("history", help="show the history of an image"))
    _add_inspect(image.add_parser("inspect", help="display detailed information on images"))
