"""RegistryClient against small real HTTP servers: retries, error mapping, bearer tokens, redirects, insecure hosts."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imgcore import sha256
from imgcore.errors import AuthError, DigestMismatch, NotFound, RateLimited, RegistryError
from imgcore.registry import Credentials, RegistryClient, error_from_response, is_insecure_host

Route = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


class Server:
    def __init__(self, route: Route) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def handle_any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                outer.requests.append((self.command, self.path, dict(self.headers.items())))
                status, headers, body = route(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = handle_any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Route], Server]]:
    servers: list[Server] = []

    def start(route: Route) -> Server:
        s = Server(route)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def _client(host: str, **kw: object) -> RegistryClient:
    return RegistryClient(host, credentials=kw.pop("credentials", None), scheme="http", backoff=0.001, **kw)  # type: ignore[arg-type]


def test_error_mapping_quotes_the_registry() -> None:
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]})
    e = error_from_response("get manifest r/x:1", 404, body.encode())
    assert isinstance(e, NotFound)
    assert e.code == "MANIFEST_UNKNOWN"
    assert e.status == 404
    assert str(e) == "get manifest r/x:1: HTTP 404: registry said: manifest unknown"
    e = error_from_response("w", 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
    assert isinstance(e, AuthError)
    e = error_from_response("w", 429, b"slow down", {"Retry-After": "7"})
    assert isinstance(e, RateLimited)
    assert e.retryable
    assert e.retry_after == 7.0  # type: ignore[attr-defined]
    e = error_from_response("w", 502, b"<html>bad gateway</html>")
    assert type(e) is RegistryError
    assert e.retryable
    assert str(e) == "w: HTTP 502"
    e = error_from_response(
        "w", 400, b'{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match"}]}'
    )
    assert "provided digest did not match (DIGEST_INVALID)" in str(e)
    assert not e.retryable


def test_insecure_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_insecure_host("localhost:5000")
    assert is_insecure_host("127.3.4.5:80")
    assert is_insecure_host("[::1]:5000")
    assert not is_insecure_host("registry.example.com")
    assert not is_insecure_host("10.0.0.1:5000")
    assert is_insecure_host("10.0.0.1:5000", ["10.0.0.1:5000"])
    monkeypatch.setenv("IMGCORE_INSECURE_REGISTRIES", "my.reg,other:1")
    assert is_insecure_host("my.reg:443")
    assert is_insecure_host("other:1")


def test_retries_on_5xx_then_succeeds(serve: Callable[[Route], Server]) -> None:
    count = {"n": 0}

    def route(h: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        count["n"] += 1
        if count["n"] <= 2:
            return 503, {}, b"busy"
        return 200, {}, b"{}"

    s = serve(route)
    _client(s.host).ping()
    assert count["n"] == 3


def test_gives_up_after_retries_with_registry_message(serve: Callable[[Route], Server]) -> None:
    body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}'
    s = serve(lambda h: (429, {"Retry-After": "0"}, body))
    with pytest.raises(RateLimited, match="pull rate limit"):
        _client(s.host, retries=2).ping()
    assert len(s.requests) == 3


def test_bearer_token_flow_and_scope(serve: Callable[[Route], Server]) -> None:
    tokens = serve(lambda h: (200, {}, json.dumps({"token": "tok-" + h.path.split("scope=")[1][:40]}).encode()))
    manifest = b'{"schemaVersion":2}'

    def registry(h: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Bearer tok-"):
            return 401, {"WWW-Authenticate": f'Bearer realm="http://{tokens.host}/token",service="reg"'}, b""
        return 200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, manifest

    reg = serve(registry)
    c = _client(reg.host, credentials=Credentials("u", "p"))
    m = c.get_manifest("ns/app", "v1")
    assert m.raw == manifest
    assert m.digest == str(sha256(manifest))
    assert m.media_type == "application/vnd.oci.image.manifest.v1+json"
    token_req = tokens.requests[0]
    assert "scope=repository%3Ans%2Fapp%3Apull" in token_req[1]
    assert "service=reg" in token_req[1]
    assert token_req[2]["Authorization"].startswith("Basic ")
    # The token is cached: a second request does not ask the token server again.
    c.get_manifest("ns/app", "v1")
    assert len(tokens.requests) == 1
    with pytest.raises(DigestMismatch):
        c.get_manifest("ns/app", "sha256:" + "0" * 64)


def test_token_server_refusal_is_auth_error_without_secret(serve: Callable[[Route], Server]) -> None:
    tokens = serve(lambda h: (401, {}, b'{"details":"incorrect username or password"}'))
    reg = serve(lambda h: (401, {"WWW-Authenticate": f'Bearer realm="http://{tokens.host}/token"'}, b""))
    with pytest.raises(AuthError) as exc:
        _client(reg.host, credentials=Credentials("u", "sekrit-password")).ping()
    assert "sekrit-password" not in str(exc.value)
    assert "credentials were refused" in str(exc.value)


def test_redirect_drops_authorization_for_other_host(serve: Callable[[Route], Server]) -> None:
    storage = serve(lambda h: (200, {}, b"blobdata"))
    digest = str(sha256(b"blobdata"))

    def registry(h: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if "Authorization" not in h.headers:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        return 307, {"Location": f"http://localhost:{storage.host.split(':')[1]}/data?sig=x"}, b""

    reg = serve(registry)
    c = _client(reg.host, credentials=Credentials("u", "p"))
    assert c.get_blob("ns/app", digest) == b"blobdata"
    assert "Authorization" not in storage.requests[0][2]


def test_range_request_and_start(serve: Callable[[Route], Server]) -> None:
    data = bytes(range(256)) * 10

    def route(h: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        rng = h.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].rstrip("-"))
            return 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}, data[start:]
        return 200, {}, data

    s = serve(route)
    c = _client(s.host)
    with c.open_blob("a/b", "sha256:" + "1" * 64, offset=1000) as stream:
        assert stream.start == 1000
        assert b"".join(stream.chunks()) == data[1000:]


def test_connection_refused_is_retryable_registry_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RegistryError) as exc:
        RegistryClient(f"127.0.0.1:{port}", credentials=None, retries=1, backoff=0.001).ping()
    assert exc.value.retryable
    assert "connect to registry" in str(exc.value)


def test_plain_http_server_is_found_for_loopback(serve: Callable[[Route], Server]) -> None:
    s = serve(lambda h: (200, {}, b"{}"))
    c = RegistryClient(s.host, credentials=None, backoff=0.001)
    c.ping()
    assert c.base_url == f"http://{s.host}"


def test_non_loopback_is_never_plain_http() -> None:
    c = RegistryClient("registry.invalid", credentials=None, retries=0)
    assert not c.insecure
