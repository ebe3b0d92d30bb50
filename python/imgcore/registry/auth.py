"""Registry credentials and authentication challenges.

Credentials come from imgcore's own ``config.json`` (written by ``imgcore login``; in ``$IMGCORE_CONFIG`` or
``~/.config/imgcore``) and then from the docker client's ``config.json`` (``$DOCKER_CONFIG`` or ``~/.docker``). Both
use docker's format: ``{"auths": {"<registry>": {"auth": base64("user:password")}}}``.

Authentication follows the distribution spec: a request is sent as is; a ``401`` carries a ``WWW-Authenticate``
challenge, either ``Basic realm=...`` or ``Bearer realm=...,service=...,scope=...``; for Bearer a token is fetched
from the realm (with basic credentials when we have some) and cached per scope. Credentials and tokens never appear
in a ``repr``, a message or a log line: :func:`redact` scrubs URLs and headers.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgcore.errors import AuthError, RegistryError

__all__ = [
    "DOCKER_HUB_AUTH_KEY",
    "Challenge",
    "Credentials",
    "TokenCache",
    "config_dir",
    "docker_config_path",
    "imgcore_config_path",
    "load_credentials",
    "normalize_registry",
    "parse_www_authenticate",
    "redact",
    "remove_credentials",
    "save_credentials",
]

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
"""The ``auths`` key Docker Hub's credentials are stored under in ``config.json``, as ``docker login`` writes it."""
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


@dataclass(frozen=True)
class Credentials:
    """A user name and a password (or an identity token). Both are kept out of ``repr``."""

    username: str = field(repr=False)
    password: str = field(repr=False)

    def basic_header(self) -> str:
        """The ``Authorization`` value for HTTP Basic: ``Basic base64(username:password)``."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return "Credentials(username=<redacted>, password=<redacted>)"


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``scheme`` in lowercase (``basic``/``bearer``) and its parameters."""

    scheme: str
    params: dict[str, str]


# --------------------------------------------------------------------------------------------------- redaction

# NOTE: patterns are compiled on first use (functools.cache), not at import: `imgcore pull` starts faster.


@functools.cache
def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


_URL_USERINFO = r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@"
_SECRET_QUERY = r"(?i)(?P<key>[?&](?:password|passwd|token|access_token|refresh_token|secret|sig|signature)=)[^&\s#]+"
_AUTH_HEADER = r"(?i)(?P<key>\b(?:basic|bearer)\s+)[A-Za-z0-9._~+/=-]{8,}"


def redact(text: str) -> str:
    """Return ``text`` with credentials in URLs, secret query parameters and Authorization values replaced."""
    text = _rx(_URL_USERINFO).sub(r"\g<scheme><redacted>@", text)
    text = _rx(_SECRET_QUERY).sub(r"\g<key><redacted>", text)
    return _rx(_AUTH_HEADER).sub(r"\g<key><redacted>", text)


# ------------------------------------------------------------------------------------------------ challenges

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*,?'
_SCHEME = rf"\s*({_TOKEN})(?:\s+|$|(?=,))"
_TOKEN68 = r"\s*([A-Za-z0-9._~+/-]+=*)\s*(?:,|$)"
_QUOTED_PAIR = r"\\(.)"
MAX_CHALLENGE_HEADER = 64 * 1024


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header into its challenges (RFC 7235, as registries send them).

    Lenient as browsers are: what cannot be parsed ends the list (a challenge already read is kept). A
    challenge may carry a token68 instead of parameters (``Negotiate abc==``); it is skipped, not stored.
    The only exception raised is :class:`~imgcore.errors.AuthError`, for a header over 64 KiB.

    >>> parse_www_authenticate('Bearer realm="https://a/token",service="reg",scope="repository:x:pull"')[0].params["scope"]
    'repository:x:pull'
    """
    if not isinstance(header, str):
        raise AuthError(f"WWW-Authenticate: expected text, got {type(header).__name__}")
    if len(header) > MAX_CHALLENGE_HEADER:
        raise AuthError(f"WWW-Authenticate: header of {len(header)} characters is over {MAX_CHALLENGE_HEADER}")
    scheme_rx, param_rx, token68_rx, pair_rx = _rx(_SCHEME), _rx(_PARAM), _rx(_TOKEN68), _rx(_QUOTED_PAIR, re.DOTALL)
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        while pos < len(header) and header[pos] in " \t,":
            pos += 1
        m = scheme_rx.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        t68 = token68_rx.match(header, pos)
        if t68 and not param_rx.match(header, pos):
            pos = t68.end()
        while pos < len(header):
            pm = param_rx.match(header, pos)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params.setdefault(pm.group(1).lower(), pair_rx.sub(r"\1", value))
            pos = pm.end()
        challenges.append(Challenge(scheme, params))
    return challenges


# ------------------------------------------------------------------------------------------------ config files


def config_dir() -> Path:
    """imgcore's configuration directory: ``$IMGCORE_CONFIG``, else ``$XDG_CONFIG_HOME/imgcore`` (~/.config)."""
    env = os.environ.get("IMGCORE_CONFIG")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "imgcore"


def imgcore_config_path() -> Path:
    """imgcore's own credentials file: ``config.json`` in :func:`config_dir`."""
    return config_dir() / "config.json"


def docker_config_path() -> Path:
    """The docker client's credentials file: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ.get("DOCKER_CONFIG")
    return (Path(env) if env else Path.home() / ".docker") / "config.json"


def normalize_registry(registry: str) -> str:
    """The host[:port] a config key or a reference names: ``https://index.docker.io/v1/`` -> ``docker.io``."""
    host = registry.strip()
    host = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", host)
    host = host.split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB_NAMES else host


def _auth_key(registry: str) -> str:
    host = normalize_registry(registry)
    return DOCKER_HUB_AUTH_KEY if host == "docker.io" else host


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise AuthError(f"read credentials {path}: not valid JSON: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise AuthError(f"read credentials {path}: not a JSON object")
    return data


def _decode_entry(path: Path, key: str, entry: Any) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=False).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise AuthError(f"read credentials {path}: entry {key!r}: auth is not base64 of user:password") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError(f"read credentials {path}: entry {key!r}: auth is not base64 of user:password")
        return Credentials(user, password)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret)
    return None


def _lookup(path: Path, registry: str) -> Credentials | None:
    auths = _read_config(path).get("auths")
    if not isinstance(auths, dict):
        return None
    host = normalize_registry(registry)
    for key, entry in auths.items():
        if isinstance(key, str) and normalize_registry(key) == host:
            creds = _decode_entry(path, key, entry)
            if creds is not None:
                return creds
    return None


def load_credentials(registry: str) -> Credentials | None:
    """Credentials for ``registry`` (a host[:port]) from imgcore's config, then docker's; None when neither has any."""
    for path in (imgcore_config_path(), docker_config_path()):
        creds = _lookup(path, registry)
        if creds is not None:
            return creds
    return None


def _write_config(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(data, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


def save_credentials(registry: str, creds: Credentials) -> Path:
    """Store ``creds`` for ``registry`` in imgcore's config.json (mode 0600), as ``docker login`` does."""
    path = imgcore_config_path()
    data = _read_config(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    host = normalize_registry(registry)
    for key in [k for k in auths if normalize_registry(str(k)) == host]:
        del auths[key]
    raw = f"{creds.username}:{creds.password}".encode()
    auths[_auth_key(registry)] = {"auth": base64.b64encode(raw).decode("ascii")}
    data["auths"] = auths
    _write_config(path, data)
    return path


def remove_credentials(registry: str) -> bool:
    """Forget imgcore's stored credentials for ``registry``. True when there were some."""
    path = imgcore_config_path()
    data = _read_config(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return False
    host = normalize_registry(registry)
    keys = [k for k in auths if normalize_registry(str(k)) == host]
    for key in keys:
        del auths[key]
    if keys:
        _write_config(path, data)
    return bool(keys)


# ------------------------------------------------------------------------------------------------ token cache


@dataclass
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens per scope set, thread-safe. A token is reused until 30 s before it expires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, frozenset[str]], _Token] = {}

    def get(self, realm: str, scopes: frozenset[str]) -> str | None:
        """A cached, unexpired token from ``realm`` that covers all of ``scopes``; None when there is none."""
        now = time.monotonic()
        with self._lock:
            for (r, have), tok in self._tokens.items():
                if r == realm and scopes <= have and tok.expires > now:
                    return tok.value
        return None

    def put(self, realm: str, scopes: frozenset[str], value: str, expires_in: float) -> None:
        """Cache ``value`` for ``realm`` and ``scopes``, valid ``expires_in`` seconds from now less 30 s (at
        least 1 s), so it is not sent just as it expires."""
        with self._lock:
            self._tokens[(realm, scopes)] = _Token(value, time.monotonic() + max(expires_in - 30.0, 1.0))


def token_from_response(registry: str, body: bytes) -> tuple[str, float]:
    """Pick ``token``/``access_token`` and ``expires_in`` out of a token endpoint's JSON answer."""
    try:
        data = json.loads(body)
    except ValueError:
        raise RegistryError(f"auth {registry}: token endpoint answered with something that is not JSON") from None
    if not isinstance(data, dict):
        raise RegistryError(f"auth {registry}: token endpoint answered with something that is not a JSON object")
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryError(f"auth {registry}: token endpoint answered without a token")
    expires = data.get("expires_in")
    return token, float(expires) if isinstance(expires, int | float) and expires > 0 else 60.0
