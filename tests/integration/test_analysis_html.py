"""``imgcore analyze --html``: the report is one self-contained file (no script, nothing fetched, every image
string escaped) that a real browser renders: Debian's headless Chromium takes a screenshot of it, and the
screenshot shows the charts (colored bars of the layer chart and the treemap, not a blank page)."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

import pytest

from imgcore.cli import main
from imgcore.store import ContentStore
from tests.conftest import require_tool
from tests.images_helpers import make_image
from tests.strategies import TarEntry, build_tar

pytestmark = pytest.mark.integration


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the unfiltered RGB(A) rows of a PNG (the standard library only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            channels = {2: 3, 6: 4}[body[9]]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line[j] for j in range(stride) if j % channels < 3))
        prev = line
    return width, height, rows


def test_html_report_renders_in_chromium(store: ContentStore, tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    base = make_image(store, "base:1", {"usr/lib/big": b"b" * 200_000, "etc/conf": b"c" * 5000})
    tar = build_tar([TarEntry.dir("etc"), TarEntry.file("etc/conf", b"c" * 5000, mode=0o600),
                     TarEntry.file("<script>alert(1)</script>", b"x" * 1000)])  # fmt: skip
    make_image(store, "app:1", {}, parent=base, tar=tar)
    report = tmp_path / "report.html"
    assert main(["--root", str(store.root), "analyze", "app:1", "--html", str(report)]) == 0
    text = report.read_text()
    assert "<script" not in text  # self-contained and inert: no script at all, the hostile name escaped
    assert "/&lt;script&gt;alert(1)&lt;" in text  # the name's directory, in the treemap
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert 'id="layers-chart"' in text
    assert 'id="treemap"' in text
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1000,1400", report.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 1400)
    colors: dict[bytes, int] = {}
    for row in rows[::4]:
        for x in range(0, len(row), 12):
            px = row[x : x + 3]
            colors[px] = colors.get(px, 0) + 1
    # The chart's "kept" blue and the treemap's first color are painted (Chromium rendered the SVG).
    assert colors.get(bytes.fromhex("4e79a7"), 0) > 50
    assert len([c for c, n in colors.items() if n > 20]) >= 4
