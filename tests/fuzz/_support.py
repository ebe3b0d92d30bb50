"""Shared pieces of the fuzz targets: example budgets, hostile JSON values and structure-aware mutations.

A mutation takes a valid document (nested dicts and lists) and changes one spot: a field's value replaced by a
hostile one (wrong type, huge number, deep nesting, a list where a string belongs), a field removed, or an
unknown field added. The parsers must answer every mutant with a model or a typed error, never a traceback.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from imgcore.errors import ImgcoreError, InvalidArchive

LONG = os.environ.get("IMGCORE_LONG", "").lower() in ("1", "true", "yes")
# Typed errors a parser may raise on bad input; anything else (TypeError, KeyError, RecursionError, ...) is a bug.
TYPED = (ImgcoreError,)


def budget(default: int) -> settings:
    """Hypothesis settings for one fuzz target: ``default`` examples, 25 times as many under IMGCORE_LONG."""
    return settings(
        max_examples=default * 25 if LONG else default,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` levels of alternating arrays and objects around ``leaf``."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


DIGEST = "sha256:" + "ab" * 32
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", DIGEST, "sha256:", "sha256:" + "AB" * 32, "12", "-1", "layers", "application/x"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
hostile = st.one_of(
    json_values,
    json_scalars,
    st.builds(nested, st.integers(min_value=60, max_value=200)),
    st.sampled_from([2**63, 2**64, -1, -(2**63), 10**200, 1.5, 1e308, True, False, [], {}, [[]], [DIGEST]]),
    st.lists(st.text(max_size=5), min_size=1, max_size=3),
)

# Raw bytes that are not valid JSON documents, or are hostile at the text level.
raw_hostile = st.sampled_from(
    [
        b"",
        b"[" * 100_000,
        b'{"a":' * 5000,
        b'{"size": ' + b"9" * 5000 + b"}",
        b'{"size": 1e999}',
        b'{"size": NaN}',
        b'{"a": 1, "a": 2}',
        b"\xef\xbb\xbf{}",
        b'{"a": "\\ud800"}',
        b'{"a": "\xff\xfe"}',
        "{}".encode("utf-16"),
        b"null",
        b"[]",
        b'"x"',
    ]
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path inside ``doc`` (its containers and leaves)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(paths(v, (*prefix, i)))
    return out


def _set(doc: Any, path: tuple[Any, ...], fn: Callable[[Any, Any], None]) -> Any:
    if not path:
        return doc
    target = doc
    for key in path[:-1]:
        target = target[key]
    fn(target, path[-1])
    return doc


@st.composite
def mutants(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> bytes:
    """One valid document from ``documents`` with one to three spots mutated, serialised to bytes."""
    doc = copy.deepcopy(draw(documents))  # strategies may share objects (st.just({})): never mutate them
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        inner = paths(doc)[1:]
        # The top level itself only now and then: the loader's top-level check would answer most mutants.
        at_top = draw(st.sampled_from([False] * 9 + [True]))  # hypothesis favours the first element
        path = draw(st.permutations(inner))[0] if inner and not at_top else ()  # spread over every field
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        if not path:
            if action == "replace":
                doc = copy.deepcopy(draw(hostile))
            continue
        if action == "replace":
            value = copy.deepcopy(draw(hostile))
            _set(doc, path, lambda c, k, v=value: c.__setitem__(k, v))
        elif action == "delete":
            _set(doc, path, lambda c, k: c.__delitem__(k))
        else:
            key, value = draw(st.text(max_size=10)), copy.deepcopy(draw(hostile))
            parent = path[:-1]
            _set(doc, (*parent, path[-1]), lambda c, k, key=key, v=value: _add(c, k, key, v))
    return json.dumps(doc).encode()


def _add(container: Any, at: Any, key: str, value: Any) -> None:
    target = container[at]
    if isinstance(target, dict):
        target[key] = value
    elif isinstance(target, list):
        target.append(value)


def check(parse: Callable[[bytes], Any], raw: bytes) -> Any:
    """``parse(raw)``: returns its model, or None when it raised a typed imgcore error (anything else fails)."""
    try:
        return parse(raw)
    except TYPED as e:
        error = e
    assert str(error), "a typed error must say what is wrong"
    return None


def archive_error(parse: Callable[[bytes], Any], raw: bytes, prefix: str) -> Any:
    """``parse(raw)``'s result, or None when it raised InvalidArchive whose message starts with ``prefix``."""
    try:
        return parse(raw)
    except InvalidArchive as e:
        error = e
    assert str(error).startswith(prefix)
    return None
