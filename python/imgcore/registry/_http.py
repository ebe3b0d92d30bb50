"""A small HTTP/1.1 client over :mod:`socket`: keep-alive connection pools, streaming and bounded reads.

Why not urllib3 or :mod:`http.client`: importing urllib3 costs ~60 ms and :mod:`http.client` pulls in ``email`` and
``ssl`` at import (~20 ms), which is most of what ``imgcore pull`` spent before its first request to a loopback
registry. This module imports only :mod:`socket`; :mod:`ssl` is imported the first time an ``https`` URL is used.

Invariants:

- Nothing here decides policy (auth, retries, redirects): :class:`~imgcore.registry.client.RegistryClient` does.
  Redirects are never followed here.
- Every failure below HTTP (refused, reset, timed out, malformed answer, TLS) is a :class:`TransportError`
  (an :class:`OSError`); a certificate failure is the subclass :class:`TLSError`.
- A response body is read only as framed (``Content-Length``, ``chunked``, or until close); a connection goes
  back to its pool only after its response was read to the end, so a pooled connection is never mid-response.
- Reads are bounded: a status line or header line is at most 64 KiB, a header block at most 256 KiB and 200
  lines; :meth:`Response.read_all` stops at its cap (whatever ``Content-Length`` claims) and raises
  :class:`BodyTooLarge`, and at its deadline and raises :class:`TransportError`.
- A pool is safe to share between threads; each connection is used by one thread at a time.
"""

from __future__ import annotations

import io
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import IO, Any, Final

__all__ = ["BodyTooLarge", "Headers", "Pools", "Response", "TLSError", "TransportError"]

_MAX_LINE: Final = 64 * 1024
_MAX_HEADER_BYTES: Final = 256 * 1024
_MAX_HEADERS: Final = 200
_SEND_CHUNK: Final = 1 << 20


class TransportError(OSError):
    """The connection failed below HTTP: refused, reset, timed out, or the peer's answer was not HTTP/1.x."""


class TLSError(TransportError):
    """The TLS handshake failed (certificate not trusted, wrong host name, protocol mismatch)."""


class BodyTooLarge(Exception):
    """A body read with :meth:`Response.read_all` went past its cap. ``cap`` is the limit in bytes."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"answer larger than {cap} bytes")
        self.cap = cap


class Headers(Mapping[str, str]):
    """Response headers: case-insensitive, repeated fields joined with ``", "`` (RFC 9110 section 5.3)."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._map: dict[str, str] = {}
        for k, v in fields:
            key = k.lower()
            self._map[key] = f"{self._map[key]}, {v}" if key in self._map else v

    def get(self, name: str, default: Any = None) -> Any:
        return self._map.get(name.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def fields(self) -> list[tuple[str, str]]:
        """Every field as received, in order, repeated ones separately."""
        return list(self._fields)

    def __repr__(self) -> str:
        return f"Headers({[k for k, _ in self._fields]!r})"


def _split_netloc(scheme: str, netloc: str) -> tuple[str, int]:
    default = 443 if scheme == "https" else 80
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise TransportError(f"bad host {netloc!r}")
        host, rest = netloc[1:end], netloc[end + 1 :]
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else default
    host, sep, port = netloc.rpartition(":")
    if sep and port.isdigit() and host:
        return host, int(port)
    return netloc, default


class _Conn:
    """One socket with its buffered reader. ``reused`` is True once it has served a response."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        rfile = sock.makefile("rb", buffering=256 * 1024)
        assert isinstance(rfile, io.BufferedReader)
        self.rfile: io.BufferedReader = rfile
        self.reused = False

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


class _Pool:
    """Idle keep-alive connections to one (scheme, host, port, TLS settings)."""

    def __init__(self, maxsize: int, scheme: str, netloc: str, verify: bool) -> None:
        self.maxsize = maxsize
        self.scheme = scheme
        self.host, self.port = _split_netloc(scheme, netloc)
        self.verify = verify
        self.idle: list[_Conn] = []
        self.lock = threading.Lock()

    def take(self) -> _Conn | None:
        with self.lock:
            return self.idle.pop() if self.idle else None

    def give(self, conn: _Conn) -> None:
        with self.lock:
            if len(self.idle) < self.maxsize:
                conn.reused = True
                self.idle.append(conn)
                return
        conn.close()

    def close_idle(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    def connect(self, pools: Pools) -> _Conn:
        timeout = pools.timeout
        try:
            # NOTE: an ASCII host is passed as bytes: a str makes getaddrinfo import the idna codec (~1 ms).
            host: str | bytes = self.host.encode("ascii") if self.host.isascii() else self.host
            sock = socket.create_connection((host, self.port), timeout=pools.connect_timeout)  # type: ignore[arg-type]
        except OSError as exc:
            raise TransportError(f"connect to {self.host}:{self.port}: {exc.__class__.__name__}: {exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
            if self.scheme == "https":
                sock = pools.wrap_tls(sock, self.host, self.verify)
        except BaseException:
            sock.close()
            raise
        return _Conn(sock)


class Pools:
    """Connection pools keyed by scheme, host and TLS settings; one per :class:`RegistryClient`.

    Args:
        maxsize: idle connections kept per pool (use at least the number of parallel transfers).
        ca_file: PEM bundle used instead of the system's CAs when verifying certificates.
        timeout: seconds a connect, a send or a read may wait for progress before :class:`TransportError`.
    """

    def __init__(self, *, maxsize: int = 8, ca_file: str | None = None, timeout: float = 60.0) -> None:
        self.maxsize = maxsize
        self.ca_file = ca_file
        self.timeout = timeout
        self.connect_timeout = min(timeout, 30.0)
        self._pools: dict[tuple[str, str, bool], _Pool] = {}
        self._contexts: dict[bool, Any] = {}
        self._lock = threading.Lock()
        # Idle sockets are closed when the Pools object goes away, as urllib3's pools do.
        weakref.finalize(self, _close_pools, self._pools)

    def close(self) -> None:
        """Close every idle connection (connections in use close when their response is done)."""
        _close_pools(self._pools)

    def _pool(self, scheme: str, netloc: str, verify: bool) -> _Pool:
        key = (scheme, netloc.lower(), verify or scheme != "https")
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _Pool(self.maxsize, scheme, netloc, key[2])
            return pool

    def wrap_tls(self, sock: socket.socket, host: str, verify: bool) -> socket.socket:
        # NOTE: ssl costs ~10 ms to import and a context ~5 ms to build: only https registries pay for them.
        import ssl

        with self._lock:
            ctx = self._contexts.get(verify)
            if ctx is None:
                if verify:
                    ctx = ssl.create_default_context(cafile=self.ca_file)
                else:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                ctx.set_alpn_protocols(["http/1.1"])
                self._contexts[verify] = ctx
        try:
            return ctx.wrap_socket(sock, server_hostname=host)
        except ssl.SSLError as exc:
            raise TLSError(f"TLS with {host}: {exc}") from None
        except OSError as exc:
            raise TransportError(f"TLS with {host}: {exc.__class__.__name__}: {exc}") from None

    def request(
        self,
        method: str,
        scheme: str,
        netloc: str,
        target: str,
        headers: dict[str, str],
        body: bytes | IO[bytes] | None = None,
        *,
        verify: bool = True,
        deadline: float | None = None,
    ) -> Response:
        """Send one request and read the status and headers; the body is left to the returned :class:`Response`.

        A connection taken from the pool may have been closed by the server meanwhile: when such a reused
        connection fails before any answer arrives, the request is sent once more on a fresh connection.
        """
        if scheme not in ("http", "https"):
            raise TransportError(f"unsupported URL scheme {scheme!r}")
        pool = self._pool(scheme, netloc, verify)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}"]
        has_length = any(k.lower() in ("content-length", "transfer-encoding") for k in headers)
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
        if not has_length and (body is not None or method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(body) if isinstance(body, bytes | bytearray) else 0}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body_pos = body.tell() if body is not None and not isinstance(body, bytes | bytearray) else None
        for fresh in (False, True):
            conn = None if fresh else pool.take()
            reused = conn is not None
            if conn is None:
                conn = pool.connect(self)
            try:
                if body_pos is not None and body is not None and not isinstance(body, bytes | bytearray):
                    body.seek(body_pos)
                _send(conn, head, body)
                return _read_head(pool, conn, method, deadline)
            except _StaleConnection:
                conn.close()
                if not reused:
                    raise TransportError(f"{netloc}: connection closed without an answer") from None
            except OSError as exc:
                conn.close()
                if not reused or isinstance(exc, TimeoutError):
                    if isinstance(exc, TransportError):
                        raise
                    raise TransportError(f"{netloc}: {exc.__class__.__name__}: {exc}") from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover


def _close_pools(pools: dict[tuple[str, str, bool], _Pool]) -> None:
    for pool in list(pools.values()):
        pool.close_idle()


class _StaleConnection(Exception):
    pass


def _send(conn: _Conn, head: bytes, body: bytes | IO[bytes] | None) -> None:
    if isinstance(body, bytes | bytearray):
        if len(body) <= 64 * 1024:
            conn.sock.sendall(head + body)
            return
        conn.sock.sendall(head)
        conn.sock.sendall(body)
        return
    conn.sock.sendall(head)
    if body is not None:
        while True:
            chunk = body.read(_SEND_CHUNK)
            if not chunk:
                break
            conn.sock.sendall(chunk)


def _readline(conn: _Conn, deadline: float | None = None) -> bytes:
    """One line (with its end), at most 64 KiB, checking ``deadline`` between reads from the socket."""
    buf = bytearray()
    rfile = conn.rfile
    while True:
        peek = rfile.peek(1)
        if not peek:
            return bytes(buf)
        i = peek.find(b"\n")
        buf += rfile.read(len(peek) if i < 0 else i + 1)
        if len(buf) > _MAX_LINE:
            raise TransportError(f"header line longer than {_MAX_LINE} bytes")
        if i >= 0:
            return bytes(buf)
        if deadline is not None and time.monotonic() > deadline:
            raise TransportError("the answer did not arrive in time (deadline passed)")


def _read_head(pool: _Pool, conn: _Conn, method: str, deadline: float | None) -> Response:
    while True:
        try:
            line = _readline(conn, deadline)
        except (ConnectionResetError, BrokenPipeError):
            if conn.reused:
                raise _StaleConnection from None
            raise
        if not line:
            if conn.reused:
                raise _StaleConnection
            raise TransportError(f"{pool.host}:{pool.port}: connection closed without an answer")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
            raise TransportError(f"{pool.host}:{pool.port}: answer is not HTTP/1.x: {line[:80]!r}")
        version, status, reason = parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""
        fields: list[tuple[str, str]] = []
        total = 0
        while True:
            hl = _readline(conn, deadline)
            total += len(hl)
            if total > _MAX_HEADER_BYTES or len(fields) > _MAX_HEADERS:
                raise TransportError(f"{pool.host}:{pool.port}: header block too large")
            if hl in (b"\r\n", b"\n"):
                break
            if not hl:
                raise TransportError(f"{pool.host}:{pool.port}: connection closed inside the headers")
            text = hl.decode("latin-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and fields:  # obsolete line folding
                k, v = fields[-1]
                fields[-1] = (k, f"{v} {text.strip()}")
                continue
            name, sep, value = text.partition(":")
            if not sep or not name or name != name.strip():
                raise TransportError(f"{pool.host}:{pool.port}: malformed header line {hl[:80]!r}")
            fields.append((name, value.strip()))
        if 100 <= status < 200 and status != 101:
            continue  # 100 Continue and other interim answers: the real one follows
        return Response(pool, conn, status, reason, Headers(fields), version, method)


class Response:
    """An answer whose status and headers have been read; the body is read with :meth:`read1` or :meth:`read_all`.

    Call :meth:`release_conn` (or :meth:`close`) when done: a fully read body gives the connection back to its
    pool, anything else closes it.
    """

    def __init__(
        self, pool: _Pool, conn: _Conn, status: int, reason: str, headers: Headers, version: str, method: str
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.data = b""  # the body, once a caller has read it whole (RegistryClient.request does, unless streaming)
        self._pool = pool
        self._conn: _Conn | None = conn
        te = (headers.get("Transfer-Encoding") or "").lower()
        conn_hdr = (headers.get("Connection") or "").lower()
        self._keep = "close" not in conn_hdr and (version != "HTTP/1.0" or "keep-alive" in conn_hdr)
        self._chunked = "chunked" in te
        self._left: int | None = None  # bytes left in a Content-Length body or in the current chunk
        self._done = False
        if method == "HEAD" or status in (204, 304):
            self._done = True
        elif self._chunked:
            self._left = 0
        else:
            length = headers.get("Content-Length")
            if length is not None:
                try:
                    self._left = int(length.split(",")[0].strip())
                except ValueError:
                    self._keep = False
                    self._left = None
                if self._left is not None and self._left < 0:
                    raise TransportError(f"{pool.host}:{pool.port}: negative Content-Length")
                if self._left == 0:
                    self._done = True
            if self._left is None:
                self._keep = False  # read until the server closes
        if self._done:
            self.release_conn()

    @property
    def content_length(self) -> int | None:
        """The declared body length (None when chunked or read until close). Never trusted for buffering."""
        if self._chunked:
            return None
        try:
            v = self.headers.get("Content-Length")
            return int(v) if v is not None else None
        except ValueError:
            return None

    def _next_chunk(self, conn: _Conn) -> bool:
        """Read a chunk-size line; False at the last chunk (trailers are read and dropped)."""
        line = _readline(conn)
        if line in (b"\r\n", b"\n"):  # the CRLF that ends the previous chunk
            line = _readline(conn)
        if not line:
            raise TransportError("connection closed inside a chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise TransportError(f"bad chunk size line {line[:40]!r}") from None
        if size < 0:
            raise TransportError(f"bad chunk size line {line[:40]!r}")
        if size == 0:
            total = 0
            while True:
                t = _readline(conn)
                total += len(t)
                if t in (b"\r\n", b"\n", b"") or total > _MAX_HEADER_BYTES:
                    break
            return False
        self._left = size
        return True

    def read1(self, n: int = 1 << 20) -> bytes:
        """Up to ``n`` bytes of the body (as soon as any are there); ``b""`` at its end."""
        conn = self._conn
        if self._done or conn is None:
            return b""
        try:
            if self._chunked and self._left == 0 and not self._next_chunk(conn):
                self._finish()
                return b""
            want = n if self._left is None else min(n, self._left)
            data = conn.rfile.read1(want)
        except OSError as exc:
            self.close()
            if isinstance(exc, TransportError):
                raise
            raise TransportError(f"reading the answer: {exc.__class__.__name__}: {exc}") from None
        if not data:
            if self._left is None:  # until close: this is the end
                self._finish()
                return b""
            self.close()
            raise TransportError(f"connection closed with {self._left} bytes of the body still to come")
        if self._left is not None:
            self._left -= len(data)
            if self._left == 0 and not self._chunked:
                self._finish()
        return data

    def read_all(self, cap: int, deadline: float | None = None) -> bytes:
        """The whole body, at most ``cap`` bytes (else :class:`BodyTooLarge`), before ``deadline`` (monotonic)."""
        if self._done:  # HEAD, 204, 304, or already read: a Content-Length there describes no body to come
            return b""
        declared = self.content_length
        if declared is not None and declared > cap:
            self.close()
            raise BodyTooLarge(cap)
        buf = bytearray()
        for chunk in self.iter_chunks(min(cap + 1, 1 << 20)):
            buf += chunk
            if len(buf) > cap:
                self.close()
                raise BodyTooLarge(cap)
            if deadline is not None and time.monotonic() > deadline:
                self.close()
                raise TransportError("the answer did not arrive in time (deadline passed)")
        return bytes(buf)

    def iter_chunks(self, n: int = 1 << 20) -> Iterator[bytes]:
        while True:
            data = self.read1(n)
            if not data:
                return
            yield data

    def _finish(self) -> None:
        self._done = True
        self.release_conn()

    def release_conn(self) -> None:
        """Give the connection back when the body was read to its end; otherwise close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep:
            self._pool.give(conn)
        else:
            conn.close()

    def close(self) -> None:
        self._done = True
        self._keep = False
        self.release_conn()
