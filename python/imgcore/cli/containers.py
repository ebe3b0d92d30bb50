"""CLI: create, ps, rm, mount, umount, exec, diff, commit (docker's spelling and output)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from imgcore._humanize import ago
from imgcore._progress import make_progress
from imgcore.containers.commit import commit
from imgcore.containers.manager import Containers, mounted
from imgcore.errors import ImgcoreError
from imgcore.store import ContentStore

__all__ = ["register"]


def _ctx(args: argparse.Namespace) -> tuple[ContentStore, Containers]:
    store = ContentStore(args.root)
    return store, Containers(store)


def _eq_value(value: str | None) -> str | None:
    """``-m="msg"`` reaches us as ``=msg`` (the shell removed the quotes): docker stores ``msg``."""
    return value[1:] if value is not None and value.startswith("=") else value


def cmd_create(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    c = cs.create(args.image, name=args.name, driver=args.driver)
    cs.mount(c)
    print(c.id)
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    rows = []
    for c in cs.list():
        up = c.driver == "copy" or mounted(c.rootfs)
        if not (up or args.all):
            continue
        rows.append(
            (
                c.id if args.no_trunc else c.id[:12],
                c.image,
                c.driver,
                _ago(c.created),
                "Up (rootfs ready)" if up else "Created",
                c.name,
            )
        )
    if args.quiet:
        for r in rows:
            print(r[0])
        return 0
    _table(("CONTAINER ID", "IMAGE", "DRIVER", "CREATED", "STATUS", "NAMES"), rows)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    rc = 0
    for name in args.containers:
        try:
            c = cs.get(name)
            cs.remove(c)
            print(name)
        except Exception as e:
            if not isinstance(e, ImgcoreError | OSError):
                raise
            print(f"Error: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_mount(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    print(cs.mount(cs.get(args.container)))
    return 0


def cmd_umount(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    cs.unmount(cs.get(args.container))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in args.env or [])
    return cs.exec(cs.get(args.container), argv, env=env).returncode


def cmd_diff(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    for ch in cs.diff(cs.get(args.container), paranoid=args.paranoid):
        print(f"{ch.kind} {ch.path}")
    return 0


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
        progress=(progress := make_progress(stream=sys.stderr)),
    )
    progress.close()
    print(result.image_id)
    return 0


def _ago(created: str) -> str:
    return str(ago(created))


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    print("   ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    for r in rows:
        print("   ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip())


def register(sub: Any) -> None:
    """Adds the container commands (create, ps, rm, mount, umount, exec, diff, commit) to ``sub``."""
    p = sub.add_parser("create", help="create a writable container from an image")
    p.add_argument("image")
    p.add_argument("--name")
    p.add_argument("--driver", choices=["overlay", "copy"], help="default: overlay where root may mount it")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also containers whose rootfs is not mounted")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="accepted for docker compatibility")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("mount", help="mount a container's rootfs and print its path")
    p.add_argument("container")
    p.set_defaults(func=cmd_mount)

    p = sub.add_parser("umount", help="unmount a container's rootfs")
    p.add_argument("container")
    p.set_defaults(func=cmd_umount)

    p = sub.add_parser("exec", help="run a command inside a container's rootfs")
    p.add_argument("-e", "--env", action="append")
    p.add_argument("container")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("diff", help="list a container's changes (A added, C changed, D deleted)")
    p.add_argument("container")
    p.add_argument("--paranoid", action="store_true", help="hash every file instead of trusting metadata")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("commit", help="create a new image from a container's changes")
    p.add_argument("-m", "--message")
    p.add_argument("-a", "--author")
    p.add_argument("-c", "--change", action="append", help="Dockerfile instruction (CMD, ENV, WORKDIR, ...)")
    p.add_argument("--compression", choices=["gzip", "zstd", "none"], default="gzip")
    p.add_argument("--paranoid", action="store_true")
    p.add_argument("container")
    p.add_argument("repo_tag", nargs="?")
    p.set_defaults(func=cmd_commit)
