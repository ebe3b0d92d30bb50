"""The ``imgcore`` command: argument parsing and output formatting only; the work is done by the library.

Heavy modules are imported inside the command functions, so ``imgcore --help`` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _store(args: argparse.Namespace) -> Any:
    from imgcore.store import Store

    return Store(args.root)


def cmd_fsck(args: argparse.Namespace) -> int:
    store = _store(args)
    blobs = store.list_blobs()
    problems = store.fsck()
    for p in problems:
        print(f"CORRUPT {p}")
    print(f"checked {len(blobs)} blobs in {store.root}: {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_blob_put(args: argparse.Namespace) -> int:
    store = _store(args)
    for path in args.files:
        desc = store.put_blob(sys.stdin.buffer if path == "-" else path, digest=args.digest)
        print(f"{desc.digest}\t{desc.size}\t{path}")
    return 0


def cmd_blob_ls(args: argparse.Namespace) -> int:
    store = _store(args)
    for d in store.list_blobs():
        print(f"{d}\t{store.blob_size(d)}")
    return 0


def cmd_blob_cat(args: argparse.Namespace) -> int:
    store = _store(args)
    sys.stdout.buffer.write(store.get_blob(args.digest, verify=True))
    return 0


def cmd_blob_rm(args: argparse.Namespace) -> int:
    store = _store(args)
    for d in args.digests:
        print(("deleted " if store.delete_blob(d) else "absent ") + d)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from imgcore.demo import run

    return run(args.root)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcore", description="Docker/OCI images: store, layers, commit.")
    parser.add_argument(
        "--root", default=None, help="store directory (default $IMGCORE_ROOT or ~/.local/share/imgcore)"
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("fsck", help="re-hash every blob and report corrupt ones")
    p.set_defaults(func=cmd_fsck)

    blob = sub.add_parser("blob", help="content store blobs").add_subparsers(dest="blob_command", required=True)
    p = blob.add_parser("put", help="store files (or - for stdin) as blobs")
    p.add_argument("files", nargs="+")
    p.add_argument("--digest", help="expected digest (refused on mismatch)")
    p.set_defaults(func=cmd_blob_put)
    p = blob.add_parser("ls", help="list blobs")
    p.set_defaults(func=cmd_blob_ls)
    p = blob.add_parser("cat", help="write a verified blob to stdout")
    p.add_argument("digest")
    p.set_defaults(func=cmd_blob_cat)
    p = blob.add_parser("rm", help="delete blobs")
    p.add_argument("digests", nargs="+")
    p.set_defaults(func=cmd_blob_rm)

    p = sub.add_parser("demo", help="run the end-to-end demo in a fresh store")
    p.set_defaults(func=cmd_demo)

    for register in _plugins():
        register(sub)
    return parser


def _plugins() -> list[Callable[[Any], None]]:
    """Subcommand groups that live beside their area (``imgcore._cli_*`` modules)."""
    out: list[Callable[[Any], None]] = []
    import importlib

    for name in ("imgcore._cli_containers", "imgcore._cli_distribution", "imgcore._cli_layers", "imgcore._cli_images"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        out.append(module.register)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from imgcore import __version__

        print(f"imgcore {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from imgcore.errors import ImgcoreError

    try:
        return int(args.func(args))
    except ImgcoreError as e:
        print(f"imgcore: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"imgcore: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("imgcore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
