"""Fuzz reference parsing: any input gives a normalised Reference or InvalidReference/InvalidDigest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imgcore.errors import InvalidDigest, InvalidReference
from imgcore.reference import Reference, parse

from ._support import budget

SEEDS = [
    "mysql",
    "library/mysql:8.0",
    "host:5000/ns/repo:tag",
    "[::1]:5000/a",
    "localhost/x@sha256:" + "ab" * 32,
    "index.docker.io/foo/bar:1",
    "a-b__c/d.e_f",
]
NASTY = ["", ":", "@", "/", "//", "..", "\x00", "\ud800", "é", "İ", "K", "\n", " ", "[", "]", "-", "_", "__", "A"]
NASTY += ["ab" * 32, "sha256:", "@sha256:" + "ab" * 32, "localhost", ":5000"]


@st.composite
def mutated_references(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(NASTY) | st.text(max_size=3))
        action = draw(st.sampled_from(["insert", "replace", "delete", "repeat"]))
        if action == "insert":
            text = text[:pos] + piece + text[pos:]
        elif action == "replace":
            text = text[:pos] + piece + text[pos + len(piece) :]
        elif action == "delete":
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos] + text[pos:] * draw(st.integers(2, 40))
    if draw(st.sampled_from([False] * 9 + [True])):  # past the length caps (hypothesis favours the first)
        text = text * 100
    return text


def _check(text: object) -> Reference | None:
    try:
        ref = parse(text)  # type: ignore[arg-type]
    except (InvalidReference, InvalidDigest) as e:
        error = e
    else:
        return _valid(ref)
    assert str(error)
    return None


def _valid(ref: Reference) -> Reference:
    assert isinstance(ref, Reference)
    assert parse(str(ref)) == ref  # normalising is idempotent
    assert parse(ref.familiar) == ref
    assert len(ref.repository) <= 255
    return ref


@budget(200)
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    _check(text)


@budget(150)
@given(mutated_references())
def test_mutated_references(text):
    _check(text)


@budget(50)
@given(st.one_of(st.none(), st.integers(), st.binary(max_size=10), st.lists(st.text(max_size=3), max_size=2)))
def test_non_strings(value):
    assert _check(value) is None


@budget(100)
@given(st.text(max_size=200))
def test_with_tag_and_digest(text):
    ref = parse("x")
    for fn in (ref.with_tag, ref.with_digest):
        try:
            out = fn(text)
        except (InvalidReference, InvalidDigest):
            continue
        assert parse(str(out), default_tag=False) == out
