"""The bounded JSON loader: sizes, depth, numbers, encodings and duplicate keys give typed errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgcore import _json
from imgcore.errors import InvalidArchive, InvalidManifest, StoreError


def test_plain_documents_parse():
    assert _json.load_object(b'{"a": [1, 2.5, "x", null, true]}', "doc") == {"a": [1, 2.5, "x", None, True]}
    assert _json.load_array(b"[]", "doc") == []
    assert _json.load_json('{"é": "ü"}', "doc") == {"é": "ü"}
    assert _json.load_object(b'{"a": "\\ud83d\\ude00"}', "doc") == {"a": "\U0001f600"}  # a surrogate pair is fine


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"a": 1} x', "not valid JSON"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'{"a": -Infinity}', "-Infinity is not valid JSON"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": ' + b"9" * 5000 + b"}", "integer with 5000 digits"),
        (b'{"a": -' + b"9" * 101 + b"}", "integer with 101 digits"),
        (b'{"a": 1, "a": 2}', 'duplicate key "a"'),
        (b'{"a": {"b": 1, "b": 1}}', 'duplicate key "b"'),
        (b'\xef\xbb\xbf{"a": 1}', "byte order mark"),
        (b'{"a": "\xff"}', "not valid UTF-8 at byte 7"),
        ('{"a": 1}'.encode("utf-16"), "not valid UTF-8"),
        (b'{"a": "\\ud800"}', "unpaired UTF-16 surrogate"),
        (b'{"a": "x\\udc00"}', "unpaired UTF-16 surrogate"),
        (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),
        (b"[" * 100_000, "nested deeper than 64 levels"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "nested deeper than 64 levels"),
    ],
)
def test_hostile_documents_are_typed_errors(raw, why):
    with pytest.raises(InvalidManifest, match=why) as info:
        _json.load_json(raw, "manifest sha256:x")
    assert str(info.value).startswith("manifest sha256:x: ")
    assert str(info.value).count("manifest sha256:x") == 1


def test_depth_limit_is_exact_and_ignores_brackets_in_strings():
    assert _json.load_json(b"[" * 64 + b"]" * 64, "doc") is not None
    assert _json.load_json(b'["' + b"[" * 1000 + b'"]', "doc") == ["[" * 1000]
    assert _json.load_json(b'["\\"[[[[", "\\\\"]', "doc") == ['"[[[[', "\\"]
    wide = b"[" + b",".join([b"[[1]]"] * 10_000) + b"]"
    assert len(_json.load_json(wide, "doc")) == 10_000
    with pytest.raises(InvalidManifest, match="deeper"):
        _json.load_json(b"[" + b"[]," * 100 + b"[" * 64 + b"]" * 65, "doc")


def test_size_limit_and_error_class():
    with pytest.raises(InvalidArchive, match="larger than the limit of 10 bytes"):
        _json.load_json(b'{"a": "0123456789"}', "manifest.json", limit=10, error=InvalidArchive)
    assert _json.MANIFEST_LIMIT == 4 * 1024 * 1024
    assert _json.ARCHIVE_LIMIT == 20 * 1024 * 1024
    with pytest.raises(StoreError, match="expected a JSON object at the top level, got an array"):
        _json.load_object(b"[1]", "index.json", error=StoreError)
    with pytest.raises(InvalidManifest, match="expected a JSON array at the top level, got a string"):
        _json.load_array(b'"x"', "manifest.json")
    with pytest.raises(InvalidManifest, match="expected bytes, got int"):
        _json.load_json(3, "doc")  # type: ignore[arg-type]


def test_read_json_file_reads_at_most_the_limit(tmp_path):
    p = tmp_path / "big.json"
    p.write_bytes(b'{"a": "' + b"x" * 100 + b'"}')
    with pytest.raises(InvalidArchive, match=r"big\.json: file is larger than the limit of 50 bytes"):
        _json.read_json_file(p, limit=50, error=InvalidArchive)
    assert _json.read_json_file(p, "doc")["a"] == "x" * 100
    with pytest.raises(FileNotFoundError):
        _json.read_json_file(tmp_path / "missing.json")


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _chain(shape: list[tuple[bool, str]]) -> object:
    value: object = "x]}"
    for as_list, key in shape:
        value = [value, "[{"] if as_list else {key: value, "[": "{"}
    return value


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.text(max_size=3)), min_size=55, max_size=75))
def test_depth_limit_matches_the_real_depth(shape):
    doc = _chain(shape)
    raw = json.dumps(doc, ensure_ascii=False).encode()
    if _depth(doc) > _json.MAX_DEPTH:
        with pytest.raises(InvalidManifest, match="nested deeper"):
            _json.load_json(raw, "doc")
    else:
        assert _json.load_json(raw, "doc") == doc
