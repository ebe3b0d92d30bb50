"""The ``imgcore`` command: argument parsing and output formatting only; the work is done by the library.

One module per command group (``cli/images.py``, ``cli/housekeeping.py``, ``cli/containers.py``,
``cli/distribution.py``, ``cli/layers.py``, ``cli/store.py``, ``cli/remote.py``), each importing what it uses at its
top.
:data:`COMMANDS` maps every command to its group, so a command loads only its own group (``imgcore images``
never imports the registry client, TLS, rich, garbage collection or tarfile); ``--help`` loads them all and
``--version`` none.

docker's conventions: usage errors exit 125 (docker's "error in the CLI itself"), an imgcore error exits 1 with
``Error: <message>`` on stderr, Ctrl-C exits 130, and a closed pipe (``imgcore diff C | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from imgcore import __version__
from imgcore.errors import ImgcoreError

__all__ = ["COMMANDS", "build_parser", "main"]

USAGE_ERROR = 125

#: command -> the group module that registers it (and its handlers).
COMMANDS: dict[str, str] = {
    **dict.fromkeys(("images", "tag", "history", "inspect", "artifacts"), "imgcore.cli.images"),
    **dict.fromkeys(("rmi", "import", "export", "df", "prune", "image"), "imgcore.cli.housekeeping"),
    **dict.fromkeys(
        (
            "create",
            "run",
            "start",
            "stop",
            "kill",
            "restart",
            "wait",
            "logs",
            "exec",
            "attach",
            "pause",
            "unpause",
            "ps",
            "rm",
            "cp",
            "mount",
            "umount",
            "diff",
        ),
        "imgcore.cli.containers",
    ),
    "commit": "imgcore.cli.commit",
    **dict.fromkeys(("pull", "push", "login", "logout", "save", "load"), "imgcore.cli.distribution"),
    **dict.fromkeys(("ls", "layer"), "imgcore.cli.layers"),
    **dict.fromkeys(("fsck", "blob", "demo"), "imgcore.cli.store"),
    **dict.fromkeys(("manifest", "digest", "tags", "catalog", "copy", "delete", "sync"), "imgcore.cli.remote"),
    # config prints a registry image's config (cli.remote) or, with -c/-t, changes a stored one (cli.reshape)
    **dict.fromkeys(("squash", "flatten", "rebase", "append", "config"), "imgcore.cli.reshape"),
    "analyze": "imgcore.cli.analyze",
}


class _Parser(argparse.ArgumentParser):
    """argparse with docker's exit status for usage errors (125 instead of 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def build_parser(groups: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the given group modules' commands (all of them by default)."""
    parser = _Parser(prog="imgcore", description="Docker/OCI images: store, layers, containers, registries.")
    parser.add_argument(
        "--root", default=None, help="store directory (default $IMGCORE_ROOT or ~/.local/share/imgcore)"
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in groups if groups is not None else sorted(set(COMMANDS.values())):
        importlib.import_module(name).register(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (the first word that is not a global option or its value)."""
    it = iter(argv)
    for word in it:
        if word == "--root":
            next(it, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one ``imgcore`` command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(args_list)
    if command is None and "--version" in args_list and "-h" not in args_list and "--help" not in args_list:
        print(f"imgcore {__version__}")
        return 0
    group = COMMANDS.get(command) if command else None
    parser = build_parser([group] if group else None)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else USAGE_ERROR
    if not getattr(args, "func", None):
        parser.print_help()
        return USAGE_ERROR
    try:
        return int(args.func(args))
    except ImgcoreError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # a command the workflows do not wrap (save, cp, ...)
            where = f" writing {e.filename}" if e.filename else ""
            print(f"Error: {args.command}: no space left on device{where}: free some space and run it again",
                  file=sys.stderr)  # fmt: skip
            return 1
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("imgcore: interrupted", file=sys.stderr)
        return 130


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's final flush cannot complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def run() -> None:
    """The console entry point: ``main`` with a closed pipe on the final flush handled as docker does."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    sys.exit(code)


if __name__ == "__main__":
    run()
