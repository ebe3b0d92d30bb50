"""The Digest value type, the hashers and their error behaviour, Rust and pure alike."""

from __future__ import annotations

import pickle
import threading

import pytest

import imgcore
import imgcore.pure
from imgcore.errors import ImgcoreError, InvalidDigest

IMPLS = pytest.mark.parametrize("impl", [imgcore, imgcore.pure], ids=["rust", "pure"])
EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@IMPLS
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "missing ':'"),
        ("sha256", "missing ':'"),
        (":" + "a" * 64, "empty algorithm"),
        ("md5:" + "a" * 32, "unsupported algorithm"),
        ("SHA256:" + "a" * 64, "unsupported algorithm"),
        ("sha256:" + "A" * 64, "lowercase"),
        ("sha256:" + "a" * 63, "64 hex characters, got 63"),
        ("sha256:" + "a" * 65, "64 hex characters, got 65"),
        ("sha512:" + "a" * 64, "128 hex characters"),
        ("sha256:" + "g" * 64, "lowercase"),
        ("sha256:" + "é" * 64, "lowercase"),
    ],
)
def test_malformed_digest_is_a_value_error(impl, value, reason):
    with pytest.raises(InvalidDigest, match=reason) as info:
        impl.Digest(value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ImgcoreError)


@IMPLS
def test_digest_parts_equality_and_pickle(impl):
    d = impl.Digest(EMPTY)
    assert (d.algorithm, d.hex, d.short) == ("sha256", EMPTY[7:], EMPTY[7:19])
    assert str(d) == EMPTY
    assert d == EMPTY
    assert d == impl.Digest(EMPTY)
    assert d != impl.Digest("sha256:" + "0" * 64)
    assert hash(d) == hash(impl.Digest(EMPTY))
    assert pickle.loads(pickle.dumps(d)) == d
    assert impl.Digest("sha512:" + "ab" * 64).algorithm == "sha512"


@IMPLS
def test_hasher_accepts_buffers_and_counts(impl):
    h = impl.Hasher()
    h.update(b"ab")
    h.update(bytearray(b"c"))
    h.update(memoryview(b"xxd")[2:])
    assert h.size == 4
    assert h.digest() == impl.sha256(b"abcd")
    assert h.algorithm == "sha256"
    assert h.digest() == h.digest()  # reading does not consume


@IMPLS
def test_unknown_algorithm(impl):
    with pytest.raises(InvalidDigest):
        impl.Hasher("md5")
    with pytest.raises(InvalidDigest):
        impl.hash_files([], "md5")


@IMPLS
def test_missing_file_is_an_oserror_with_the_path(impl, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        impl.sha256_file(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(FileNotFoundError):
        impl.sha256_files([missing])
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        impl.sha256_file(tmp_path / "d")


def test_hash_files_reports_each_file_without_raising(tmp_path):
    good = tmp_path / "good"
    good.write_bytes(b"x" * 100)
    paths = [good, tmp_path / "missing", good]
    rust = imgcore._core.hash_files(paths)
    pure = imgcore.pure.hash_files(paths)
    assert rust == pure
    assert rust[0] == (imgcore.sha256(b"x" * 100), 100, None)
    assert rust[1][0] is None
    assert "missing" in rust[1][2]


def test_gil_is_released_while_hashing(tmp_path):
    """A Python thread keeps running while Rust hashes a large buffer."""
    data = bytes(64 << 20)
    ticks = 0
    stop = threading.Event()

    def spin():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        before = ticks
        for _ in range(4):
            imgcore.sha256(data)
        during = ticks - before
    finally:
        stop.set()
        t.join()
    # With the GIL held for the whole hash, the spinning thread would get (almost) no ticks in between.
    assert during > 1000


def test_type_errors_are_python_type_errors():
    with pytest.raises(TypeError):
        imgcore.sha256("text is not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        imgcore.Digest(42)  # type: ignore[arg-type]


def test_a_rust_panic_is_an_internal_error_not_an_abort():
    from imgcore._core import _panic_for_tests

    with pytest.raises(imgcore.errors.InternalError, match=r"a bug in imgcore.*boom at the boundary"):
        _panic_for_tests("boom at the boundary")
    assert imgcore.sha256(b"") == EMPTY  # the interpreter and the module still work
