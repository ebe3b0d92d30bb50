"""Fuzz the ``WWW-Authenticate`` parser: any text gives challenges or a typed error, never anything else.

Bounded by default (a few hundred examples per property, well under a second each); ``IMGCORE_LONG=1`` runs
20,000 examples per property.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imgcore.errors import AuthError
from imgcore.registry.auth import MAX_CHALLENGE_HEADER, Challenge, parse_www_authenticate

_LONG = os.environ.get("IMGCORE_LONG") == "1"
_FUZZ = settings(max_examples=20_000 if _LONG else 300, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
token = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=12)
# Header-ish text: the characters a challenge is made of, weighted so that structure appears often.
_PIECES = [*'="\\, \t', *"aBr=lm", "realm", "Bearer", "Basic", "scope", "token68=="]
structural = st.lists(st.sampled_from(_PIECES), max_size=80).map("".join)
anything = st.text(max_size=300)


def _check(result: list[Challenge]) -> None:
    assert isinstance(result, list)
    for ch in result:
        assert isinstance(ch, Challenge)
        assert _TOKEN_RE.fullmatch(ch.scheme), ch.scheme
        for k, v in ch.params.items():
            assert _TOKEN_RE.fullmatch(k), k
            assert isinstance(v, str)


@_FUZZ
@given(st.one_of(anything, structural, st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
@example('Bearer realm="unterminated')
@example('Bearer realm="a\\')
@example("Basic realm=, , ,=,")
@example("=====")
@example('Negotiate abc==, Basic realm="x"')
def test_any_header_parses_or_raises_typed(header: str) -> None:
    try:
        result = parse_www_authenticate(header)
    except AuthError:
        return
    _check(result)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


challenge = st.tuples(token, st.dictionaries(token, st.text(st.characters(blacklist_categories=("Cs",),
                                                                          blacklist_characters="\r\n"), max_size=20),
                                             max_size=4))  # fmt: skip


@_FUZZ
@given(st.lists(challenge, min_size=1, max_size=4), st.sampled_from([", ", ",", " , "]))
def test_well_formed_challenges_round_trip(challenges: list[tuple[str, dict[str, str]]], sep: str) -> None:
    parts = []
    for scheme, params in challenges:
        text = ", ".join(f"{k}={_quote(v)}" for k, v in params.items())
        parts.append(f"{scheme} {text}" if text else scheme)
    got = parse_www_authenticate(sep.join(parts))
    want = []
    for scheme, params in challenges:
        lowered: dict[str, str] = {}
        for k, v in params.items():
            lowered.setdefault(k.lower(), v)
        want.append(Challenge(scheme.lower(), lowered))
    assert got == want


def test_pathological_inputs_are_fast_and_bounded() -> None:
    """No regex blow-up on long runs of the characters the grammar cares about; over 64 KiB is refused."""
    for unit in ('"', "\\", "a=", 'a="', "a ", ",", 'Bearer realm="\\', "a=b,", "x" * 7 + "="):
        header = unit * (MAX_CHALLENGE_HEADER // len(unit))
        t0 = time.perf_counter()
        _check(parse_www_authenticate(header))
        assert time.perf_counter() - t0 < 1.0, unit
    with pytest.raises(AuthError, match=str(MAX_CHALLENGE_HEADER)):
        parse_www_authenticate("a" * (MAX_CHALLENGE_HEADER + 1))
