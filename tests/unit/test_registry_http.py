"""The registry client's HTTP/1.1 transport (``imgcore.registry._http``) against small raw-socket servers.

Framing (Content-Length, chunked with extensions and trailers, until close, HEAD), keep-alive reuse, a pooled
connection the server closed meanwhile, sharing one pool between threads, and the start-up promise: a plain-HTTP
registry never imports ssl, http.client or urllib3.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import imgcore
from imgcore.registry._http import Pools, TransportError

Answer = Callable[[bytes], bytes | None]  # request head -> raw answer (None: close without answering)


class RawServer:
    """Serves each request on a connection with ``answer``; ``close_after`` requests per connection (0: never)."""

    def __init__(self, answer: Answer, close_after: int = 0) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.netloc = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            buf, served = b"", 0
            try:
                while True:
                    while b"\r\n\r\n" not in buf:
                        got = conn.recv(65536)
                        if not got:
                            return
                        buf += got
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    with self._lock:
                        self.requests.append(head)
                    out = self.answer(head)
                    if out is None:
                        return
                    conn.sendall(out)
                    served += 1
                    if self.close_after and served >= self.close_after:
                        return
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Answer, close_after: int = 0) -> RawServer:
        s = RawServer(answer, close_after)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def _get(pools: Pools, server: RawServer, path: str = "/", method: str = "GET") -> tuple[int, bytes]:
    r = pools.request(method, "http", server.netloc, path, {"User-Agent": "t"})
    return r.status, r.read_all(1 << 20)


def test_keep_alive_reuses_one_connection(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda head: _ok(head.split(b" ")[1]))
    pools = Pools(maxsize=2)
    for i in range(5):
        assert _get(pools, server, f"/n{i}") == (200, f"/n{i}".encode())
    assert server.connections == 1
    assert all(h.startswith(b"GET /n") and b"\r\nHost: " + server.netloc.encode() in h for h in server.requests)
    pools.close()


def test_connection_closed_by_the_server_while_idle_is_replaced(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda head: _ok(b"fine"), close_after=1)
    pools = Pools()
    for _ in range(3):
        assert _get(pools, server) == (200, b"fine")
    assert server.connections == 3
    pools.close()


def test_chunked_with_extensions_and_trailers_then_reuse(raw: Callable[..., RawServer]) -> None:
    body = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: y\r\n\r\n"
    )
    server = raw(lambda head: body)
    pools = Pools()
    assert _get(pools, server) == (200, b"hello world")
    assert _get(pools, server) == (200, b"hello world")
    assert server.connections == 1
    pools.close()


def test_until_close_body_and_head_and_interim_answers(raw: Callable[..., RawServer]) -> None:
    unframed = raw(lambda head: b"HTTP/1.0 200 OK\r\n\r\nall of it", close_after=1)
    pools = Pools()
    assert _get(pools, unframed) == (200, b"all of it")
    head = raw(
        lambda h: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1234\r\nA: 1\r\nA: 2\r\n\r\n"
    )
    r = pools.request("HEAD", "http", head.netloc, "/", {})
    assert (r.status, r.read_all(10), r.headers["a"], r.content_length) == (200, b"", "1, 2", 1234)
    assert _get(pools, head, method="HEAD") == (200, b"")
    assert head.connections == 1
    pools.close()


def test_short_body_and_garbage_are_transport_errors(raw: Callable[..., RawServer]) -> None:
    short = raw(lambda h: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", close_after=1)
    pools = Pools(timeout=5)
    with pytest.raises(TransportError, match="still to come"):
        _get(pools, short)
    garbage = raw(lambda h: b"SSH-2.0-OpenSSH\r\n\r\n", close_after=1)
    with pytest.raises(TransportError, match="not HTTP"):
        _get(pools, garbage)
    silent = raw(lambda h: None)
    with pytest.raises(TransportError, match="without an answer"):
        _get(pools, silent)


def test_one_pool_shared_by_threads(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda head: _ok(head.split(b" ")[1] * 1000))
    pools = Pools(maxsize=4)

    def work(i: int) -> bool:
        return all(_get(pools, server, f"/t{i}-{j}") == (200, f"/t{i}-{j}".encode() * 1000) for j in range(20))

    with ThreadPoolExecutor(8) as ex:
        assert all(ex.map(work, range(8)))
    assert server.connections <= 8 + 4
    pools.close()


def test_plain_http_registry_imports_no_ssl(raw: Callable[..., RawServer]) -> None:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}).encode()
    server = raw(lambda head: b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(manifest) + manifest)  # fmt: skip
    code = (
        "import sys; from imgcore.registry import RegistryClient; "
        f"c = RegistryClient({server.netloc!r}, credentials=None); c.get_manifest('a/b', 'latest'); "
        "print(sorted(m for m in ('ssl', '_ssl', 'http.client', 'urllib3', 'email') if m in sys.modules))"
    )
    python_dir = Path(imgcore.__file__).resolve().parents[1]  # the package under test (installed or a tree)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                       env={"PYTHONPATH": str(python_dir), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert r.stdout.strip() == "[]", r.stderr
