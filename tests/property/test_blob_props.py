"""Property tests: ``inspect_blob`` (Rust) and its pure twin agree on digest, diff_id, compression and sizes for
plain, gzip (one or many members) and zstd blobs, and both refuse the same corrupt ones."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import zstandard
from hypothesis import assume, given
from hypothesis import strategies as st

import imgcore
import imgcore.pure
from imgcore.errors import ImgcoreError


def _encode(data: bytes, kind: str, cut: int) -> bytes:
    if kind == "none":
        return data
    if kind == "gzip":
        return gzip.compress(data[:cut]) + gzip.compress(data[cut:])
    return zstandard.ZstdCompressor().compress(data[:cut]) + zstandard.ZstdCompressor().compress(data[cut:])


@given(st.binary(max_size=300_000), st.sampled_from(["none", "gzip", "zstd"]), st.integers(0, 300_000))
def test_rust_and_twin_agree(tmp_path_factory: pytest.TempPathFactory, data: bytes, kind: str, cut: int) -> None:
    assume(kind != "none" or not data.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ\x00")))
    path = tmp_path_factory.mktemp("blob") / "b"
    blob = _encode(data, kind, min(cut, len(data)))
    path.write_bytes(blob)
    rust = imgcore.inspect_blob(path)
    assert rust == imgcore.pure.inspect_blob(path)
    assert rust == (imgcore.sha256(blob), imgcore.sha256(data), kind, len(blob), len(data))


@given(st.binary(min_size=1, max_size=4096), st.integers(1, 200))
def test_a_truncated_stream_is_refused_by_both(tmp_path_factory: pytest.TempPathFactory, data: bytes, cut: int) -> None:
    blob = gzip.compress(data)
    path: Path = tmp_path_factory.mktemp("blob") / "b"
    path.write_bytes(blob[: max(10, len(blob) - cut)])
    with pytest.raises(ImgcoreError):
        imgcore.inspect_blob(path)
    with pytest.raises(ImgcoreError):
        imgcore.pure.inspect_blob(path)


def test_the_size_limit_is_enforced_by_both(tmp_path: Path) -> None:
    path = tmp_path / "b"
    path.write_bytes(gzip.compress(b"\0" * 100_000))
    with pytest.raises(imgcore.errors.LimitExceeded):
        imgcore.inspect_blob(path, max_bytes=50_000)
    with pytest.raises(imgcore.errors.LimitExceeded):
        imgcore.pure.inspect_blob(path, max_bytes=50_000)
