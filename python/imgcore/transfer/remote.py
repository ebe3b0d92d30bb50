"""Registry-side operations that never touch the store: manifest, config, digest, tags, catalog, delete.

These are crane's ``manifest``/``config``/``digest``/``ls``/``catalog``/``delete`` over imgcore's own registry
client. :class:`Clients` hands out one :class:`~imgcore.registry.client.RegistryClient` per registry host, so
every call to the same host shares its keep-alive connections and its bearer tokens.

Invariants:
- nothing here writes to a store or to disk;
- what is returned is what the registry served, verified: a manifest asked for by digest hashes to it, a
  config blob hashes to the digest its manifest names, a digest from ``Docker-Content-Digest`` is well formed
  and, when the reference pins one, equal to it (a registry that sends no such header is asked with GET and the
  bytes are hashed);
- a delete is by digest (the distribution spec accepts no tag there): a tag is resolved with one HEAD first;
- credentials for a host go only to that host's client (the client's own rule: ``Authorization`` only to its
  own host).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from imgcore._core import Digest
from imgcore._json import MANIFEST_LIMIT
from imgcore.errors import DigestMismatch, InvalidArgument, InvalidDigest, InvalidManifest, InvalidReference, NotFound
from imgcore.models import Index, Manifest, Platform, parse_manifest_or_index
from imgcore.reference import Reference
from imgcore.reference import parse as parse_reference
from imgcore.registry.auth import Credentials, normalize_registry
from imgcore.registry.client import ManifestResponse, RegistryClient

__all__ = [
    "Clients",
    "RemoteImage",
    "catalog",
    "config",
    "delete",
    "digest",
    "list_tags",
    "manifest",
    "parse_platform",
    "parse_registry",
    "parse_repository",
    "resolve",
]


class Clients:
    """One :class:`RegistryClient` per registry host, created on first use and shared by every call after.

    Args:
        insecure: extra hosts that may use plain HTTP / unverified TLS (loopback always may).
        ca_file: PEM bundle to verify registry certificates with.
        credentials: per-registry credentials (``host[:port]`` -> :class:`Credentials`); a registry not named
            here gets what ``imgcore login`` or docker's ``config.json`` has for it.
        pool_size: connections kept per host (at least the number of parallel transfers).
    """

    def __init__(
        self,
        *,
        insecure: Iterable[str] = (),
        ca_file: str | os.PathLike[str] | None = None,
        credentials: Mapping[str, Credentials | None] | None = None,
        pool_size: int = 10,
    ) -> None:
        self.insecure = tuple(insecure)
        self.ca_file = ca_file
        self._credentials = {normalize_registry(k): v for k, v in (credentials or {}).items()}
        self.pool_size = pool_size
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def get(self, domain: str) -> RegistryClient:
        """The client for ``domain`` (``host[:port]``), made once."""
        key = normalize_registry(domain)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                creds: Credentials | Literal["auto"] | None = self._credentials.get(key, "auto")
                client = RegistryClient(
                    key, credentials=creds, insecure=self.insecure, ca_file=self.ca_file, pool_size=self.pool_size
                )
                self._clients[key] = client
            return client

    def add(self, client: RegistryClient) -> None:
        """Use ``client`` for its registry from now on (a caller's own client, with its own credentials)."""
        with self._lock:
            self._clients[client.registry] = client

    def close(self) -> None:
        """Close every client's idle connections."""
        with self._lock:
            clients = list(self._clients.values())
        for c in clients:
            c.close()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class RemoteImage:
    """A reference resolved on its registry: the manifest it names (for an index, the platform's manifest).

    ``top`` is what the reference itself names (an index for a multi-platform image), ``manifest`` the image
    manifest chosen, ``index`` the parsed index or None.
    """

    reference: Reference
    top: ManifestResponse
    manifest: Manifest
    index: Index | None


def parse_platform(platform: str | Platform | None) -> Platform:
    """``os/arch[/variant]`` (or a :class:`Platform`) as a :class:`Platform`; None is the host's."""
    if isinstance(platform, Platform):
        return platform
    if platform is None:
        return Platform.host()
    return Platform.parse(platform)


def parse_repository(text: str | Reference, what: str = "repository") -> Reference:
    """A repository name (``host/ns/app``), with no tag and no digest."""
    r = parse_reference(text, default_tag=False) if isinstance(text, str) else text
    if r.tag is not None or r.digest is not None:
        raise InvalidReference(f"{what} {str(text)!r}: give a repository without a tag or digest")
    return r


def parse_registry(text: str) -> str:
    """A registry name (``host[:port]``, optionally with a ``https://`` or ``http://`` prefix and no path)."""
    host = text.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    host = host.rstrip("/")
    if not host or "/" in host or "@" in host:
        raise InvalidArgument(f"registry {text!r}: expected host[:port]")
    return normalize_registry(host)


def _ref(ref: str | Reference) -> Reference:
    return parse_reference(ref) if isinstance(ref, str) else ref.tagged()


def _target(r: Reference) -> str:
    return r.digest or r.tag or "latest"


def manifest(ref: str | Reference, clients: Clients) -> ManifestResponse:
    """The manifest or index ``ref`` names, as the registry serves it (``crane manifest``): raw bytes, verified
    against the digest when ``ref`` pins one."""
    r = _ref(ref)
    return clients.get(r.domain).get_manifest(r.path, _target(r))


def resolve(ref: str | Reference, clients: Clients, *, platform: str | Platform | None = None) -> RemoteImage:
    """``ref`` on its registry down to an image manifest: an index is resolved to ``platform`` (the host's by
    default) and the chosen manifest fetched by digest (and so verified)."""
    r = _ref(ref)
    client = clients.get(r.domain)
    top = client.get_manifest(r.path, _target(r))
    doc = parse_manifest_or_index(top.raw, top.media_type or None, where=f"{r}: manifest", limit=MANIFEST_LIMIT)
    if isinstance(doc, Manifest):
        return RemoteImage(r, top, doc, None)
    chosen = doc.for_platform(parse_platform(platform))
    child = client.get_manifest(r.path, chosen.digest)
    m = parse_manifest_or_index(child.raw, child.media_type or None, where=f"{r}@{chosen.digest}: manifest",
                                limit=MANIFEST_LIMIT)  # fmt: skip
    if not isinstance(m, Manifest):
        raise InvalidManifest(f"{r}: index entry {chosen.digest} for {chosen.platform} is an index, not an image")
    return RemoteImage(r, top, m, doc)


def config(ref: str | Reference, clients: Clients, *, platform: str | Platform | None = None) -> bytes:
    """The config blob of ``ref``'s image (``crane config``), for ``platform`` when ``ref`` is an index; the
    bytes are checked against the manifest's config digest and size."""
    img = resolve(ref, clients, platform=platform)
    desc = img.manifest.config
    raw = clients.get(img.reference.domain).get_blob(img.reference.path, desc.digest)
    if len(raw) != desc.size:
        raise InvalidManifest(
            f"{img.reference}: config {desc.digest} is {len(raw)} bytes, the manifest says {desc.size}"
        )
    return raw


def digest(ref: str | Reference, clients: Clients, *, platform: str | Platform | None = None) -> str:
    """The digest ``ref`` names (``crane digest``): one HEAD, its ``Docker-Content-Digest``.

    With ``platform`` and an index, the digest of that platform's manifest instead (one GET of the index). A
    registry that sends no (or a malformed) ``Docker-Content-Digest`` is asked with GET and the bytes hashed.
    """
    r = _ref(ref)
    client = clients.get(r.domain)
    if platform is not None:
        img = resolve(r, clients, platform=platform)
        return img.manifest.digest
    head = client.head_manifest(r.path, _target(r))
    if head is None:
        raise NotFound(f"digest {r}: the registry has no such manifest", status=404, code="MANIFEST_UNKNOWN")
    said = head[0]
    try:
        said = str(Digest(said)) if said else ""
    except InvalidDigest:
        said = ""
    if not said:
        said = client.get_manifest(r.path, _target(r)).digest
    if r.digest is not None and said != r.digest:
        raise DigestMismatch(f"digest {r}: the registry says {said}", expected=r.digest, actual=said)
    return said


def list_tags(repo: str | Reference, clients: Clients, *, page_size: int | None = None) -> list[str]:
    """Every tag of ``repo`` (``crane ls``), in the registry's order, following ``Link`` pages (``?n=page_size``)."""
    r = parse_repository(repo)
    return clients.get(r.domain).list_tags(r.path, page_size=page_size)


def catalog(registry: str, clients: Clients, *, page_size: int | None = None) -> list[str]:
    """Every repository the registry lists at ``/v2/_catalog`` (``crane catalog``), following ``Link`` pages."""
    return clients.get(parse_registry(registry)).catalog(page_size=page_size)


def delete(ref: str | Reference, clients: Clients) -> str:
    """Delete the manifest ``ref`` names from its registry (``crane delete``); returns the digest deleted.

    A tag is resolved to its digest with one HEAD first; every tag naming that manifest goes with it (the
    registry's rule). Raises :class:`~imgcore.errors.UnsupportedOperation` where the registry refuses deletes.
    """
    r = _ref(ref)
    d = digest(r, clients)
    clients.get(r.domain).delete_manifest(r.path, d)
    return d
