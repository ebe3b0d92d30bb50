"""Names and headers the registry-side commands parse: ``Link`` pages, registries, repositories, platforms."""

from __future__ import annotations

import pytest

from imgcore.errors import InvalidArgument, InvalidReference
from imgcore.models import Platform
from imgcore.registry.client import _next_link
from imgcore.transfer.remote import parse_platform, parse_registry, parse_repository


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ('</v2/_catalog?last=x%2Fapp&n=1>; rel="next"', "/v2/_catalog?last=x%2Fapp&n=1"),
        ("</v2/a/tags/list?n=2&last=b>; rel=next", "/v2/a/tags/list?n=2&last=b"),
        ('<https://r.example/v2/p?x=1>; rel="prev", </v2/p?x=3>; rel="next"', "/v2/p?x=3"),
        ('</v2/p?x=1>; title="t"; rel="next"', "/v2/p?x=1"),
        ('</v2/p?x=1>; rel="prev"', None),
        ("", None),
        ("garbage; rel=next", None),
    ],
)
def test_next_link(header: str, target: str | None) -> None:
    assert _next_link(header) == target


def test_parse_registry() -> None:
    assert parse_registry("127.0.0.1:5000") == "127.0.0.1:5000"
    assert parse_registry("https://ghcr.io/") == "ghcr.io"
    assert parse_registry("index.docker.io") == "docker.io"
    for bad in ("", "host/path", "user@host"):
        with pytest.raises(InvalidArgument):
            parse_registry(bad)


def test_parse_repository() -> None:
    r = parse_repository("localhost:5000/ns/app")
    assert (r.domain, r.path, r.tag, r.digest) == ("localhost:5000", "ns/app", None, None)
    assert parse_repository("alpine").path == "library/alpine"
    with pytest.raises(InvalidReference, match="without a tag"):
        parse_repository("localhost:5000/ns/app:v1")
    with pytest.raises(InvalidReference, match="without a tag"):
        parse_repository("localhost:5000/ns/app@sha256:" + "a" * 64)


def test_parse_platform() -> None:
    assert parse_platform("linux/arm64/v8") == Platform("linux", "arm64", "v8")
    assert parse_platform(None) == Platform.host()
    with pytest.raises(InvalidArgument):
        parse_platform("linux")
