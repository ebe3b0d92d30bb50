"""References parse and normalise as docker's do."""

from __future__ import annotations

import pytest

from imgcore.errors import InvalidReference
from imgcore.reference import parse

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("mysql", "docker.io/library/mysql:latest", "mysql:latest"),
        ("mysql:8.0", "docker.io/library/mysql:8.0", "mysql:8.0"),
        ("library/mysql", "docker.io/library/mysql:latest", "mysql:latest"),
        ("portainer/portainer", "docker.io/portainer/portainer:latest", "portainer/portainer:latest"),
        ("index.docker.io/foo/bar:1", "docker.io/foo/bar:1", "foo/bar:1"),
        ("host:5000/ns/repo:tag", "host:5000/ns/repo:tag", "host:5000/ns/repo:tag"),
        ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
        ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c:latest", "127.0.0.1:5000/a/b/c:latest"),
        ("[::1]:5000/a", "[::1]:5000/a:latest", "[::1]:5000/a:latest"),
        ("new_tomcat:1.0", "docker.io/library/new_tomcat:1.0", "new_tomcat:1.0"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
        (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"busybox:1@{D}"),
        ("a-b__c/d.e_f", "docker.io/a-b__c/d.e_f:latest", "a-b__c/d.e_f:latest"),
        ("library/m/ysql:8.0", "docker.io/library/m/ysql:8.0", "library/m/ysql:8.0"),  # found by tests/fuzz
    ],
)
def test_normalisation(text, full, familiar):
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar == familiar
    assert parse(full) == ref  # normalising is idempotent


def test_parts():
    ref = parse("host:5000/ns/repo:tag")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("host:5000", "ns/repo", "tag", None)
    assert ref.repository == "host:5000/ns/repo"
    assert parse("x", default_tag=False).tag is None
    assert str(parse("x").with_tag("v2")) == "docker.io/library/x:v2"
    assert parse(f"x@{D}").tag is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("UPPER", "must be lowercase"),
        ("Host/UPPER", "must be lowercase"),
        ("a:b:c", "invalid component"),
        ("a@sha256:zz", "invalid digest"),
        ("a@md5:" + "a" * 32, "invalid digest"),
        ("ab" * 32, "64-character hex"),
        ("a/:t", "invalid component"),
        ("a:-x", "invalid tag"),
        ("a:" + "t" * 129, "invalid tag"),
        ("-a", "invalid component"),
        ("a//b", "invalid component"),
        ("a/b/", "invalid component"),
        ("bad_host:x/y", "invalid registry host"),
        ("x" * 300, "longer than 255"),
        (":tag", "empty repository"),
        ("café", "only ASCII"),
        ("x:tägg", "only ASCII"),
        ("x@sha256:\ud800", "only ASCII"),
        ("a/" * 600, "longer than 1024 characters"),
    ],
)
def test_invalid_references_say_why(text, why):
    with pytest.raises(InvalidReference, match=why) as info:
        parse(text)
    assert isinstance(info.value, ValueError)


def test_non_strings_are_invalid_references():
    for value in (None, 3, b"mysql", ["mysql"]):
        with pytest.raises(InvalidReference, match="expected a string"):
            parse(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidReference, match="invalid tag"):
        parse("x").with_tag(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidReference, match="invalid digest"):
        parse("x").with_digest("sha256:\ud800")
