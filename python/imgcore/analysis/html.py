"""The ``analyze --html`` report: one self-contained HTML file (inline CSS and SVG, no script, nothing fetched)
with dive's and the content-true figures, an SVG chart of bytes per layer (kept, hidden, metadata-only) and a
squarified treemap of the largest directories of the final tree.

Invariant: every string from the image (paths, commands, tags) is HTML-escaped before it is written.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from imgcore._humanize import human_size
from imgcore.analysis import Analysis
from imgcore.analysis.tables import FILE
from imgcore.analysis.tree import merged_tree

__all__ = ["directory_sizes", "render_html", "squarify"]

_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]


def squarify(sizes: Sequence[float], x: float, y: float, w: float, h: float) -> list[tuple[float, float, float, float]]:
    """Squarified treemap (Bruls, Huizing, van Wijk): rectangles for ``sizes`` (sorted largest first) in the box."""
    total = sum(sizes)
    if not sizes or total <= 0 or w <= 0 or h <= 0:
        return [(x, y, 0.0, 0.0) for _ in sizes]
    areas = [s * w * h / total for s in sizes]
    out: list[tuple[float, float, float, float]] = []
    i = 0
    while i < len(areas):
        side = min(w, h)
        row = [areas[i]]
        j = i + 1

        def worst(r: list[float], side: float = side) -> float:
            s = sum(r)
            return max(max(side * side * a / (s * s), s * s / (side * side * a)) for a in r if a > 0) if s else 0.0

        while j < len(areas) and worst([*row, areas[j]]) <= worst(row):
            row.append(areas[j])
            j += 1
        s = sum(row)
        # Lay the row along the shorter side: a column on the left when the box is wide, else a row on top
        # (the same code on the transposed box).
        tall = w < h
        bx, by, bw, bh = (y, x, h, w) if tall else (x, y, w, h)
        cw = s / bh if bh else 0.0
        cy = by
        for a in row:
            rh = a / cw if cw else 0.0
            out.append((cy, bx, rh, cw) if tall else (bx, cy, cw, rh))
            cy += rh
        bx, bw = bx + cw, bw - cw
        x, y, w, h = (by, bx, bh, bw) if tall else (bx, by, bw, bh)
        i = j
    return out


def _layer_chart(a: Analysis) -> str:
    rows = a.layers
    bar_h, gap, left, width = 26, 8, 60, 620
    top = max((r.file_bytes for r in rows), default=0) or 1
    height = len(rows) * (bar_h + gap) + 40
    parts = [f'<svg id="layers-chart" xmlns="http://www.w3.org/2000/svg" width="{left + width + 240}" '
             f'height="{height}" role="img" aria-label="bytes per layer">']  # fmt: skip
    for i, r in enumerate(rows):
        y = 10 + i * (bar_h + gap)
        hidden = r.wasted_bytes
        meta = min(r.metadata_bytes, r.file_bytes - hidden)
        kept = max(r.file_bytes - hidden - meta, 0)
        x = float(left)
        parts.append(f'<text x="4" y="{y + 18}" font-size="13">layer {i}</text>')
        for value, color, what in ((kept, "#4e79a7", "kept"), (hidden, "#e15759", "hidden later"),
                                   (meta, "#edc948", "metadata-only")):  # fmt: skip
            wpx = value / top * width
            if wpx > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{wpx:.1f}" height="{bar_h}" fill="{color}">'
                             f"<title>{what}: {human_size(value)}</title></rect>")  # fmt: skip
            x += wpx
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 18}" font-size="12">{human_size(r.file_bytes)} '
                     f"({human_size(r.compressed_bytes)} compressed)</text>")  # fmt: skip
    y = height - 14
    for k, (color, what) in enumerate((("#4e79a7", "kept"), ("#e15759", "hidden later (waste)"),
                                       ("#edc948", "metadata-only rewrite"))):  # fmt: skip
        parts.append(f'<rect x="{left + k * 200}" y="{y - 10}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{left + k * 200 + 16}" y="{y}" font-size="12">{what}</text>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def directory_sizes(a: Analysis) -> dict[str, int]:
    """File bytes of the final tree by directory, cut at three components: a file counts for its own directory
    when that is shallower, else for its ancestor three deep (whose subtree total the merged tree has)."""
    t = merged_tree(a, len(a.tables) - 1)
    sizes: dict[str, int] = {}
    for i in np.flatnonzero(t.depth <= 2).tolist():
        if t.kind[i] == FILE and t.size[i]:
            key, value = t.path(i).rpartition("/")[0] or "/", int(t.size[i])
        elif t.depth[i] == 2 and t.kind[i] != FILE and t.total[i]:
            key, value = t.path(i), int(t.total[i])
        else:
            continue
        sizes[key] = sizes.get(key, 0) + value
    return sizes


def _treemap(a: Analysis, width: int = 800, height: int = 420, top: int = 24) -> str:
    sizes = directory_sizes(a)
    items = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    shown, rest = items[:top], sum(v for _, v in items[top:])
    if rest:
        shown.append(("(other directories)", rest))
    rects = squarify([float(v) for _, v in shown], 0, 0, width, height)
    parts = [f'<svg id="treemap" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="largest directories">']  # fmt: skip
    for k, ((name, value), (x, y, w, h)) in enumerate(zip(shown, rects, strict=True)):
        label = html.escape(name)
        parts.append(f'<g><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{_COLORS[k % 9]}" '
                     f'stroke="#fff"><title>{label}: {human_size(value)}</title></rect>')  # fmt: skip
        if w > 60 and h > 28:
            parts.append(f'<text x="{x + 4:.1f}" y="{y + 15:.1f}" font-size="12" fill="#fff">'
                         f"{html.escape(name[: int(w / 7)])}"
                         f'</text><text x="{x + 4:.1f}" y="{y + 29:.1f}" font-size="11" fill="#fff">'
                         f"{human_size(value)}</text>")  # fmt: skip
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def render_html(a: Analysis, *, top: int = 30) -> str:
    """The report of ``a`` as one HTML document."""
    d = a.dive
    dup_bytes, dup_groups = a.duplicates
    esc = html.escape
    layer_rows = "".join(
        f"<tr><td>{s.index}</td><td>{human_size(s.bytes)}</td><td>{human_size(s.compressed_bytes)}</td>"
        f"<td>{s.files}</td><td>{s.added}</td><td>{s.modified}</td><td>{s.deleted}</td><td>{s.metadata_only}</td>"
        f"<td>{human_size(s.wasted_bytes)}</td><td><code>{esc(' '.join(s.command.split())[:120])}</code></td></tr>"
        for s in a.layers
    )
    wasted_rows = (
        "".join(
            f"<tr><td>{w.copies}</td><td>{human_size(w.wasted_bytes)}</td><td><code>{esc(w.path)}</code></td></tr>"
            for w in a.wasted[:top]
        )
        or '<tr><td colspan="3">none</td></tr>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imgcore analyze {esc(a.reference)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; font-size: 13px; text-align: right; }}
td:last-child, th:last-child {{ text-align: left; }}
.figures td {{ text-align: left; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 24px; }}
</style></head><body>
<h1>{esc(a.reference)}</h1>
<p><code>{esc(a.image.id)}</code>, {len(a.layers)} layers</p>
<table class="figures">
<tr><th>dive efficiency</th><td id="dive-efficiency">{d.efficiency * 100:.4f} %</td></tr>
<tr><th>dive wasted bytes</th><td id="dive-wasted">{d.wasted_bytes} ({human_size(d.wasted_bytes)})</td></tr>
<tr><th>content-true efficiency</th><td>{a.efficiency * 100:.4f} %</td></tr>
<tr><th>hidden copies (waste)</th><td>{human_size(a.wasted_bytes)}</td></tr>
<tr><th>duplicates by content</th><td>{human_size(dup_bytes)} in {dup_groups} groups</td></tr>
<tr><th>metadata-only rewrites</th><td>{human_size(a.fold_savings())} ({len(a.rewrites)} files)</td></tr>
<tr><th>squash all layers saves</th><td>{human_size(a.squash_savings(len(a.layers)))}</td></tr>
</table>
<h2>Bytes per layer</h2>
{_layer_chart(a)}
<table><tr><th>#</th><th>size</th><th>compressed</th><th>files</th><th>added</th><th>modified</th><th>deleted</th>
<th>metadata-only</th><th>wasted</th><th>command</th></tr>{layer_rows}</table>
<h2>Largest directories</h2>
{_treemap(a)}
<h2>Top wasted paths</h2>
<table><tr><th>copies</th><th>wasted</th><th>path</th></tr>{wasted_rows}</table>
</body></html>
"""
