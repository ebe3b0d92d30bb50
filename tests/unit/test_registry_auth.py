"""Credentials files, WWW-Authenticate parsing and redaction."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcore.errors import AuthError
from imgcore.registry.auth import (
    Credentials,
    load_credentials,
    normalize_registry,
    parse_www_authenticate,
    redact,
    remove_credentials,
    save_credentials,
)


@pytest.fixture
def config_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    mine, docker = tmp_path / "imgcore", tmp_path / "docker"
    monkeypatch.setenv("IMGCORE_CONFIG", str(mine))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    return mine, docker


def test_parse_bearer_challenge() -> None:
    [ch] = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull,push",error="insufficient_scope"'
    )
    assert ch.scheme == "bearer"
    assert ch.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull,push",
        "error": "insufficient_scope",
    }


def test_parse_basic_and_multiple_and_escapes() -> None:
    chs = parse_www_authenticate('Basic realm="a \\"quoted\\" realm", Bearer realm=tok,service=x')
    assert [c.scheme for c in chs] == ["basic", "bearer"]
    assert chs[0].params["realm"] == 'a "quoted" realm'
    assert chs[1].params == {"realm": "tok", "service": "x"}
    assert parse_www_authenticate("") == []


@given(st.text(max_size=200))
def test_parse_never_crashes(header: str) -> None:
    for ch in parse_www_authenticate(header):
        assert ch.scheme == ch.scheme.lower()


def test_redact() -> None:
    assert redact("GET https://bob:hunter2@reg.io/v2/") == "GET https://<redacted>@reg.io/v2/"
    assert "hunter2" not in redact("https://x/token?account=bob&password=hunter2&scope=a")
    assert "abc.def.ghi" not in redact("Authorization: Bearer abc.def.ghijklmnop")
    assert "dXNlcjpwYXNz" not in redact("Basic dXNlcjpwYXNz")
    assert redact("manifest unknown") == "manifest unknown"


def test_credentials_repr_hides_secrets() -> None:
    c = Credentials("alice", "hunter2")
    assert "alice" not in repr(c)
    assert "hunter2" not in repr(c)
    assert c.basic_header() == "Basic " + base64.b64encode(b"alice:hunter2").decode()


def test_normalize_registry() -> None:
    assert normalize_registry("https://index.docker.io/v1/") == "docker.io"
    assert normalize_registry("registry-1.docker.io") == "docker.io"
    assert normalize_registry("http://LocalHost:5000/") == "localhost:5000"


def test_save_load_remove(config_dirs: tuple[Path, Path]) -> None:
    mine, _ = config_dirs
    assert load_credentials("reg.example:5000") is None
    path = save_credentials("reg.example:5000", Credentials("alice", "pw:with:colons"))
    assert path == mine / "config.json"
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert base64.b64decode(data["auths"]["reg.example:5000"]["auth"]) == b"alice:pw:with:colons"
    creds = load_credentials("reg.example:5000")
    assert creds is not None
    assert (creds.username, creds.password) == ("alice", "pw:with:colons")
    save_credentials("docker.io", Credentials("bob", "x"))
    assert "https://index.docker.io/v1/" in json.loads(path.read_text())["auths"]
    assert remove_credentials("reg.example:5000") is True
    assert remove_credentials("reg.example:5000") is False
    assert load_credentials("reg.example:5000") is None
    assert load_credentials("index.docker.io") is not None


def test_docker_config_fallback(config_dirs: tuple[Path, Path]) -> None:
    _, docker = config_dirs
    docker.mkdir()
    auth = base64.b64encode(b"carol:pw").decode()
    (docker / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}, "other.io": {"auth": ""}}})
    )
    creds = load_credentials("docker.io")
    assert creds is not None
    assert creds.username == "carol"
    assert load_credentials("other.io") is None
    save_credentials("docker.io", Credentials("dave", "pw2"))  # imgcore's own config wins
    creds = load_credentials("docker.io")
    assert creds is not None
    assert creds.username == "dave"


def test_broken_config_is_a_typed_error(config_dirs: tuple[Path, Path]) -> None:
    mine, _ = config_dirs
    mine.mkdir()
    (mine / "config.json").write_text("{not json")
    with pytest.raises(AuthError, match="not valid JSON"):
        load_credentials("x.io")
    (mine / "config.json").write_text(json.dumps({"auths": {"x.io": {"auth": base64.b64encode(b"nocolon").decode()}}}))
    with pytest.raises(AuthError, match="user:password"):
        load_credentials("x.io")
