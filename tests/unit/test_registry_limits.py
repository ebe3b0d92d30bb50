"""Bounded reads and time limits of the registry client (issue 10 item 4) against a hostile loopback server.

The server speaks raw HTTP/1.1 over a socket so that it can lie: endless chunked bodies, bodies without a length
that never end, a ``Content-Length`` of 10 GiB, bytes trickled forever. Each run of it is bounded (it stops after
``_MAX_SEND`` bytes or when the client hangs up). The client must stop at the cap (manifest 4 MiB, token and error
body 1 MiB, as containers/image's iolimits), keep its memory bounded, and fail with a typed error naming the URL
and the cap; a trickle must end at the deadline or the low-speed limit.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import imgcore
from imgcore.errors import RegistryError
from imgcore.registry import RegistryClient
from imgcore.registry.client import MAX_ERROR_BODY, MAX_MANIFEST, MAX_TOKEN

_MAX_SEND = 64 << 20  # what one hostile answer sends at most before it gives up
_PIECE = b"x" * 65536

Behaviour = Callable[[socket.socket, str], None]


def _headers(status: str, fields: dict[str, str]) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode()


def endless_chunked(status: str = "200 OK", fields: dict[str, str] | None = None) -> Behaviour:
    def go(conn: socket.socket, path: str) -> None:
        conn.sendall(_headers(status, {"Transfer-Encoding": "chunked", **(fields or {})}))
        sent = 0
        chunk = b"%x\r\n" % len(_PIECE) + _PIECE + b"\r\n"
        while sent < _MAX_SEND:
            conn.sendall(chunk)
            sent += len(_PIECE)

    return go


def endless_unframed(status: str = "200 OK", fields: dict[str, str] | None = None) -> Behaviour:
    def go(conn: socket.socket, path: str) -> None:
        conn.sendall(_headers(status, {"Connection": "close", **(fields or {})}))
        sent = 0
        while sent < _MAX_SEND:
            conn.sendall(_PIECE)
            sent += len(_PIECE)

    return go


def huge_length(conn: socket.socket, path: str) -> None:
    conn.sendall(_headers("200 OK", {"Content-Length": str(10 << 30)}))
    conn.sendall(_PIECE)
    time.sleep(0.5)


def trickle(delay: float, *, in_headers: bool = False) -> Behaviour:
    def go(conn: socket.socket, path: str) -> None:
        head = _headers("200 OK", {"Content-Length": "1000000"})
        if in_headers:
            head = _headers("200 OK", {"X-Slow": "a" * 10000})
            for i in range(len(head)):
                conn.sendall(head[i : i + 1])
                time.sleep(delay)
            return
        conn.sendall(head)
        for _ in range(1000):
            conn.sendall(b"{")
            time.sleep(delay)

    return go


class HostileServer:
    """Answers every connection with ``behaviour``; ``/token`` paths with ``token`` when it is set."""

    def __init__(self, behaviour: Behaviour, token: Behaviour | None = None) -> None:
        self.behaviour = behaviour
        self.token = token
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        return
                    data += got
                path = data.split(b" ", 2)[1].decode()
                handler = self.token if self.token is not None and path.startswith("/token") else self.behaviour
                handler(conn, path)
            except OSError:
                pass  # the client hung up: that is what a bounded client does

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileServer]]:
    servers: list[HostileServer] = []

    def start(behaviour: Behaviour, token: Behaviour | None = None) -> HostileServer:
        s = HostileServer(behaviour, token)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def _client(host: str, **kw: object) -> RegistryClient:
    return RegistryClient(host, credentials=None, scheme="http", retries=0, backoff=0.001, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "behaviour", [endless_chunked(), endless_unframed(), huge_length], ids=["chunked", "unframed", "huge-length"]
)
def test_endless_manifest_stops_at_4_mib(hostile: Callable[..., HostileServer], behaviour: Behaviour) -> None:
    server = hostile(behaviour)
    with pytest.raises(RegistryError) as exc:
        _client(server.host).get_manifest("evil/app", "latest")
    assert exc.value.code == "SIZE_LIMIT"
    assert f"http://{server.host}/v2/evil/app/manifests/latest" in str(exc.value)
    assert str(MAX_MANIFEST) in str(exc.value)
    assert not exc.value.retryable


def test_endless_error_body_stops_at_1_mib(hostile: Callable[..., HostileServer]) -> None:
    server = hostile(endless_chunked("404 Not Found"))
    with pytest.raises(RegistryError) as exc:
        _client(server.host).get_manifest("evil/app", "latest")
    assert exc.value.code == "SIZE_LIMIT"
    assert "error body" in str(exc.value)
    assert str(MAX_ERROR_BODY) in str(exc.value)


def test_endless_token_answer_stops_at_1_mib(hostile: Callable[..., HostileServer]) -> None:
    holder: dict[str, str] = {}

    def challenge(conn: socket.socket, path: str) -> None:
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"token please"}]}'
        conn.sendall(_headers("401 Unauthorized", {
            "WWW-Authenticate": f'Bearer realm="http://{holder["host"]}/token",service="evil"',
            "Content-Length": str(len(body)),
        }) + body)  # fmt: skip

    server = hostile(challenge, token=endless_chunked(fields={"Content-Type": "application/json"}))
    holder["host"] = server.host
    with pytest.raises(RegistryError) as exc:
        _client(server.host).get_manifest("evil/app", "latest")
    assert exc.value.code == "SIZE_LIMIT"
    assert f"http://{server.host}/token" in str(exc.value)
    assert str(MAX_TOKEN) in str(exc.value)


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_trickled_answer_ends_at_the_deadline(hostile: Callable[..., HostileServer], in_headers: bool) -> None:
    server = hostile(trickle(0.02, in_headers=in_headers))
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match=r"in time|deadline") as exc:
        _client(server.host, deadline=0.5, timeout=5.0).get_manifest("evil/app", "latest")
    assert time.monotonic() - t0 < 3.0
    assert exc.value.retryable


def test_trickled_blob_is_cut_by_the_low_speed_limit(hostile: Callable[..., HostileServer]) -> None:
    server = hostile(trickle(0.02))
    client = _client(server.host, low_speed_limit=10_000, low_speed_time=0.4, timeout=5.0)
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match="too slow") as exc, client.open_blob("evil/app", "sha256:" + "0" * 64) as s:
        for _ in s.chunks():
            pass
    assert time.monotonic() - t0 < 3.0
    assert exc.value.retryable


def test_idle_connection_times_out(hostile: Callable[..., HostileServer]) -> None:
    def silent(conn: socket.socket, path: str) -> None:
        time.sleep(3)

    server = hostile(silent)
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match="connection") as exc:
        _client(server.host, timeout=0.3).get_manifest("evil/app", "latest")
    assert time.monotonic() - t0 < 2.0
    assert exc.value.retryable


_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from imgcore.errors import RegistryError
    from imgcore.registry import RegistryClient
    c = RegistryClient(sys.argv[1], credentials=None, scheme="http", retries=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        c.get_manifest("evil/app", "latest")
        out = {"error": None}
    except RegistryError as e:
        out = {"error": type(e).__name__, "code": e.code, "message": str(e)}
    out["rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["before_kib"] = before
    print(json.dumps(out))
    """
)


def test_memory_stays_bounded_on_an_endless_manifest(hostile: Callable[..., HostileServer]) -> None:
    """In a fresh process (so the peak is its own): 64 MiB offered, the client reads ~4 MiB and stops."""
    server = hostile(endless_unframed())
    python_dir = Path(imgcore.__file__).resolve().parents[1]  # the package under test (installed or a tree)
    r = subprocess.run([sys.executable, "-c", _CHILD, server.host], capture_output=True, text=True, check=True,
                       env={"PYTHONPATH": str(python_dir), "PATH": "/usr/bin:/bin"}, timeout=60)  # fmt: skip
    out = json.loads(r.stdout)
    assert out["error"] == "RegistryError"
    assert out["code"] == "SIZE_LIMIT"
    assert out["rss_kib"] - out["before_kib"] < 24 * 1024, out  # a 4 MiB cap plus buffers, not 64 MiB


def test_head_of_a_large_blob_is_not_a_body_over_the_cap(hostile: Callable[..., HostileServer]) -> None:
    """The caps apply to bodies read, not to what a HEAD's Content-Length describes (a 3 GB layer)."""

    def head(conn: socket.socket, path: str) -> None:
        conn.sendall(
            _headers("200 OK", {"Content-Length": str(3 << 30), "Docker-Content-Digest": "sha256:" + "a" * 64})
        )

    server = hostile(head)
    assert _client(server.host).blob_size("big/app", "sha256:" + "a" * 64) == 3 << 30
