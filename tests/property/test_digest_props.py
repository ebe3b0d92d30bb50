"""Property tests: the Rust hashers agree with the pure twin (hashlib) whatever the data and its chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import imgcore
import imgcore.pure

# Sizes around the Rust buffers (64 KiB GIL threshold, 256 KiB file buffer) and the SHA block size.
sizes = st.one_of(
    st.integers(0, 200),
    st.sampled_from([63, 64, 65, 65535, 65536, 65537, 262143, 262144, 262145, 1 << 20]),
)


@st.composite
def data_and_cuts(draw):
    n = draw(sizes)
    seed = draw(st.binary(min_size=1, max_size=64))
    data = (seed * (n // len(seed) + 1))[:n]
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=8)))
    return data, cuts


@given(st.binary(max_size=4096))
def test_sha256_matches_hashlib(data):
    assert imgcore.sha256(data) == imgcore.pure.sha256(data)


@given(data_and_cuts(), st.sampled_from(["sha256", "sha512"]))
def test_chunking_never_changes_the_digest(dc, alg):
    data, cuts = dc
    rust, pure = imgcore.Hasher(alg), imgcore.pure.Hasher(alg)
    prev = 0
    for cut in [*cuts, len(data)]:
        chunk = data[prev:cut]
        rust.update(chunk)
        pure.update(bytearray(chunk))
        prev = max(prev, cut)
    assert rust.digest() == pure.digest()
    assert rust.size == pure.size == len(data)
    whole = imgcore.Hasher(alg)
    whole.update(data)
    assert whole.digest() == rust.digest()


@given(st.lists(data_and_cuts(), min_size=1, max_size=6))
def test_files_match(tmp_path_factory, items):
    d = tmp_path_factory.mktemp("files")
    paths = []
    for i, (data, _) in enumerate(items):
        p = d / f"f{i}"
        p.write_bytes(data)
        paths.append(p)
    assert imgcore.sha256_files(paths) == imgcore.pure.sha256_files(paths)
    assert [imgcore.sha256_file(p) for p in paths] == imgcore.pure.sha256_files(paths)


@given(st.text(max_size=140))
def test_digest_parsing_agrees(text):
    def outcome(impl):
        try:
            return str(impl.Digest(text))
        except imgcore.errors.InvalidDigest:
            return "invalid"

    assert outcome(imgcore) == outcome(imgcore.pure)
