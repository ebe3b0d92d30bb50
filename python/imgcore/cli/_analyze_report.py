"""The reports of ``imgcore analyze`` (loaded by ``cli/analyze.py`` when its output cache misses, so numpy is
imported only then): a per-layer summary (bars on a terminal), dive's figures beside content-true ones, the top
wasted paths, what-if savings; ``--json`` (with every layer's full file list, streamed), ``--ci`` (dive's rules,
output and exit codes), ``--against B``, ``--store`` (content duplicated between the store's images),
``--find-digest`` (which images hold a file of that content), ``--html FILE`` (a report with SVG charts) and
``-i`` (the textual explorer).

Invariants: the text report makes the rows it prints and no other per-path object, and decodes no string
table; ``--json`` is the document ``json.dumps`` would write, streamed: its per-path lists (``fileReference``,
``wasted``, ``metadataOnly``) from their columns and each layer's ``fileList`` (formatted in Rust,
``_core.file_list_json``) a chunk of ``CHUNK`` items at a time, never a whole list or a whole layer's text."""

from __future__ import annotations

import argparse
import functools
import importlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, TextIO

from imgcore._core import file_list_json
from imgcore._humanize import human_size
from imgcore.analysis import Analysis, analyze, find_digest, store_files
from imgcore.analysis._rows import CHUNK
from imgcore.analysis.html import render_html
from imgcore.image.catalog import catalog
from imgcore.image.model import Image
from imgcore.store import ContentStore

__all__ = ["ci_report", "parse_bytes", "run", "store_report", "to_json", "write_json"]

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15, "kib": 2**10, "ki": 2**10, "mib": 2**20,
          "mi": 2**20, "gib": 2**30, "gi": 2**30, "tib": 2**40, "ti": 2**40, "pib": 2**50, "pi": 2**50}  # fmt: skip


def parse_bytes(text: str) -> int:
    """go-humanize's ``ParseBytes`` (what dive's ``highestWastedBytes`` takes): ``42``, ``42MB``, ``1.5 GiB``;
    a bad value raises ``ValueError`` with go-humanize's (and strconv's) words, as dive prints them."""
    m = re.fullmatch(r"\s*([0-9.,]*)\s*(.*?)\s*", text)
    number, unit = (m.group(1), m.group(2)) if m else (text, "")
    try:
        value = float(number.replace(",", "")) if re.fullmatch(r"[0-9]*\.?[0-9]*", number.replace(",", "")) else None
    except ValueError:
        value = None
    if value is None:
        raise ValueError(f'strconv.ParseFloat: parsing "{number.replace(",", "")}": invalid syntax')
    if unit.lower() not in _UNITS:
        raise ValueError(f"unhandled size name: {unit.lower()}")
    return int(value * _UNITS[unit.lower()])


def _parse_ratio(value: str) -> float:
    """Go's ``strconv.ParseFloat`` of a rule's value, with its error text."""
    try:
        return float(value) if re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", value) else float("x")
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{value}": invalid syntax') from None


def _go_float(x: float) -> str:
    """Go's ``%v`` of a float64 (shortest repr; ``+Inf``/``NaN``)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    r = repr(x)
    return r[:-2] if r.endswith(".0") else r


@functools.lru_cache(maxsize=1 << 16)
def _si(n: int) -> str:
    """go-humanize ``Bytes`` (SI units, as dive prints them); cached, since dive's inefficient-files list
    repeats a few sizes over hundreds of thousands of rows."""
    if n < 10:
        return f"{n} B"
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    e = min(math.floor(math.log(n, 1000)), len(units) - 1)
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.0f} {units[e]}" if val >= 10 else f"{val:.1f} {units[e]}"


def ci_report(a: Analysis, lowest: str, highest_bytes: str, highest_pct: str) -> tuple[str, bool]:
    """dive's ``--ci`` output and verdict for the three rules (each a value or ``disabled``)."""
    d = a.dive
    lines = [
        f"  efficiency: {d.efficiency * 100:2.4f} %",
        f"  wastedBytes: {d.wasted_bytes} bytes ({_si(d.wasted_bytes)})",
        f"  userWastedPercent: {d.user_wasted_percent * 100:2.4f} %",
        "Inefficient Files:",
        f"{'Count':>5}  {'Wasted Space':>12}  File Path",
    ]
    if not d.inefficient:
        lines.append("None")
    for path, refs, size in d.inefficient:
        lines.append(f"{refs:>5}  {_si(size):>12}  {path}")
    results: dict[str, tuple[str, str]] = {}
    misconfigured = False

    def ratio(key: str, value: str) -> float | None:
        nonlocal misconfigured
        try:
            v = _parse_ratio(value)
        except ValueError as e:
            results[key] = ("MISCONFIGURED", f"invalid config value ('{value}'): {e}")
            misconfigured = True
            return None
        if not 0 <= v <= 1:
            results[key] = ("MISCONFIGURED", f"{key} config value is outside allowed range (0-1), given '{value}'")
            misconfigured = True
            return None
        return v

    rules = {"lowestEfficiency": lowest, "highestWastedBytes": highest_bytes, "highestUserWastedPercent": highest_pct}
    for key, value in rules.items():
        if value == "disabled":
            results[key] = ("SKIP", "rule disabled")
        elif key == "lowestEfficiency":
            v = ratio(key, value)
            if v is not None:
                fail = v > d.efficiency
                results[key] = ("FAIL", f"image efficiency is too low (efficiency={_go_float(d.efficiency)} < "
                                f"threshold={_go_float(v)})") if fail else ("PASS", "")  # fmt: skip
        elif key == "highestWastedBytes":
            try:
                limit = parse_bytes(value)
            except ValueError as e:
                results[key] = ("MISCONFIGURED", f"invalid config value ('{value}'): {e}")
                misconfigured = True
                continue
            fail = d.wasted_bytes > limit
            results[key] = ("FAIL", f"too many bytes wasted (wasted-bytes={d.wasted_bytes} > threshold={limit})") \
                if fail else ("PASS", "")  # fmt: skip
        else:
            v = ratio(key, value)
            if v is not None:
                fail = v < d.user_wasted_percent
                results[key] = ("FAIL", "too many bytes wasted, relative to the user bytes added "
                                f"(%-user-wasted-bytes={_go_float(d.user_wasted_percent)} > "
                                f"threshold={_go_float(v)})") if fail else ("PASS", "")  # fmt: skip
    lines.append("Results:")
    for key in sorted(results):
        status, message = results[key]
        if misconfigured and status != "MISCONFIGURED":
            # dive then lists each rule's configuration only: "test" for a rule that would run.
            status, message = "CONFIGURED   ", message if status == "SKIP" else "test"
        lines.append(f"  {status}: {key}: {message}" if message else f"  {status}: {key}")
    statuses = [s for s, _ in results.values()]
    passed = not misconfigured and "FAIL" not in statuses
    if misconfigured:
        lines.append("CI Misconfigured")
    else:
        lines.append(
            f"Result:{'PASS' if passed else 'FAIL'} [Total:{len(results)}] [Passed:{statuses.count('PASS')}] "
            f"[Failed:{statuses.count('FAIL')}] [Warn:0] [Skipped:{statuses.count('SKIP')}]"
        )
    return "\n".join(lines), passed


def _bar(value: int, top: int, width: int = 24) -> str:
    if top <= 0:
        return ""
    eighths = round(value / top * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")


def _what_if(a: Analysis, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"foldMetadataOnly": a.fold_savings()}
    n = len(a.tables)
    squash = args.squash if args.squash is not None else n
    out["squash"] = {"layers": squash, "savedBytes": a.squash_savings(squash)}
    drops = {}
    for pattern in args.drop or ():
        saved, files = a.drop_savings(pattern)
        drops[pattern] = {"savedBytes": saved, "files": files}
    out["drop"] = drops
    return out


#: Markers standing for the per-path lists in the ``--json`` head (:func:`write_json` streams them in).
_MARKS = {name: f"\0imgcore-analyze:{name}\0" for name in ("fileReference", "wasted", "metadataOnly")}
_MARK_RE = re.compile(r'"\\u0000imgcore-analyze:(\w+)\\u0000"')


def to_json(
    a: Analysis, args: argparse.Namespace, against: Analysis | None, *, streamed: bool = False
) -> dict[str, Any]:
    """The ``--json`` document without the per-layer ``fileList`` arrays (:func:`write_json` streams them in):
    dive's figures under ``dive`` (its export's names), content-true ones beside. ``streamed``: the per-path
    lists (``fileReference``, ``wasted``, ``metadataOnly``) are left as markers that :func:`write_json` fills."""
    d = a.dive
    dup_bytes, dup_groups = a.duplicates
    doc: dict[str, Any] = {
        "image": {"reference": a.reference, "id": a.image.id, "digest": a.image.digest, "layers": len(a.tables)},
        "dive": {
            "sizeBytes": d.size_bytes,
            "userSizeBytes": d.user_size_bytes,
            "inefficientBytes": d.wasted_bytes,
            "efficiencyScore": d.efficiency,
            "userWastedPercent": d.user_wasted_percent if math.isfinite(d.user_wasted_percent) else None,
            "fileReference": _MARKS["fileReference"] if streamed else [
                {"count": c, "sizeBytes": s, "file": p} for p, c, s in d.inefficient],
        },
        "content": {
            "fileBytes": a.image_bytes,
            "wastedBytes": a.wasted_bytes,
            "duplicateBytes": dup_bytes,
            "duplicateGroups": dup_groups,
            "metadataOnlyBytes": a.fold_savings(),
            "efficiency": a.efficiency,
            "wasted": _MARKS["wasted"] if streamed else [
                {"path": w.path, "copies": w.copies, "wastedBytes": w.wasted_bytes, "layers": list(w.layers)}
                for w in a.wasted
            ],
            "metadataOnly": _MARKS["metadataOnly"] if streamed else [
                {
                    "path": r.path,
                    "layer": r.layer,
                    "lowerLayer": r.lower_layer,
                    "size": r.size,
                    "changed": list(r.changed),
                }
                for r in a.rewrites
            ],
        },
        "whatIf": _what_if(a, args),
        "layers": [
            {
                "index": s.index,
                "digest": s.digest,
                "diffId": s.diff_id,
                "command": s.command,
                "compression": s.compression,
                "compressedBytes": s.compressed_bytes,
                "bytes": s.bytes,
                "entries": s.entries,
                "files": s.files,
                "fileBytes": s.file_bytes,
                "added": s.added,
                "modified": s.modified,
                "deleted": s.deleted,
                "metadataOnly": s.metadata_only,
                "metadataOnlyBytes": s.metadata_bytes,
                "wastedBytes": s.wasted_bytes,
                "diveSizeBytes": s.dive_size,
            }
            for s in a.layers
        ],
    }  # fmt: skip
    if against is not None:
        c = a.compare(against)
        doc["against"] = {
            "reference": against.reference,
            "added": [{"path": p, "size": s} for p, s in c.added],
            "removed": [{"path": p, "size": s} for p, s in c.removed],
            "changed": [{"path": p, "sizeBefore": b, "sizeAfter": s, "what": w} for p, b, s, w in c.changed],
            "sharedLayers": list(c.shared_layers),
            "commonLayers": list(c.common_layers),
        }
    return doc


def _list_texts(a: Analysis, name: str) -> Iterator[str]:
    """The JSON text of each item of one per-path list of :func:`to_json` (what ``json.dumps`` writes), made
    a chunk of items at a time."""
    quote = encode_basestring_ascii
    if name == "fileReference":
        for p, c, s in a.dive.inefficient.iter_fields():
            yield f'{{"count": {c}, "sizeBytes": {s}, "file": {quote(p)}}}'
    elif name == "wasted":
        for path, copies, wasted, layers in a.wasted.iter_fields():
            yield (f'{{"path": {quote(path)}, "copies": {copies}, "wastedBytes": {wasted}, '
                   f'"layers": [{", ".join(map(str, layers))}]}}')  # fmt: skip
    else:
        changed_texts: dict[tuple[str, ...], str] = {}
        for path, layer, size, lower, changed in a.rewrites.iter_fields():
            text = changed_texts.get(changed)
            if text is None:
                text = changed_texts[changed] = ", ".join(quote(c) for c in changed)
            yield (f'{{"path": {quote(path)}, "layer": {layer}, "lowerLayer": {lower}, '
                   f'"size": {size}, "changed": [{text}]}}')  # fmt: skip


def _file_chunks(a: Analysis, index: int, file_list: Any = file_list_json) -> Iterator[str]:
    """The JSON text of :meth:`Analysis.iter_layer_files`' entries, ``CHUNK`` rows at a time (joined by ``", "``),
    formatted straight from the columns by ``_core.file_list_json`` (or its pure twin)."""
    t = a.tables[index]
    cols = t.columns()
    ch, sh = a.merge.changes[index], a.merge.shadowed_by[index]
    for start in range(0, len(t), CHUNK):
        yield file_list(cols, ch, sh, start, min(len(t), start + CHUNK))


def _file_entries(a: Analysis, index: int) -> Iterator[str]:
    """The JSON text of each entry of :meth:`Analysis.iter_layer_files` (the same text ``json.dumps`` writes)."""
    t = a.tables[index]
    cols = t.columns()
    ch, sh = a.merge.changes[index], a.merge.shadowed_by[index]
    for r in range(len(t)):
        yield file_list_json(cols, ch, sh, r, r + 1)


def _write_list(out: Any, chunks: Iterable[str]) -> None:
    out.write("[")
    sep = ""
    for chunk in chunks:
        if chunk:
            out.write(sep + chunk)
            sep = ", "
    out.write("]")


def _batches(items: Iterator[str]) -> Iterator[str]:
    return iter(lambda: ", ".join(itertools.islice(items, CHUNK)), "")


def write_json(a: Analysis, args: argparse.Namespace, against: Analysis | None, out: Any) -> None:
    """Writes the ``--json`` document, its per-path lists and each layer's ``fileList`` streamed in, a chunk
    of items at a time (memory for one chunk, never a whole list or a whole layer's text)."""
    doc = to_json(a, args, against, streamed=True)
    layers = doc.pop("layers")
    head = json.dumps(doc)[:-1]
    pos = 0
    for m in _MARK_RE.finditer(head):
        out.write(head[pos : m.start()])
        _write_list(out, _batches(_list_texts(a, m.group(1))))
        pos = m.end()
    out.write(head[pos:] + ', "layers": [')
    for i, layer in enumerate(layers):
        out.write((", " if i else "") + json.dumps(layer)[:-1] + ', "fileList": ')
        _write_list(out, _file_chunks(a, layer["index"]))
        out.write("}")
    out.write("]}\n")


def _text(a: Analysis, args: argparse.Namespace, against: Analysis | None, *, tty: bool) -> str:
    out = [f"Image: {a.reference} ({a.image.id})  {len(a.tables)} layers"]
    top = max((s.bytes for s in a.layers), default=0)
    out.append(f"{'#':>3}  {'SIZE':>9}  {'COMPRESSED':>10}  {'FILES':>7}  {'ADDED':>6}  {'MOD':>5}  {'DEL':>5}  "
               f"{'META':>5}  {'WASTED':>9}  COMMAND")  # fmt: skip
    for s in a.layers:
        cmd = " ".join(s.command.split())
        line = (f"{s.index:>3}  {human_size(s.bytes):>9}  {human_size(s.compressed_bytes):>10}  {s.files:>7}  "
                f"{s.added:>6}  {s.modified:>5}  {s.deleted:>5}  {s.metadata_only:>5}  "
                f"{human_size(s.wasted_bytes):>9}  {cmd[:60]}")  # fmt: skip
        out.append(line)
        if tty:
            out.append(f"     {_bar(s.bytes, top)}")
    d = a.dive
    dup_bytes, dup_groups = a.duplicates
    out += [
        "",
        f"dive:          efficiency {d.efficiency * 100:.4f} %   wasted {d.wasted_bytes} bytes "
        f"({human_size(d.wasted_bytes)})   user wasted {d.user_wasted_percent * 100:.4f} %",
        f"content-true:  efficiency {a.efficiency * 100:.4f} %   hidden copies {human_size(a.wasted_bytes)}   "
        f"duplicates {human_size(dup_bytes)} in {dup_groups} groups   metadata-only rewrites "
        f"{human_size(a.fold_savings())} ({len(a.rewrites)} files)",
    ]
    w = _what_if(a, args)
    out.append(f"what if:       squash last {w['squash']['layers']}: -{human_size(w['squash']['savedBytes'])}   "
               f"fold metadata-only rewrites: -{human_size(w['foldMetadataOnly'])}")  # fmt: skip
    for pattern, v in w["drop"].items():
        out.append(f"               drop {pattern}: -{human_size(v['savedBytes'])} ({v['files']} files)")
    out += ["", "Top wasted paths:", f"{'COPIES':>6}  {'WASTED':>9}  PATH"]
    for item in a.wasted[: args.top]:
        out.append(f"{item.copies:>6}  {human_size(item.wasted_bytes):>9}  {item.path}")
    if not a.wasted:
        out.append("  none")
    if against is not None:
        c = a.compare(against)
        out += ["", f"Against {against.reference}: {len(c.added)} added ({human_size(c.added_bytes)}), "
                f"{len(c.removed)} removed ({human_size(c.removed_bytes)}), {len(c.changed)} changed; "
                f"{len(c.shared_layers)} shared base layers, {len(c.common_layers)} layers in common"]  # fmt: skip
        for p, size in c.added[: args.top]:
            out.append(f"  A {p} ({human_size(size)})")
        for p, size in c.removed[: args.top]:
            out.append(f"  D {p} ({human_size(size)})")
        for p, _before, size, what in c.changed[: args.top]:
            out.append(f"  C {p} ({what}, {human_size(size)})")
    return "\n".join(out)


def store_report(store: ContentStore, *, find: str | None, top: int) -> int:
    """``analyze --store`` / ``df --files``: content stored more than once across the store's layers; with
    ``find`` (``analyze --find-digest``, ``df --files --digest``), where a file of that content is."""
    if find:
        hits = find_digest(store, catalog(store), find)
        for name, path, layer, digest in hits:
            print(f"{name}\t{path}\tlayer {layer} ({digest})")
        return 0 if hits else 1
    sf = store_files(store, catalog(store), top=top)
    print(f"{sf.images} images, {sf.layers} layers: {human_size(sf.duplicated_bytes)} of file content is "
          f"stored more than once across layers ({sf.duplicated_bytes} bytes)")  # fmt: skip
    for sha, size, copies, images in sf.top:
        print(f"{copies:>4}x {human_size(size):>9}  {sha}  {', '.join(images)}")
    return 0


def run(args: argparse.Namespace, image: Image, baseline: Image | None, out: TextIO) -> int:
    """Analyses ``image`` (against ``baseline``) as ``args`` ask and writes the report to ``out``; the exit
    status (dive's CI rules: 1 when one fails)."""
    a = analyze(image, cache=not args.no_cache)
    against = analyze(baseline, cache=not args.no_cache) if baseline is not None else None
    if args.interactive:
        # textual is loaded only here (the command groups' own lazy loading, by module name).
        importlib.import_module("imgcore.analysis._explore").run(a)
        return 0
    if args.html:
        Path(args.html).write_text(render_html(a, top=args.top), encoding="utf-8")
    if args.ci:
        report, passed = ci_report(a, args.lowest_efficiency, args.highest_wasted_bytes,
                                   args.highest_user_wasted_percent)  # fmt: skip
        if args.json:
            write_json(a, args, against, out)
        else:
            out.write(report + "\n")
        return 0 if passed else 1
    if args.json:
        write_json(a, args, against, out)
    elif not args.html:
        out.write(_text(a, args, against, tty=out.isatty()) + "\n")
    return 0
