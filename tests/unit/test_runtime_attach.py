"""The attach protocol's framing and the client's detach-key handling (docker's syntax and behaviour)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcore.errors import InvalidArgument
from imgcore.runtime import attach
from imgcore.runtime._state import MonitorError


def test_detach_keys_syntax() -> None:
    assert attach.parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert attach.parse_detach_keys("") == b"\x10\x11"  # empty = docker's default
    assert attach.parse_detach_keys("a,ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_") == b"a\x00\x1b\x1c\x1d\x1e\x1f"
    assert attach.parse_detach_keys("CTRL-A") == b"\x01"
    for bad in ("ctrl-1", "ctrl-pq", "ab", "ctrl-"):
        with pytest.raises(InvalidArgument, match="invalid detach keys"):
            attach.parse_detach_keys(bad)


def test_escape_detaches_on_the_whole_sequence_only() -> None:
    e = attach._Escape(b"\x10\x11")
    assert e.scan(b"ls\r") == (b"ls\r", False)
    assert e.scan(b"x\x10") == (b"x", False)  # the ctrl-p is held back
    assert e.scan(b"y") == (b"\x10y", False)  # not followed by ctrl-q: sent on
    assert e.scan(b"\x10\x10") == (b"\x10", False)  # a repeated first key: one sent, one held
    assert e.scan(b"\x11rest") == (b"", True)  # completed across reads
    assert attach._Escape(b"").scan(b"\x10\x11") == (b"\x10\x11", False)


@given(st.binary(max_size=200))
def test_escape_forwards_everything_without_the_sequence(data: bytes) -> None:
    e = attach._Escape(b"\x10\x11")
    out, detached = e.scan(data)
    if b"\x10\x11" in data:
        assert detached
        assert out == data[: data.index(b"\x10\x11")]
    else:
        assert not detached
        assert out + b"\x10" * e.held == data


@given(st.lists(st.tuples(st.sampled_from([b"0", b"1", b"2", b"X", b"A"]), st.binary(max_size=3000)), max_size=10),
       st.integers(min_value=1, max_value=997))  # fmt: skip
def test_frames_survive_any_chunking(frames: list[tuple[bytes, bytes]], cut: int) -> None:
    stream = b"".join(attach.encode(k, p) for k, p in frames)
    reader = attach.FrameReader()
    got = []
    for i in range(0, len(stream), cut):
        got += reader.feed(stream[i : i + cut])
    assert got == frames


def test_oversized_frame_is_refused() -> None:
    header = b"1" + (attach.MAX_FRAME + 1).to_bytes(4, "big")
    with pytest.raises(MonitorError, match="exceeds"):
        attach.FrameReader().feed(header)
