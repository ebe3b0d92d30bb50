"""Docker-style progress output: plain lines off a terminal, live bars on one, nothing with -q."""

from __future__ import annotations

import io

import pytest

from imgcore._progress import NullProgress, PlainProgress, RichProgress, make_progress, short_id


def test_short_id() -> None:
    assert short_id("sha256:" + "ab" * 32) == "abababababab"


def test_plain_prints_each_status_once() -> None:
    out = io.StringIO()
    p = PlainProgress(out)
    p.line("v1: Pulling from test/app")
    p.layer("aaa", "Pulling fs layer")
    p.layer("aaa", "Downloading", 0, 100)
    p.layer("aaa", "Downloading", 50, 100)
    p.layer("aaa", "Download complete")
    assert out.getvalue().splitlines() == [
        "v1: Pulling from test/app",
        "aaa: Pulling fs layer",
        "aaa: Downloading",
        "aaa: Download complete",
    ]


def test_make_progress_choices() -> None:
    assert isinstance(make_progress(quiet=True), NullProgress)
    assert isinstance(make_progress(stream=io.StringIO()), PlainProgress)


def test_rich_bars_render() -> None:
    pytest.importorskip("rich")
    out = io.StringIO()
    p = RichProgress(out)
    p.layer("bbbbbbbbbbbb", "Downloading", 10, 1000)
    p.layer("bbbbbbbbbbbb", "Pull complete")
    p.line("Digest: sha256:00")
    p.close()
    text = out.getvalue()
    assert "bbbbbbbbbbbb" in text
    assert "Pull complete" in text
    assert "Digest: sha256:00" in text
