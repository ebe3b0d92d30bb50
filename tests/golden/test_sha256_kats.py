"""Known-answer tests for the Rust hashers and their pure twins, from tests/vectors/sha256/kats.txt."""

from __future__ import annotations

import pytest

import imgcore
import imgcore.pure
from tests.conftest import load_vectors


def _message(spec: str) -> bytes:
    kind, _, rest = spec.partition(":")
    if kind == "hex":
        return bytes.fromhex(rest)
    count, _, char = rest.partition(":")
    return char.encode() * int(count)


VECTORS = load_vectors("sha256/kats.txt")


@pytest.mark.parametrize(("alg", "spec", "expected"), VECTORS, ids=[f"{a}-{s[:20]}" for a, s, _ in VECTORS])
@pytest.mark.parametrize("impl", [imgcore, imgcore.pure], ids=["rust", "pure"])
def test_known_answers(impl, alg, spec, expected):
    data = _message(spec)
    h = impl.Hasher(alg)
    h.update(data)
    assert h.hexdigest() == expected
    assert h.digest() == f"{alg}:{expected}"
    if alg == "sha256":
        assert impl.sha256(data) == f"sha256:{expected}"


@pytest.mark.parametrize("impl", [imgcore, imgcore.pure], ids=["rust", "pure"])
def test_file_known_answer(impl, tmp_path):
    p = tmp_path / "million-a"
    p.write_bytes(b"a" * 1_000_000)
    expected = "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    assert impl.sha256_file(p) == expected
    assert impl.sha256_files([p, str(p)]) == [expected, expected]
