"""A monolithic blob upload reports progress while it streams, not only when the PUT is done."""

from __future__ import annotations

import io

from imgcore.registry.client import _Counting


def test_counting_reader_reports_as_it_is_read_and_seeks_for_a_retry() -> None:
    seen: list[int] = []
    src = io.BytesIO(b"x" * 10_000)
    r = _Counting(src, seen.append)
    assert r.read(4096) == b"x" * 4096
    assert r.read(4096) == b"x" * 4096
    assert seen == [4096, 8192]
    r.seek(0)  # the transport rewinds a body it must send again
    assert r.read() == b"x" * 10_000
    assert seen[-1] == 10_000
