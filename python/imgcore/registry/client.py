"""A client for the OCI distribution protocol (``/v2/...``), with connection pooling and streaming.

One :class:`RegistryClient` talks to one registry host and is safe to share between threads. The HTTP/1.1
transport is :mod:`._http` (the standard library's :mod:`socket`; :mod:`ssl` only once an https URL is used).

Transport policy, as docker's:

- HTTPS with the system's CAs, or a given CA file.
- Registries that are *insecure* -- loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``) and hosts named in
  ``insecure`` or ``$IMGCORE_INSECURE_REGISTRIES`` -- are tried over HTTPS first, then HTTPS without certificate
  verification, then plain HTTP. The first that answers ``/v2/`` is kept.
- Retries with exponential backoff (and ``Retry-After``) on 5xx, 429 and dropped connections; redirects are followed
  by hand.
- Credentials go only where they belong: ``Authorization`` (Basic or Bearer) is sent only to the registry's own
  host, and basic credentials to the token realm the registry's own 401 challenge named. A redirect target or an
  upload ``Location`` on another host gets none; a 401 from such a host is an :class:`~imgcore.errors.AuthError`
  naming it, never a challenge to answer (docker and containers/image behave the same way).
- Bounded reads (containers/image ``internal/iolimits``, CVE-2020-1702): a manifest is read up to 4 MiB
  (``MAX_MANIFEST``), a config up to 4 MiB, a token answer and an error body up to 1 MiB, whatever
  ``Content-Length`` says (chunked and endless bodies included); past the cap the read stops with a
  :class:`~imgcore.errors.RegistryError` naming the URL and the cap.
- Time limits: a connect, send or read that makes no progress for ``timeout`` seconds fails; a bounded answer
  (headers, manifest, token, error) must arrive whole within ``deadline`` seconds; a blob stream that stays
  below ``low_speed_limit`` bytes/s for ``low_speed_time`` seconds is cut as a retryable error (curl's
  ``--speed-limit``/``--speed-time``), so a registry that trickles bytes cannot hang a pull.
- Error bodies (``{"errors": [{"code", "message", "detail"}]}``) become :class:`~imgcore.errors.RegistryError`
  subclasses carrying what the registry said. Credentials never appear in messages: see :func:`.auth.redact`.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Final, Literal, cast
from urllib.parse import urlencode, urljoin, urlsplit

from imgcore import sha256 as _sha256
from imgcore.errors import (
    AuthError,
    DigestMismatch,
    InvalidDigest,
    NotFound,
    RateLimited,
    RegistryError,
    UnsupportedOperation,
)
from imgcore.registry._http import BodyTooLarge, Pools, Response, TLSError
from imgcore.registry.auth import (
    Challenge,
    Credentials,
    TokenCache,
    load_credentials,
    normalize_registry,
    parse_www_authenticate,
    redact,
    token_from_response,
)

__all__ = [
    "MANIFEST_ACCEPT",
    "MAX_CONFIG",
    "MAX_ERROR_BODY",
    "MAX_LIST_PAGE",
    "MAX_MANIFEST",
    "MAX_TOKEN",
    "BlobStream",
    "ManifestResponse",
    "RegistryClient",
    "error_from_response",
    "is_insecure_host",
    "registry_host",
]

MANIFEST_ACCEPT: Final = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
"""The manifest media types a manifest request accepts: OCI and Docker indexes and manifests."""
_RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_USER_AGENT: Final = "imgcore"
_HUB_API: Final = "registry-1.docker.io"
_CHUNK: Final = 1 << 20
# containers/image internal/iolimits: MaxManifestBodySize, MaxConfigBodySize, MaxAuthTokenBodySize, MaxErrorBodySize.
MAX_MANIFEST: Final = 4 << 20
"""Largest manifest or index accepted (containers/image's iolimits: 4 MiB)."""
MAX_CONFIG: Final = 4 << 20
"""Largest image config accepted (4 MiB)."""
MAX_TOKEN: Final = 1 << 20
"""Largest token response accepted (1 MiB)."""
MAX_ERROR_BODY: Final = 1 << 20
"""Largest error body read from a registry (1 MiB)."""
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
MAX_LIST_PAGE: Final = 4 << 20
"""Largest page of a tag list or catalog accepted (4 MiB)."""
_MAX_PAGES: Final = 10_000


def registry_host(domain: str) -> str:
    """The host a reference domain is served from (``docker.io`` -> ``registry-1.docker.io``)."""
    return _HUB_API if normalize_registry(domain) == "docker.io" else domain


def _split_host_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_insecure_host(host: str, insecure: Iterable[str] = ()) -> bool:
    """Whether ``host`` may be spoken to over plain HTTP: loopback, or named (host or host:port) in ``insecure``."""
    names = {normalize_registry(h) for h in insecure}
    env = os.environ.get("IMGCORE_INSECURE_REGISTRIES", "")
    names |= {normalize_registry(h) for h in env.split(",") if h.strip()}
    hostname = _split_host_port(host).lower()
    if normalize_registry(host) in names or hostname in names:
        return True
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    hostname = _split_host_port(host).lower()
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _error_entries(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def error_from_response(what: str, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> RegistryError:
    """Map a failed registry response to the right exception, quoting the registry's own error codes and messages."""
    entries = _error_entries(body)
    code = str(entries[0].get("code")) if entries and entries[0].get("code") else None
    if entries:
        parts = []
        for e in entries[:4]:
            msg = str(e.get("message") or e.get("code") or "").strip()
            c = str(e.get("code") or "")
            parts.append(f"{msg} ({c})" if c and c.lower().replace("_", " ") != msg.lower() else msg or c)
        said = "; ".join(parts)
    else:
        text = body[:200].decode("utf-8", "replace").strip()
        said = " ".join(text.split()) if text and not text.lstrip().startswith("<") else ""
    detail = f": registry said: {said}" if said else ""
    message = redact(f"{what}: HTTP {status}{detail}")
    retry_after = None
    if headers is not None:
        with contextlib.suppress(TypeError, ValueError):
            retry_after = float(headers.get("Retry-After", ""))
    if status in (401, 403):
        return AuthError(message, status=status, code=code)
    if status == 404:
        return NotFound(message, status=status, code=code)
    if status == 429 or code == "TOOMANYREQUESTS":
        return RateLimited(message, status=status, code=code, retryable=True, retry_after=retry_after)
    if status == 405 or code == "UNSUPPORTED":
        return UnsupportedOperation(message, status=status, code=code)
    return RegistryError(message, status=status, code=code, retryable=status >= 500 or status == 408)


@dataclass(frozen=True)
class ManifestResponse:
    """A manifest or index as the registry served it: its raw bytes, media type and (computed) digest."""

    raw: bytes
    media_type: str
    digest: str

    @property
    def size(self) -> int:
        """The manifest's size in bytes: the length of :attr:`raw`."""
        return len(self.raw)


class BlobStream:
    """A streaming blob body. ``start`` is the offset of its first byte (non-zero only when a Range was honoured)."""

    def __init__(
        self,
        response: Response,
        start: int,
        total: int | None,
        *,
        what: str = "download",
        low_speed_limit: float = 1024.0,
        low_speed_time: float = 60.0,
    ) -> None:
        self._response = response
        self.start = start
        self.total = total
        self._what = what
        self._low_limit = low_speed_limit
        self._low_time = low_speed_time

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        """Yield the body in chunks. Dropped connections raise :class:`RegistryError` with ``retryable=True``.

        So does a stream slower than ``low_speed_limit`` bytes/s over a whole ``low_speed_time`` window.
        """
        window_start = time.monotonic()
        window_bytes = 0
        try:
            while True:
                data = self._response.read1(size)
                if not data:
                    return
                window_bytes += len(data)
                now = time.monotonic()
                if now - window_start >= self._low_time:
                    if window_bytes < self._low_limit * (now - window_start):
                        self.close()
                        raise RegistryError(
                            redact(
                                f"{self._what}: too slow: {window_bytes} bytes in {now - window_start:.1f} s"
                                f" (below {self._low_limit:.0f} bytes/s for {self._low_time:.0f} s)"
                            ),
                            retryable=True,
                        )
                    window_start, window_bytes = now, 0
                yield data
        except OSError as exc:
            raise RegistryError(
                redact(f"{self._what}: connection lost: {exc.__class__.__name__}: {exc}"), retryable=True
            ) from None

    def close(self) -> None:
        """Close the stream and its connection, which is not reused (the body may be partly read); leaving a
        ``with`` block does the same."""
        self._response.close()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _backoff(attempt: int, base: float, cap: float = 8.0) -> float:
    return float(min(cap, base * (2**attempt)) * (0.5 + random.random() / 2))


def _pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _delete_scope(repo: str) -> str:
    return f"repository:{repo}:delete"


_CATALOG_SCOPE: Final = "registry:catalog:*"


class RegistryClient:
    """Distribution-spec client for one registry host.

    Args:
        registry: ``host[:port]`` as in a reference's domain (``docker.io`` is mapped to its API host).
        credentials: explicit credentials, ``None`` for anonymous, or ``"auto"`` to look them up as ``docker`` would.
        insecure: extra host names that may use plain HTTP / unverified TLS (loopback always may).
        ca_file: a PEM bundle to verify the registry's certificate against instead of the system's CAs.
        retries: how many times a request is retried on 5xx, 429 and dropped connections.
        backoff: base delay of the exponential backoff, in seconds.
        timeout: seconds a connect, send or read may go without progress.
        pool_size: connections kept per host (use at least the number of parallel downloads).
        deadline: seconds within which a bounded answer (status and headers, manifest, token, error body,
            config) must arrive whole.
        low_speed_limit, low_speed_time: a blob stream slower than ``low_speed_limit`` bytes/s over
            ``low_speed_time`` seconds is cut (a retryable :class:`RegistryError`; the pull resumes with Range).
    """

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | Literal["auto"] | None = "auto",
        insecure: Iterable[str] = (),
        ca_file: str | os.PathLike[str] | None = None,
        retries: int = 5,
        backoff: float = 0.25,
        timeout: float = 60.0,
        pool_size: int = 8,
        scheme: Literal["https", "http"] | None = None,
        deadline: float = 300.0,
        low_speed_limit: float = 1024.0,
        low_speed_time: float = 60.0,
    ) -> None:
        self.registry = normalize_registry(registry)
        self.host = registry_host(self.registry)
        self.insecure = is_insecure_host(self.host, insecure) or is_insecure_host(self.registry, insecure)
        self.credentials = load_credentials(self.registry) if credentials == "auto" else credentials
        self.retries = retries
        self.backoff = backoff
        self.deadline = deadline
        self.low_speed_limit = low_speed_limit
        self.low_speed_time = low_speed_time
        self._ca_file = os.fspath(ca_file) if ca_file is not None else None
        self._pools = Pools(maxsize=pool_size, ca_file=self._ca_file, timeout=timeout)
        self._base: str | None = f"{scheme}://{self.host}" if scheme else None
        self._verify = True
        self._lock = threading.Lock()
        self._tokens = TokenCache()
        self._challenge: Challenge | None = None

    def close(self) -> None:
        """Close the idle connections now (they are also closed when the client is garbage-collected)."""
        self._pools.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r}, base={self._base!r})"

    # ------------------------------------------------------------------------------------------ transport

    def _raw(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | IO[bytes] | None = None,
        *,
        verify: bool,
        deadline: float | None = None,
    ) -> Response:
        """One HTTP exchange, no policy. ``verify=False`` (no certificate check) is only ever asked for registries
        the user, or loopback, marked insecure, as docker does."""
        split = urlsplit(url)
        target = (split.path or "/") + (f"?{split.query}" if split.query else "")
        return self._pools.request(
            method, split.scheme, split.netloc, target, dict(headers), body, verify=verify, deadline=deadline
        )

    def _read(self, r: Response, cap: int, what: str, url: str, deadline: float | None, kind: str) -> bytes:
        """The body of ``r``, at most ``cap`` bytes and before ``deadline``, else a :class:`RegistryError`."""
        try:
            return r.read_all(cap, deadline)
        except BodyTooLarge:
            raise RegistryError(
                redact(f"{what}: {_strip_query(url)}: {kind} larger than {cap} bytes (the limit); not read further"),
                status=r.status,
                code="SIZE_LIMIT",
            ) from None
        except OSError as exc:
            raise RegistryError(
                redact(f"{what}: {_strip_query(url)}: reading the {kind} failed: {exc}"), retryable=True
            ) from None

    def _deadline(self) -> float:
        return time.monotonic() + self.deadline

    @property
    def base_url(self) -> str:
        """``scheme://host``, found by probing ``/v2/`` the first time it is needed."""
        if self._base is None:
            with self._lock:
                if self._base is None:
                    self._base, self._verify = self._probe()
        return self._base

    def _probe(self) -> tuple[str, bool]:
        candidates: list[tuple[str, bool]] = [("https", True)]
        if self.insecure:
            candidates += [("https", False), ("http", True)]
            if _is_loopback(self.host):
                # NOTE: a loopback registry is local: asking it in plain HTTP first saves two TLS set-ups
                # (an HTTPS server answers 400 "client sent an HTTP request to an HTTPS server", handled below).
                candidates = [("http", True), ("https", True), ("https", False)]
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            for scheme, verify in candidates:
                url = f"{scheme}://{self.host}/v2/"
                try:
                    deadline = self._deadline()
                    r = self._raw("GET", url, {"User-Agent": _USER_AGENT}, verify=verify, deadline=deadline)
                    data = self._read(r, MAX_ERROR_BODY, f"ping {self.registry}", url, deadline, "answer")
                except TLSError as exc:
                    last = exc
                    continue
                except OSError as exc:
                    last = exc
                    if self.insecure:
                        continue
                    break
                except RegistryError as exc:
                    last = exc
                    break
                if r.status in _RETRY_STATUS:
                    last = error_from_response(f"ping {self.registry}", r.status, data, r.headers)
                    break
                if scheme == "http" and r.status == 400 and b"HTTPS" in data:
                    continue
                return f"{scheme}://{self.host}", verify
            if isinstance(last, TLSError):
                break  # a certificate problem does not go away by asking again
            if isinstance(last, RegistryError) and not last.retryable:
                break
            if attempt < self.retries:
                time.sleep(_backoff(attempt, self.backoff))
        if isinstance(last, RegistryError):
            raise last
        if isinstance(last, TLSError):
            raise RegistryError(
                redact(
                    f"connect to registry {self.registry}: TLS failed: {last}; give the registry's CA with --ca-file,"
                    " or name it with --insecure-registry if it is a test registry"
                )
            )
        reason = f"{last.__class__.__name__}: {last}" if last else "no answer"
        raise RegistryError(redact(f"connect to registry {self.registry}: {reason}"), retryable=True)

    def _url(self, path_or_url: str) -> str:
        if "://" in path_or_url:
            return path_or_url
        return urljoin(self.base_url + "/", path_or_url.lstrip("/"))

    # ------------------------------------------------------------------------------------------ auth

    def _auth_header(self, scopes: tuple[str, ...]) -> str | None:
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return self.credentials.basic_header() if self.credentials else None
        if ch.scheme == "bearer":
            realm = ch.params.get("realm", "")
            token = self._tokens.get(realm, frozenset(scopes))
            if token is None and scopes:
                token = self._fetch_token(ch, scopes)
            elif token is None:
                token = self._tokens.get(realm, frozenset())
            return f"Bearer {token}" if token else None
        return None

    def _fetch_token(self, ch: Challenge, scopes: Iterable[str]) -> str:
        realm = ch.params.get("realm")
        if not realm:
            raise AuthError(f"auth {self.registry}: bearer challenge without a realm")
        scope_set = frozenset(s for s in scopes if s)
        query: list[tuple[str, str]] = []
        if ch.params.get("service"):
            query.append(("service", ch.params["service"]))
        query += [("scope", s) for s in sorted(scope_set)]
        if self.credentials is not None:
            query.append(("account", self.credentials.username))
        url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
        split = urlsplit(url)
        if split.scheme not in ("http", "https") or not split.netloc:
            raise AuthError(redact(f"auth {self.registry}: bearer realm {realm!r} is not an http(s) URL"))
        what = f"auth {self.registry}: token from {split.scheme}://{split.netloc}{split.path}"
        for attempt in range(self.retries + 1):
            deadline = self._deadline()
            try:
                r, final = self._token_exchange(url, deadline)
                data = self._read(r, MAX_TOKEN if r.status == 200 else MAX_ERROR_BODY, what, final, deadline,
                                  "token answer" if r.status == 200 else "error body")  # fmt: skip
            except OSError as exc:
                if attempt < self.retries:
                    time.sleep(_backoff(attempt, self.backoff))
                    continue
                raise RegistryError(redact(f"{what}: {exc.__class__.__name__}: {exc}"), retryable=True) from None
            if r.status in _RETRY_STATUS and attempt < self.retries:
                time.sleep(_backoff(attempt, self.backoff))
                continue
            if r.status in (401, 403):
                who = "the credentials were refused" if self.credentials else "anonymous access was refused"
                if urlsplit(final).netloc != split.netloc:
                    who = f"{urlsplit(final).netloc} (redirected to) refused access; no credentials were sent there"
                err = error_from_response(f"{what}: {who}", r.status, data, r.headers)
                raise AuthError(str(err), status=r.status, code=err.code)
            if r.status != 200:
                raise error_from_response(what, r.status, data, r.headers)
            token, expires = token_from_response(self.registry, data)
            self._tokens.put(realm, scope_set, token, expires)
            return token
        raise AssertionError("unreachable")  # pragma: no cover

    def _token_exchange(self, url: str, deadline: float) -> tuple[Response, str]:
        """GET the token URL, following redirects by hand; basic credentials go only to the realm's own host."""
        realm_netloc = urlsplit(url).netloc
        for _ in range(6):
            split = urlsplit(url)
            headers = {"User-Agent": _USER_AGENT}
            if self.credentials is not None and split.netloc == realm_netloc:
                headers["Authorization"] = self.credentials.basic_header()
            verify = self._verify if split.netloc == self.host else True
            r = self._raw("GET", url, headers, verify=verify, deadline=deadline)
            if r.status not in _REDIRECTS or "Location" not in r.headers:
                return r, url
            r.close()
            url = urljoin(url, r.headers["Location"])
            if urlsplit(url).scheme not in ("http", "https"):
                raise RegistryError(redact(f"auth {self.registry}: token endpoint redirected to {url!r}"))
        raise RegistryError(redact(f"auth {self.registry}: token endpoint: too many redirects"))

    def _on_unauthorized(self, r: Response, scopes: tuple[str, ...], what: str, sent: str | None) -> bool:
        """Handle a 401: learn the challenge and get credentials for it. False when there is nothing left to try.

        ``sent`` is the Authorization value the refused request carried: another thread may have learnt the
        challenge meanwhile, so a request sent without (or with older) credentials is simply tried again.
        """
        header = r.headers.get("WWW-Authenticate", "")
        challenges = parse_www_authenticate(header)
        by_scheme = {c.scheme: c for c in challenges}
        ch = by_scheme.get("bearer") or by_scheme.get("basic")
        if ch is None:
            return False
        self._challenge = ch
        if ch.scheme == "basic":
            if self.credentials is None:
                raise AuthError(
                    f"{what}: registry {self.registry} requires authentication; run `imgcore login {self.registry}`",
                    status=401,
                    code="UNAUTHORIZED",
                )
            return sent != self.credentials.basic_header()
        wanted = set(scopes)
        if ch.params.get("scope"):
            wanted |= set(ch.params["scope"].split(" "))
        cached = self._tokens.get(ch.params.get("realm", ""), frozenset(wanted))
        if cached is not None and f"Bearer {cached}" != sent:
            return True
        token = self._fetch_token(ch, wanted)
        return f"Bearer {token}" != sent or sent is None

    # ------------------------------------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        what: str,
        scopes: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | IO[bytes] | None = None,
        ok: Iterable[int] = (200,),
        stream: bool = False,
        limit: int = MAX_ERROR_BODY,
    ) -> Response:
        """Send one request with auth, redirects and retries; return the response.

        Unless ``stream``, the body is read (at most ``limit`` bytes, within the deadline) into ``.data``.
        ``Authorization`` is attached only when the URL is on the registry's own host.
        """
        ok_set = frozenset(ok)
        url = self._url(path_or_url)
        own = urlsplit(url).netloc == self.host
        body_pos = body.tell() if body is not None and not isinstance(body, bytes | bytearray) else None
        auth_rounds = 0
        attempt = 0
        while True:
            hdrs = {"User-Agent": _USER_AGENT, **(headers or {})}
            auth = self._auth_header(scopes) if own else None
            if auth:
                hdrs["Authorization"] = auth
            if body_pos is not None and body is not None and not isinstance(body, bytes | bytearray):
                body.seek(body_pos)
            deadline = self._deadline()
            try:
                r, final = self._send(method, url, hdrs, body, deadline)
                if r.status in ok_set:
                    if not stream:
                        r.data = self._read(r, limit, what, final, deadline, "answer")
                    return r
                data = self._read(r, MAX_ERROR_BODY, what, final, deadline, "error body")
            except OSError as exc:
                if attempt < self.retries:
                    time.sleep(_backoff(attempt, self.backoff))
                    attempt += 1
                    continue
                raise RegistryError(
                    redact(f"{what}: connection to {self.registry} failed: {exc}"), retryable=True
                ) from None
            except RegistryError as exc:
                if exc.retryable and attempt < self.retries:
                    time.sleep(_backoff(attempt, self.backoff))
                    attempt += 1
                    continue
                raise
            foreign = urlsplit(final).netloc
            if r.status in (401, 403) and foreign != self.host:
                # NOTE: a redirect target's challenge is not the registry's: answering it would hand the
                # registry's credentials (or a token for it) to whoever runs that host.
                err = error_from_response(f"{what}: redirected to {foreign}", r.status, data, r.headers)
                raise AuthError(
                    f"{err}; {foreign} is not {self.registry}, so no credentials were sent to it",
                    status=r.status,
                    code=err.code,
                )
            if r.status == 401 and auth_rounds < 2:
                auth_rounds += 1
                if self._on_unauthorized(r, scopes, what, auth):
                    continue
            if r.status in _RETRY_STATUS and attempt < self.retries:
                delay = _backoff(attempt, self.backoff)
                with contextlib.suppress(TypeError, ValueError):
                    delay = max(delay, min(float(r.headers.get("Retry-After", "")), 30.0))
                time.sleep(delay)
                attempt += 1
                continue
            err = error_from_response(what, r.status, data, r.headers)
            if isinstance(err, AuthError) and self.credentials is not None and r.status == 401:
                raise AuthError(
                    f"{err}; the registry refused the credentials for {self.registry}", status=401, code=err.code
                )
            raise err

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | IO[bytes] | None, deadline: float
    ) -> tuple[Response, str]:
        """Send, following up to 5 redirects by hand; returns the answer and the URL that gave it.

        ``Authorization`` is dropped as soon as a hop leaves the registry's host (and not put back if a later
        hop returns to it). A target on another host is verified with the system's (or ``ca_file``'s) CAs.
        """
        for _ in range(6):
            netloc = urlsplit(url).netloc
            verify = self._verify if netloc == self.host else True
            r = self._raw(method, url, headers, body, verify=verify, deadline=deadline)
            if r.status not in _REDIRECTS or "Location" not in r.headers:
                return r, url
            r.close()
            url = urljoin(url, r.headers["Location"])
            if urlsplit(url).scheme not in ("http", "https"):
                raise RegistryError(redact(f"{method} redirected to {url!r}: not an http(s) URL"))
            if urlsplit(url).netloc != self.host:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if r.status == 303 or (r.status in (301, 302) and method == "POST"):
                method, body = "GET", None
        raise RegistryError(redact(f"{method} {_strip_query(url)}: too many redirects"))

    # ------------------------------------------------------------------------------------------ API

    def ping(self) -> None:
        """Check that the registry speaks the v2 protocol and that we may talk to it."""
        self.request("GET", "/v2/", what=f"ping {self.registry}")

    def get_manifest(self, repo: str, reference: str, *, accept: Iterable[str] = MANIFEST_ACCEPT) -> ManifestResponse:
        """Fetch a manifest or index by tag or digest. A digest reference is verified against the bytes."""
        what = f"get manifest {self.registry}/{repo}{_sep(reference)}{reference}"
        r = self.request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            what=what,
            scopes=(_pull_scope(repo),),
            headers={"Accept": ", ".join(accept)},
            limit=MAX_MANIFEST,
        )
        raw = r.data
        digest = _digest_of(raw, reference if ":" in reference else None)
        if ":" in reference and digest != reference:
            raise DigestMismatch(f"{what}: content has digest {digest}", expected=reference, actual=digest)
        media_type = r.headers.get("Content-Type", "").split(";", 1)[0].strip()
        if not media_type or media_type in ("application/json", "text/plain"):
            with contextlib.suppress(ValueError, AttributeError):
                media_type = str(json.loads(raw).get("mediaType") or media_type)
        return ManifestResponse(raw, media_type, digest)

    def head_manifest(self, repo: str, reference: str) -> tuple[str, int, str] | None:
        """``(digest, size, media_type)`` of a manifest, or None when the registry does not have it."""
        what = f"head manifest {self.registry}/{repo}{_sep(reference)}{reference}"
        r = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            what=what,
            scopes=(_pull_scope(repo),),
            headers={"Accept": ", ".join(MANIFEST_ACCEPT)},
            ok=(200, 404),
        )
        if r.status == 404:
            return None
        digest = r.headers.get("Docker-Content-Digest", "")
        return digest, int(r.headers.get("Content-Length", "0")), r.headers.get("Content-Type", "")

    def blob_size(self, repo: str, digest: str, *, push: bool = False) -> int | None:
        """The size of a blob the registry has, or None when it has not."""
        scope = _push_scope(repo) if push else _pull_scope(repo)
        r = self.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", what=f"head blob {self.registry}/{repo}@{digest}",
            scopes=(scope,), ok=(200, 404),
        )  # fmt: skip
        if r.status == 404:
            return None
        return int(r.headers.get("Content-Length", "-1"))

    def open_blob(self, repo: str, digest: str, *, offset: int = 0) -> BlobStream:
        """Start streaming a blob, from ``offset`` with a Range request when ``offset > 0``.

        The server may ignore the Range: check :attr:`BlobStream.start` (0 then) before using the bytes.
        """
        headers = {"Range": f"bytes={offset}-"} if offset > 0 else {}
        what = f"get blob {self.registry}/{repo}@{digest}"
        r = self.request(
            "GET", f"/v2/{repo}/blobs/{digest}", what=what, scopes=(_pull_scope(repo),),
            headers=headers, ok=(200, 206, 416), stream=True,
        )  # fmt: skip
        if r.status == 416:
            r.close()
            # The range starts at or past the end: we may already have every byte; let the caller re-check.
            return self.open_blob(repo, digest, offset=0) if offset > 0 else BlobStream(r, 0, 0)
        start = 0
        total = _int(r.headers.get("Content-Length"))
        if r.status == 206:
            cr = r.headers.get("Content-Range", "")
            try:
                start = int(cr.split(" ", 1)[1].split("-", 1)[0])
            except (IndexError, ValueError):
                start = offset
            total = start + total if total is not None else None
        return BlobStream(r, start, total, what=what, low_speed_limit=self.low_speed_limit,
                          low_speed_time=self.low_speed_time)  # fmt: skip

    def open_url(self, url: str, *, offset: int = 0) -> BlobStream:
        """Stream a blob from a URL outside the registry (a foreign layer's ``urls``), from ``offset``.

        Only ``http`` and ``https`` URLs; no ``Authorization`` is ever sent (not on the first hop, not after a
        redirect), whatever host the URL names, and no 401 challenge is answered: registry credentials stay with
        the registry. Redirects are followed by hand (at most 5, http(s) only). The caller checks size and digest.
        """
        what = redact(f"get foreign blob {_strip_query(url)}")
        if urlsplit(url).scheme not in ("http", "https"):
            raise RegistryError(f"{what}: not an http(s) URL")
        headers = {"User-Agent": _USER_AGENT, **({"Range": f"bytes={offset}-"} if offset > 0 else {})}
        try:
            r, final = self._send("GET", url, headers, None, self._deadline())
        except OSError as exc:
            raise RegistryError(f"{what}: {exc}", retryable=True) from None
        if r.status not in (200, 206):
            data = self._read(r, MAX_ERROR_BODY, what, final, self._deadline(), "error body")
            err = error_from_response(what, r.status, data, r.headers)
            if isinstance(err, AuthError):
                raise AuthError(f"{err}; no credentials are sent to foreign layer URLs", status=r.status)
            raise err
        start = 0
        if r.status == 206:
            with contextlib.suppress(IndexError, ValueError):
                start = int(r.headers.get("Content-Range", "").split(" ", 1)[1].split("-", 1)[0])
        total = _int(r.headers.get("Content-Length"))
        return BlobStream(r, start, None if total is None else start + total, what=what,
                          low_speed_limit=self.low_speed_limit, low_speed_time=self.low_speed_time)  # fmt: skip

    def get_blob(self, repo: str, digest: str, *, max_size: int = MAX_CONFIG) -> bytes:
        """A small blob (config) as bytes, at most ``max_size`` bytes, verified against its digest."""
        what = f"get blob {self.registry}/{repo}@{digest}"
        deadline = self._deadline()
        with self.open_blob(repo, digest) as s:
            if s.total is not None and s.total > max_size:
                raise RegistryError(f"{what}: larger than {max_size} bytes (the limit); not read", code="SIZE_LIMIT")
            buf = bytearray()
            for chunk in s.chunks():
                buf += chunk
                if len(buf) > max_size:
                    raise RegistryError(f"{what}: larger than {max_size} bytes (the limit); not read further",
                                        code="SIZE_LIMIT")  # fmt: skip
                if time.monotonic() > deadline:
                    raise RegistryError(f"{what}: not complete within {self.deadline:.0f} s", retryable=True)
        data = bytes(buf)
        actual = _digest_of(data, digest)
        if actual != digest:
            raise DigestMismatch(
                f"get blob {self.registry}/{repo}@{digest}: content has digest {actual}", expected=digest, actual=actual
            )
        return data

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> str | None:
        """Cross-repository mount. None when mounted; else the Location of an upload session to use instead."""
        r = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?{urlencode({'mount': digest, 'from': from_repo})}",
            what=f"mount blob {digest} from {from_repo} into {self.registry}/{repo}",
            scopes=(_push_scope(repo), _pull_scope(from_repo)),
            headers={"Content-Length": "0"},
            ok=(201, 202),
        )
        if r.status == 201:
            return None
        return self._location(r, "mount blob")

    def start_upload(self, repo: str) -> str:
        """Open a blob upload session in ``repo``; returns its absolute upload URL (the ``Location`` header)."""
        r = self.request(
            "POST", f"/v2/{repo}/blobs/uploads/", what=f"start upload to {self.registry}/{repo}",
            scopes=(_push_scope(repo),), headers={"Content-Length": "0"}, ok=(202,),
        )  # fmt: skip
        return self._location(r, "start upload")

    def _location(self, r: Response, what: str) -> str:
        loc = r.headers.get("Location")
        if not loc:
            raise RegistryError(f"{what} {self.registry}: registry answered without a Location header", status=r.status)
        return self._url(loc)

    def upload_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        source: bytes | IO[bytes],
        *,
        location: str | None = None,
        chunk_size: int | None = None,
        on_progress: Any = None,
    ) -> None:
        """Upload a blob: monolithic (one PUT) by default, or in PATCH chunks of ``chunk_size`` bytes."""
        what = f"upload blob {digest} to {self.registry}/{repo}"
        loc = location or self.start_upload(repo)
        scopes = (_push_scope(repo),)
        if chunk_size is None:
            body: bytes | IO[bytes] = source
            if on_progress and not isinstance(source, bytes | bytearray):
                # the bars move while the one PUT streams, not only at its end
                body = cast(IO[bytes], _Counting(source, on_progress))
            r = self.request(
                "PUT", _with_query(loc, {"digest": digest}), what=what, scopes=scopes, body=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}, ok=(201,),
            )  # fmt: skip
            if on_progress:
                on_progress(size)
            return
        offset = 0
        reader = _Reader(source)
        while offset < size:
            chunk = reader.read(min(chunk_size, size - offset))
            if not chunk:
                raise RegistryError(f"{what}: source ended after {offset} of {size} bytes")
            r = self.request(
                "PATCH", loc, what=what, scopes=scopes, body=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(chunk)),
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
                ok=(202, 204),
            )  # fmt: skip
            loc = self._location(r, "upload chunk")
            offset += len(chunk)
            if on_progress:
                on_progress(offset)
        r = self.request(
            "PUT", _with_query(loc, {"digest": digest}), what=what, scopes=scopes,
            headers={"Content-Length": "0"}, ok=(201,),
        )  # fmt: skip

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        """Upload a manifest under a tag or digest; returns its digest (verified against the registry's answer)."""
        what = f"put manifest {self.registry}/{repo}{_sep(reference)}{reference}"
        r = self.request(
            "PUT", f"/v2/{repo}/manifests/{reference}", what=what, scopes=(_push_scope(repo),), body=raw,
            headers={"Content-Type": media_type, "Content-Length": str(len(raw))}, ok=(201,),
        )  # fmt: skip
        digest = _digest_of(raw, None)
        said = r.headers.get("Docker-Content-Digest")
        if said and said != digest:
            raise DigestMismatch(f"{what}: registry stored digest {said}", expected=digest, actual=said)
        return digest

    def list_tags(self, repo: str, *, page_size: int | None = None) -> list[str]:
        """The tags of ``repo``, every page: ``?n=page_size`` when given, then each ``Link: <...>; rel="next"``."""
        return self._paginate(
            f"/v2/{repo}/tags/list", "tags", f"list tags {self.registry}/{repo}", (_pull_scope(repo),), page_size
        )

    def catalog(self, *, page_size: int | None = None) -> list[str]:
        """The repositories the registry lists at ``/v2/_catalog``, every page (``n`` and ``Link`` as for tags)."""
        return self._paginate("/v2/_catalog", "repositories", f"catalog {self.registry}", (_CATALOG_SCOPE,), page_size)

    def _paginate(self, path: str, key: str, what: str, scopes: tuple[str, ...], page_size: int | None) -> list[str]:
        """Follow ``Link`` ``rel="next"`` from ``path`` (distribution spec, "Listing Tags"), at most
        ``_MAX_PAGES`` pages; a page that names itself again, or leaves the registry's host, ends with an error."""
        url = self._url(path + (f"?{urlencode({'n': page_size})}" if page_size else ""))
        out: list[str] = []
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            seen.add(url)
            r = self.request("GET", url, what=what, scopes=scopes, limit=MAX_LIST_PAGE)
            try:
                data = json.loads(r.data)
                items = data.get(key) or []
                if not isinstance(items, list):
                    raise ValueError(key)
            except (ValueError, AttributeError, UnicodeDecodeError):
                raise RegistryError(f"{what}: answer is not a list of {key}") from None
            out += [str(t) for t in items]
            nxt = _next_link(r.headers.get("Link", ""))
            if nxt is None:
                return out
            url = urljoin(url, nxt)
            if urlsplit(url).netloc != self.host:
                raise RegistryError(redact(f"{what}: next page {_strip_query(url)} is not on {self.registry}"))
            if url in seen:
                raise RegistryError(f"{what}: the registry's next page repeats a page already read")
        raise RegistryError(f"{what}: more than {_MAX_PAGES} pages")

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete a manifest by digest (``DELETE /v2/<repo>/manifests/<digest>``; the spec allows no tag here).

        Raises:
            UnsupportedOperation: the registry refuses deletes (405 ``UNSUPPORTED``: docker-registry without
                ``storage: delete: enabled: true``).
            NotFound: the registry has no such manifest.
        """
        what = f"delete manifest {self.registry}/{repo}@{digest}"
        try:
            self.request(
                "DELETE", f"/v2/{repo}/manifests/{digest}", what=what, scopes=(_delete_scope(repo),),
                ok=(200, 202, 204),
            )  # fmt: skip
        except UnsupportedOperation as e:
            raise UnsupportedOperation(
                f"{e}; the registry does not allow deletes (docker-registry needs `storage: delete: enabled: true`"
                " in its config)",
                status=e.status,
                code=e.code,
            ) from None

    def cancel_upload(self, location: str, repo: str) -> None:
        """Cancel an upload session (``DELETE <location>``); best effort, errors are ignored: the registry also
        expires abandoned sessions on its own."""
        with contextlib.suppress(RegistryError, OSError):
            self.request("DELETE", location, what=f"cancel upload to {self.registry}/{repo}",
                         scopes=(_push_scope(repo),), ok=(200, 202, 204, 404))  # fmt: skip


def _next_link(header: str) -> str | None:
    """The target of ``rel="next"`` in a ``Link`` header (RFC 8288), or None."""
    for part in header.split(","):
        target, _, params = part.strip().partition(";")
        target = target.strip()
        if not (target.startswith("<") and target.endswith(">")):
            continue
        rels = [p.strip() for p in params.split(";")]
        if any(p.replace(" ", "").lower() in ('rel="next"', "rel=next") for p in rels):
            return target[1:-1]
    return None


class _Reader:
    def __init__(self, source: bytes | IO[bytes]) -> None:
        self._src = source
        self._pos = 0

    def read(self, n: int) -> bytes:
        if isinstance(self._src, bytes | bytearray):
            out = bytes(self._src[self._pos : self._pos + n])
            self._pos += len(out)
            return out
        return self._src.read(n)


def _strip_query(url: str) -> str:
    """``url`` without its query (signed CDN URLs carry secrets there) for messages."""
    return url.split("?", 1)[0]


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _sep(reference: str) -> str:
    return "@" if ":" in reference else ":"


def _with_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _digest_of(data: bytes, expected: str | None) -> str:
    if expected is not None and not expected.startswith("sha256:"):
        raise InvalidDigest(f"digest {expected!r}: only sha256 is supported")
    return str(_sha256(data))


class _Counting(io.RawIOBase):
    """A binary reader that reports the bytes read so far (upload progress); seeks pass through (retries)."""

    def __init__(self, inner: IO[bytes], report: Any) -> None:
        super().__init__()
        self._inner = inner
        self._report = report
        self._start = inner.tell()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._report(self._inner.tell() - self._start)
        return data

    def tell(self) -> int:
        return self._inner.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)
