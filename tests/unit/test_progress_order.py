"""docker's order on a terminal: per-layer bars first, then ``Digest:`` and ``Status:`` below them."""

from __future__ import annotations

import io

from imgcore._progress import LinesOnly, PlainProgress, RichProgress


def test_rich_prints_lines_reported_during_the_bars_after_them() -> None:
    out = io.StringIO()
    p = RichProgress(out)
    p.line("latest: Pulling from library/tomcat")
    p.layer("0123456789ab", "Downloading", 10, 100)
    p.line("Digest: sha256:abc")
    p.layer("0123456789ab", "Pull complete")
    p.line("Status: Downloaded newer image for tomcat:latest")
    p.close()
    text = out.getvalue()
    assert text.index("Pulling from") < text.index("0123456789ab") < text.index("Digest:") < text.index("Status:")


def test_plain_lines_and_lines_only() -> None:
    out = io.StringIO()
    p = PlainProgress(out)
    p.layer("abc", "Loading layer", 0, 10)
    p.layer("abc", "Loading layer", 5, 10)  # byte updates are not printed off a terminal
    p.line("Loaded image: x:1")
    assert out.getvalue() == "abc: Loading layer\nLoaded image: x:1\n"
    out2 = io.StringIO()
    q = LinesOnly(out2)
    q.layer("abc", "Loading layer", 0, 10)
    q.line("Loaded image: x:1")
    assert out2.getvalue() == "Loaded image: x:1\n"
