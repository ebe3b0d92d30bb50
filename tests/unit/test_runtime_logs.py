"""The json-file log writer and reader (docker's format and ``logs`` semantics), and the monitor's clock."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcore.errors import InvalidArgument
from imgcore.runtime import logs
from imgcore.runtime._state import fixed_nano, parse_nano, rfc3339nano

T0 = 1_764_583_608_123_456_789  # 2025-12-01T10:06:48.123456789Z


class Clock:
    def __init__(self, start: int = T0, step: int = 1_000_000_000) -> None:
        self.now, self.step = start - step, step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def entries(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read(cdir: Path, **kw: object) -> tuple[bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    logs.read(cdir, stdout=out, stderr=err, **kw)  # type: ignore[arg-type]
    return out.getvalue(), err.getvalue()


def write(cdir: Path, chunks: list[tuple[str, bytes]], clock: Clock | None = None) -> None:
    w = logs.JsonFileWriter(cdir / "container.log", clock or Clock())
    for stream, data in chunks:
        w.feed(stream, data)
    w.close()


def test_lines_are_cut_at_newlines_in_docker_key_order(tmp_path: Path) -> None:
    write(tmp_path, [("stdout", b"a\nb"), ("stderr", b"e1\n"), ("stdout", b"c\n\n"), ("stdout", b"tail")])
    lines = (tmp_path / "container.log").read_text().splitlines()
    assert lines[0] == '{"log":"a\\n","stream":"stdout","time":"2025-12-01T10:06:48.123456789Z"}'
    assert [(e["stream"], e["log"]) for e in entries(tmp_path / "container.log")] == [
        ("stdout", "a\n"), ("stderr", "e1\n"), ("stdout", "bc\n"), ("stdout", "\n"), ("stdout", "tail")]  # fmt: skip


def test_long_lines_become_16k_partial_entries(tmp_path: Path) -> None:
    data = b"x" * (logs.MAX_ENTRY * 2 + 10) + b"\n"
    write(tmp_path, [("stdout", data[:5000]), ("stdout", data[5000:])])
    got = [e["log"] for e in entries(tmp_path / "container.log")]
    assert [len(g) for g in got] == [logs.MAX_ENTRY, logs.MAX_ENTRY, 11]
    assert "".join(got).encode() == data
    assert read(tmp_path)[0] == data


def test_invalid_utf8_becomes_replacement_characters(tmp_path: Path) -> None:
    write(tmp_path, [("stdout", b"ok \xff\xfe \xc3\xa9\n")])
    assert entries(tmp_path / "container.log")[0]["log"] == "ok \ufffd\ufffd é\n"


@given(st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), st.binary(max_size=300)), max_size=20))
def test_reading_back_gives_each_stream_unchanged(chunks: list[tuple[str, bytes]]) -> None:
    # ASCII-safe content round-trips byte for byte, whatever the chunking
    with tempfile.TemporaryDirectory() as d:
        cdir = Path(d)
        clean = [(s, b.replace(b"\x00", b"").decode("latin-1").encode("ascii", "replace")) for s, b in chunks]
        write(cdir, clean)
        out, err = read(cdir)
        assert out == b"".join(b for s, b in clean if s == "stdout")
        assert err == b"".join(b for s, b in clean if s == "stderr")


@given(st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]),
                         st.lists(st.sampled_from([b"a", b"\n", b"\t", b"\r", b'"', b"\\", b"\xc3\xa9", b"\x00",
                                                   b"\xff", b"x" * 9000]), max_size=12).map(b"".join)),
                max_size=12))  # fmt: skip
def test_bulk_path_writes_what_the_json_encoder_writes(chunks: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        files = []
        for fast in (True, False):
            path = Path(d) / f"log-{fast}"
            w = logs.JsonFileWriter(path, lambda: T0, fast=fast)
            for stream, data in chunks:
                w.feed(stream, data)
            w.close()
            files.append([json.loads(line) for line in path.read_bytes().splitlines()])
        assert files[0] == files[1]


def test_tail_keeps_the_last_entries(tmp_path: Path) -> None:
    write(tmp_path, [("stdout", b"".join(b"line%d\n" % i for i in range(10000)))])
    assert read(tmp_path, tail=2)[0] == b"line9998\nline9999\n"
    assert read(tmp_path, tail=0)[0] == b""
    assert read(tmp_path, tail=1)[0] == b"line9999\n"
    assert read(tmp_path, tail=20000)[0].count(b"\n") == 10000
    assert read(tmp_path, tail=None)[0].count(b"\n") == 10000


def test_tail_counts_entries_of_both_streams(tmp_path: Path) -> None:
    write(tmp_path, [("stdout", b"o1\n"), ("stderr", b"e1\n"), ("stdout", b"o2\n")])
    assert read(tmp_path, tail=2) == (b"o2\n", b"e1\n")


def test_timestamps_are_fixed_nine_digits(tmp_path: Path) -> None:
    write(tmp_path, [("stdout", b"a\n"), ("stdout", b"b\n"), ("stderr", b"c\n")], Clock(step=100_000_000))
    out, err = read(tmp_path, timestamps=True)
    assert out == b"2025-12-01T10:06:48.123456789Z a\n2025-12-01T10:06:48.223456789Z b\n"
    assert err == b"2025-12-01T10:06:48.323456789Z c\n"


def test_since_and_until_filter_by_time(tmp_path: Path) -> None:
    write(tmp_path, [("stdout", b"a\n"), ("stdout", b"b\n"), ("stdout", b"c\n")])  # one second apart from T0
    assert read(tmp_path, since=T0 / 1e9 + 0.5)[0] == b"b\nc\n"
    assert read(tmp_path, since="2025-12-01T10:06:50Z")[0] == b"c\n"
    assert read(tmp_path, until="2025-12-01T10:06:49.5Z")[0] == b"a\nb\n"


def test_missing_log_is_empty_and_damaged_entries_are_skipped(tmp_path: Path) -> None:
    assert read(tmp_path) == (b"", b"")
    write(tmp_path, [("stdout", b"a\n")])
    with (tmp_path / "container.log").open("ab") as f:
        f.write(b'{"log":"torn')
    assert read(tmp_path) == (b"a\n", b"")


def test_follow_without_a_monitor_returns_at_the_end(tmp_path: Path) -> None:
    write(tmp_path, [("stdout", b"a\n")])
    (tmp_path / "monitor.lock").touch()  # not held: nothing will write more
    assert read(tmp_path, follow=True) == (b"a\n", b"")


def test_parse_since_forms() -> None:
    now = 10_000 * 10**9
    assert logs.parse_since("10m", now) == now - 600 * 10**9
    assert logs.parse_since("1h30m", now) == now - 5400 * 10**9
    assert logs.parse_since("1.5s", now) == now - 1_500_000_000
    assert logs.parse_since("1700000000.25") == 1_700_000_000_250_000_000
    assert logs.parse_since("1700000000") == 1_700_000_000 * 10**9
    assert logs.parse_since("2025-12-01T10:06:48.123456789Z") == T0
    assert logs.parse_since("2025-12-01T11:06:48.123456789+01:00") == T0
    assert logs.parse_since(12.5) == 12_500_000_000
    with pytest.raises(InvalidArgument, match="invalid time"):
        logs.parse_since("yesterday")


@given(st.integers(min_value=0, max_value=4_000_000_000 * 10**9))
def test_rfc3339nano_round_trips(ns: int) -> None:
    stamp = rfc3339nano(ns)
    assert parse_nano(stamp) == ns
    assert parse_nano(fixed_nano(stamp)) == ns
    assert len(fixed_nano(stamp)) == len("2025-12-01T10:06:48.123456789Z")
    if "." in stamp:
        assert not stamp.endswith("0Z")  # trimmed like Go's RFC3339Nano


def test_rfc3339nano_trims_like_go() -> None:
    assert rfc3339nano(T0 - 789) == "2025-12-01T10:06:48.123456Z"
    assert rfc3339nano(1_764_583_608 * 10**9) == "2025-12-01T10:06:48Z"
    assert fixed_nano("2025-12-01T10:06:48Z") == "2025-12-01T10:06:48.000000000Z"


def test_writer_appends_whole_entries(tmp_path: Path) -> None:
    write(tmp_path, [("stdout", b"first\n")])
    write(tmp_path, [("stdout", b"second\n")])  # a restart appends to the same file
    assert read(tmp_path)[0] == b"first\nsecond\n"
    assert (tmp_path / "container.log").stat().st_mode & 0o007 == 0  # not world-readable
