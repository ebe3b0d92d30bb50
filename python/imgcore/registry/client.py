"""A client for the OCI distribution protocol (``/v2/...``), over urllib3 with connection pooling and streaming.

One :class:`RegistryClient` talks to one registry host and is safe to share between threads (urllib3's pools are).

Transport policy, as docker's:

- HTTPS with the system's CAs, or a given CA file.
- Registries that are *insecure* -- loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``) and hosts named in
  ``insecure`` or ``$IMGCORE_INSECURE_REGISTRIES`` -- are tried over HTTPS first, then HTTPS without certificate
  verification, then plain HTTP. The first that answers ``/v2/`` is kept.
- Retries with exponential backoff (and ``Retry-After``) on 5xx, 429 and dropped connections; redirects are followed
  by hand so that the ``Authorization`` header never travels to another host.
- Error bodies (``{"errors": [{"code", "message", "detail"}]}``) become :class:`~imgcore.errors.RegistryError`
  subclasses carrying what the registry said. Credentials never appear in messages: see :func:`.auth.redact`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Final, Literal
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import InsecureRequestWarning, SSLError

from imgcore import sha256 as _sha256
from imgcore.errors import AuthError, DigestMismatch, InvalidDigest, NotFound, RateLimited, RegistryError
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
_RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_USER_AGENT: Final = "imgcore"
_HUB_API: Final = "registry-1.docker.io"
_CHUNK: Final = 1 << 20


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
    return RegistryError(message, status=status, code=code, retryable=status >= 500 or status == 408)


@dataclass(frozen=True)
class ManifestResponse:
    """A manifest or index as the registry served it: its raw bytes, media type and (computed) digest."""

    raw: bytes
    media_type: str
    digest: str

    @property
    def size(self) -> int:
        return len(self.raw)


class BlobStream:
    """A streaming blob body. ``start`` is the offset of its first byte (non-zero only when a Range was honoured)."""

    def __init__(self, response: urllib3.BaseHTTPResponse, start: int, total: int | None) -> None:
        self._response = response
        self.start = start
        self.total = total

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        """Yield the body in chunks. Dropped connections raise :class:`RegistryError` with ``retryable=True``."""
        try:
            while True:
                data = self._response.read1(size, decode_content=False)
                if not data:
                    return
                yield data
        except (Urllib3HTTPError, OSError) as exc:
            raise RegistryError(
                redact(f"download: connection lost: {exc.__class__.__name__}: {exc}"), retryable=True
            ) from None

    def close(self) -> None:
        self._response.release_conn()
        with contextlib.suppress(Exception):
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


class RegistryClient:
    """Distribution-spec client for one registry host.

    Args:
        registry: ``host[:port]`` as in a reference's domain (``docker.io`` is mapped to its API host).
        credentials: explicit credentials, ``None`` for anonymous, or ``"auto"`` to look them up as ``docker`` would.
        insecure: extra host names that may use plain HTTP / unverified TLS (loopback always may).
        ca_file: a PEM bundle to verify the registry's certificate against instead of the system's CAs.
        retries: how many times a request is retried on 5xx, 429 and dropped connections.
        backoff: base delay of the exponential backoff, in seconds.
        timeout: connect and read timeout, in seconds.
        pool_size: connections kept per host (use at least the number of parallel downloads).
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
    ) -> None:
        self.registry = normalize_registry(registry)
        self.host = registry_host(self.registry)
        self.insecure = is_insecure_host(self.host, insecure) or is_insecure_host(self.registry, insecure)
        self.credentials = load_credentials(self.registry) if credentials == "auto" else credentials
        self.retries = retries
        self.backoff = backoff
        self._timeout = urllib3.Timeout(connect=min(timeout, 30.0), read=timeout)
        self._ca_file = os.fspath(ca_file) if ca_file is not None else None
        self._pool_size = pool_size
        self._verified = urllib3.PoolManager(
            num_pools=8, maxsize=pool_size, cert_reqs="CERT_REQUIRED", ca_certs=self._ca_file, retries=False
        )
        self._unverified: urllib3.PoolManager | None = None
        self._base: str | None = f"{scheme}://{self.host}" if scheme else None
        self._verify = True
        self._lock = threading.Lock()
        self._tokens = TokenCache()
        self._challenge: Challenge | None = None

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r}, base={self._base!r})"

    # ------------------------------------------------------------------------------------------ transport

    def _pool(self, verify: bool) -> urllib3.PoolManager:
        if verify:
            return self._verified
        if self._unverified is None:
            # NOTE: only reached for registries the user (or loopback) marked insecure, as docker does.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            self._unverified = urllib3.PoolManager(
                num_pools=8, maxsize=self._pool_size, cert_reqs="CERT_NONE", retries=False
            )
        return self._unverified

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
                try:
                    url = f"{scheme}://{self.host}/v2/"
                    r = self._pool(verify).request("GET", url, timeout=self._timeout, redirect=False)
                except SSLError as exc:
                    last = exc
                    continue
                except (Urllib3HTTPError, OSError) as exc:
                    last = exc
                    if self.insecure:
                        continue
                    break
                if r.status in _RETRY_STATUS:
                    last = error_from_response(f"ping {self.registry}", r.status, r.data, r.headers)
                    break
                if scheme == "http" and r.status == 400 and b"HTTPS" in r.data:
                    continue
                return f"{scheme}://{self.host}", verify
            if isinstance(last, SSLError):
                break  # a certificate problem does not go away by asking again
            if attempt < self.retries:
                time.sleep(_backoff(attempt, self.backoff))
        if isinstance(last, RegistryError):
            raise last
        if isinstance(last, SSLError):
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
        headers = {"User-Agent": _USER_AGENT}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic_header()
        split = urlsplit(url)
        verify = self._verify if split.netloc == self.host else True
        what = f"auth {self.registry}: token from {split.scheme}://{split.netloc}{split.path}"
        for attempt in range(self.retries + 1):
            try:
                r = self._pool(verify).request("GET", url, headers=headers, timeout=self._timeout, redirect=True)
            except (Urllib3HTTPError, OSError) as exc:
                if attempt < self.retries:
                    time.sleep(_backoff(attempt, self.backoff))
                    continue
                raise RegistryError(redact(f"{what}: {exc.__class__.__name__}: {exc}"), retryable=True) from None
            if r.status in _RETRY_STATUS and attempt < self.retries:
                time.sleep(_backoff(attempt, self.backoff))
                continue
            if r.status in (401, 403):
                who = "the credentials were refused" if self.credentials else "anonymous access was refused"
                err = error_from_response(f"{what}: {who}", r.status, r.data, r.headers)
                raise AuthError(str(err), status=r.status, code=err.code)
            if r.status != 200:
                raise error_from_response(what, r.status, r.data, r.headers)
            token, expires = token_from_response(self.registry, r.data)
            self._tokens.put(realm, scope_set, token, expires)
            return token
        raise AssertionError("unreachable")  # pragma: no cover

    def _on_unauthorized(
        self, r: urllib3.BaseHTTPResponse, scopes: tuple[str, ...], what: str, sent: str | None
    ) -> bool:
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
    ) -> urllib3.BaseHTTPResponse:
        """Send one request with auth, redirects and retries; return the response (body unread when ``stream``)."""
        ok_set = frozenset(ok)
        url = self._url(path_or_url)
        body_pos = body.tell() if body is not None and not isinstance(body, bytes | bytearray) else None
        auth_rounds = 0
        attempt = 0
        while True:
            hdrs = {"User-Agent": _USER_AGENT, **(headers or {})}
            auth = self._auth_header(scopes)
            if auth:
                hdrs["Authorization"] = auth
            if body_pos is not None and body is not None and not isinstance(body, bytes | bytearray):
                body.seek(body_pos)
            try:
                r = self._send(method, url, hdrs, body, stream)
            except (Urllib3HTTPError, OSError) as exc:
                if attempt < self.retries:
                    time.sleep(_backoff(attempt, self.backoff))
                    attempt += 1
                    continue
                raise RegistryError(
                    redact(f"{what}: connection to {self.registry} failed: {exc.__class__.__name__}: {exc}"),
                    retryable=True,
                ) from None
            if r.status in ok_set:
                return r
            data = _drain(r)
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
        self, method: str, url: str, headers: dict[str, str], body: bytes | IO[bytes] | None, stream: bool
    ) -> urllib3.BaseHTTPResponse:
        pool = self._pool(self._verify)
        origin = urlsplit(url).netloc
        for _ in range(6):
            r = pool.request(
                method,
                url,
                headers=headers,
                body=body,
                timeout=self._timeout,
                redirect=False,
                preload_content=not stream,
                decode_content=False,
            )
            if r.status not in (301, 302, 303, 307, 308) or "Location" not in r.headers:
                return r
            _drain(r)
            url = urljoin(url, r.headers["Location"])
            if urlsplit(url).netloc != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                pool = self._verified if urlsplit(url).scheme == "https" else pool
            if r.status == 303 or (r.status in (301, 302) and method == "POST"):
                method, body = "GET", None
        raise RegistryError(redact(f"{method} {url}: too many redirects"))

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
        )
        raw = bytes(r.data)
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
            _drain(r)
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
        return BlobStream(r, start, total)

    def get_blob(self, repo: str, digest: str, *, max_size: int = 64 << 20) -> bytes:
        """A small blob (config) as bytes, verified against its digest."""
        with self.open_blob(repo, digest) as s:
            buf = bytearray()
            for chunk in s.chunks():
                buf += chunk
                if len(buf) > max_size:
                    raise RegistryError(f"get blob {self.registry}/{repo}@{digest}: larger than {max_size} bytes")
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
        _drain(r)
        if r.status == 201:
            return None
        return self._location(r, "mount blob")

    def start_upload(self, repo: str) -> str:
        r = self.request(
            "POST", f"/v2/{repo}/blobs/uploads/", what=f"start upload to {self.registry}/{repo}",
            scopes=(_push_scope(repo),), headers={"Content-Length": "0"}, ok=(202,),
        )  # fmt: skip
        _drain(r)
        return self._location(r, "start upload")

    def _location(self, r: urllib3.BaseHTTPResponse, what: str) -> str:
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
            r = self.request(
                "PUT", _with_query(loc, {"digest": digest}), what=what, scopes=scopes, body=source,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}, ok=(201,),
            )  # fmt: skip
            _drain(r)
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
            _drain(r)
            loc = self._location(r, "upload chunk")
            offset += len(chunk)
            if on_progress:
                on_progress(offset)
        r = self.request(
            "PUT", _with_query(loc, {"digest": digest}), what=what, scopes=scopes,
            headers={"Content-Length": "0"}, ok=(201,),
        )  # fmt: skip
        _drain(r)

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        """Upload a manifest under a tag or digest; returns its digest (verified against the registry's answer)."""
        what = f"put manifest {self.registry}/{repo}{_sep(reference)}{reference}"
        r = self.request(
            "PUT", f"/v2/{repo}/manifests/{reference}", what=what, scopes=(_push_scope(repo),), body=raw,
            headers={"Content-Type": media_type, "Content-Length": str(len(raw))}, ok=(201,),
        )  # fmt: skip
        _drain(r)
        digest = _digest_of(raw, None)
        said = r.headers.get("Docker-Content-Digest")
        if said and said != digest:
            raise DigestMismatch(f"{what}: registry stored digest {said}", expected=digest, actual=said)
        return digest

    def list_tags(self, repo: str) -> list[str]:
        r = self.request(
            "GET", f"/v2/{repo}/tags/list", what=f"list tags {self.registry}/{repo}", scopes=(_pull_scope(repo),)
        )
        try:
            tags = json.loads(r.data).get("tags") or []
        except (ValueError, AttributeError):
            raise RegistryError(f"list tags {self.registry}/{repo}: answer is not a tag list") from None
        return [str(t) for t in tags]


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


def _drain(r: urllib3.BaseHTTPResponse) -> bytes:
    try:
        data = bytes(r.data) if r.data is not None else b""
    except (Urllib3HTTPError, OSError):
        data = b""
    r.release_conn()
    return data


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
