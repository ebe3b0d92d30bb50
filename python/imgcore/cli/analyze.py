"""CLI: ``analyze IMAGE`` -- how well an image uses its layers (dive's figures beside content-true ones, what-if
savings, ``--json``, ``--ci`` (dive's rules, from the options and ``.dive-ci``), ``--against``, ``--html``, ``-i``,
``--store``, ``--find-digest``).

This module only parses and looks in the output cache (``cli/_output_cache.py``): a second analysis of an image
with the same options prints the stored report without importing numpy or reading a table. On a miss it loads
``cli/_analyze_report.py`` by module name (the command groups' own lazy loading) and records what that prints.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from imgcore.cli import _output_cache
from imgcore.errors import InvalidArgument
from imgcore.image.catalog import resolve
from imgcore.image.model import Image
from imgcore.store import ContentStore

__all__ = ["cmd_analyze", "output_key", "register"]

#: dive's CI rules: option name -> (its key in a ``.dive-ci`` file, dive's default).
_RULES = {
    "lowest_efficiency": ("lowestEfficiency", "0.9"),
    "highest_wasted_bytes": ("highestWastedBytes", "disabled"),
    "highest_user_wasted_percent": ("highestUserWastedPercent", "0.1"),
}
_CI_CONFIG = ".dive-ci"
_CI_CONFIG_MAX = 64 << 10

#: The options that change what ``analyze`` prints.
_OUTPUT_OPTIONS = ("json", "ci", "lowest_efficiency", "highest_wasted_bytes", "highest_user_wasted_percent",
                   "squash", "drop", "top")  # fmt: skip


def _identity(image: Image) -> dict[str, Any]:
    return {"digest": image.digest, "id": image.id, "tags": list(image.tags)}


_PACKAGE = Path(__file__).resolve().parent.parent


def _code_stamp() -> list[tuple[str, int, int]]:
    """Size and mtime of the code that writes the report (the analysis package, the report module, the
    extension): an upgrade or an edit that keeps the version string still changes the key."""
    files = [*(_PACKAGE / "analysis").glob("*.py"), _PACKAGE / "cli" / "_analyze_report.py",
             *_PACKAGE.glob("_core*.so")]  # fmt: skip
    stamp = []
    for f in sorted(files):
        try:
            st = f.stat()
        except OSError:
            continue
        stamp.append((f.name, st.st_size, st.st_mtime_ns))
    return stamp


def output_key(args: argparse.Namespace, image: Image, baseline: Image | None, *, tty: bool) -> str:
    """The output cache's name for this report: the images' identities, the options, the terminal and the
    code's stamp."""
    parts = {
        "code": _code_stamp(),
        "image": _identity(image),
        "against": None if baseline is None else _identity(baseline),
        "options": {k: getattr(args, k) for k in _OUTPUT_OPTIONS},
        "tty": tty,
    }
    return _output_cache.key(parts)


def _ci_config(path: Path) -> dict[str, str]:
    """The ``rules:`` of a ``.dive-ci`` file (dive's YAML: ``rules:`` then indented ``key: value`` lines;
    comments, blank lines and other keys are ignored, as dive ignores them)."""
    try:
        with path.open("rb") as f:
            raw = f.read(_CI_CONFIG_MAX + 1)
    except OSError as e:
        raise InvalidArgument(f"analyze --ci-config {path}: cannot read it: {e.strerror or e}") from e
    if len(raw) > _CI_CONFIG_MAX:
        raise InvalidArgument(f"analyze --ci-config {path}: more than {_CI_CONFIG_MAX} bytes")
    rules: dict[str, str] = {}
    section = None
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        text = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not text.strip():
            continue
        key, sep, value = text.strip().partition(":")
        if not sep:
            raise InvalidArgument(f"analyze --ci-config {path}: line {n}: not 'key: value': {line.strip()!r}")
        if not text[0].isspace():
            section = key
            continue
        if section == "rules":
            rules[key.strip()] = value.strip().strip("'\"")
    return rules


def _apply_ci_rules(args: argparse.Namespace) -> None:
    """dive's precedence for each CI rule: the option when given, else the ``.dive-ci`` file's value (the
    default file only when it exists), else dive's default."""
    path = Path(args.ci_config or _CI_CONFIG)
    rules = _ci_config(path) if args.ci_config or path.is_file() else {}
    for option, (name, default) in _RULES.items():
        if getattr(args, option) is None:
            setattr(args, option, rules.get(name, default))


def _report_module() -> Any:
    # numpy's OpenBLAS starts a thread per core at import; analysis does no linear algebra (and a busy
    # thread pool costs CPU and memory). Only the default is set: a user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return importlib.import_module("imgcore.cli._analyze_report")


def cmd_analyze(args: argparse.Namespace) -> int:
    """``imgcore analyze``: the report from the output cache, else computed (and kept); the exit status."""
    store = ContentStore(args.root)
    if args.find_digest or args.store:
        return int(_report_module().store_report(store, find=args.find_digest, top=args.top))
    if args.image is None:
        raise InvalidArgument("analyze: an IMAGE is required (or --store, or --find-digest)")
    if args.ci:
        _apply_ci_rules(args)
    image = resolve(store, args.image)
    baseline = resolve(store, args.against) if args.against else None
    if args.no_cache or args.interactive or args.html:
        return int(_report_module().run(args, image, baseline, sys.stdout))
    directory = store.paths.analysis_output
    name = output_key(args, image, baseline, tty=sys.stdout.isatty())
    hit = _output_cache.read(directory, name)
    if hit is not None:
        status, text = hit
        sys.stdout.write(text)
        return status
    with _output_cache.Recorder(sys.stdout, directory) as out:
        status = int(_report_module().run(args, image, baseline, out))
        out.save(name, status)
    return status


def register(sub: Any) -> None:
    """Adds ``analyze`` to the command line."""
    p = sub.add_parser("analyze", help="how well an image uses its layers: waste, duplicates, dive's figures")
    p.add_argument("image", nargs="?")
    p.add_argument("--json", action="store_true", help="print everything as JSON, with each layer's file list")
    p.add_argument("--ci", action="store_true", help="apply dive's CI rules; exit 1 when one fails")
    p.add_argument("--ci-config", metavar="FILE",
                   help="dive's CI rules file (default .dive-ci, if there is one); the options below win")  # fmt: skip
    p.add_argument("--lowest-efficiency", "--lowestEfficiency", help="dive rule (0-1 or disabled; default 0.9)")
    p.add_argument("--highest-wasted-bytes", "--highestWastedBytes",
                   help="dive rule (bytes such as 20MB, or disabled; the default)")  # fmt: skip
    p.add_argument("--highest-user-wasted-percent", "--highestUserWastedPercent",
                   help="dive rule (0-1 or disabled; default 0.1)")  # fmt: skip
    p.add_argument("-i", "--interactive", action="store_true", help="explore layers and the merged tree (textual)")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report (SVG charts) to FILE")
    p.add_argument("--against", metavar="IMAGE", help="compare with IMAGE (the baseline): added/removed/changed")
    p.add_argument("--squash", type=int, metavar="N", help="what-if: squash the top N layers (default all)")
    p.add_argument("--drop", action="append", metavar="GLOB", help="what-if: never write paths matching GLOB")
    p.add_argument("--top", type=int, default=20, help="rows of the top lists (default 20)")
    p.add_argument("--store", action="store_true", help="file content stored more than once across the store")
    p.add_argument("--find-digest", metavar="DIGEST", help="list the images holding a file of this sha256")
    p.add_argument("--no-cache", action="store_true", help="read every layer again (and cache nothing)")
    p.set_defaults(func=cmd_analyze)
