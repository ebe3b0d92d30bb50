"""Image references, parsed and normalised as docker does.

``mysql`` is ``docker.io/library/mysql:latest``; ``host:5000/ns/repo:tag`` keeps its registry;
``name@sha256:…`` pins a digest. The grammar is distribution/reference's; a malformed reference raises
:class:`~imgcore.errors.InvalidReference` that says which part is wrong, and nothing else: not a ``TypeError`` for
a non-string, not a ``UnicodeEncodeError`` for a lone surrogate. The grammar is ASCII only, as Go's RE2 reads it,
and a reference longer than :data:`MAX_REFERENCE` characters is refused before any pattern runs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace

from imgcore._core import Digest
from imgcore.errors import InvalidDigest, InvalidReference

__all__ = ["DEFAULT_DOMAIN", "DEFAULT_TAG", "Reference", "parse"]

DEFAULT_DOMAIN = "docker.io"
"""The registry of a reference that names none (``mysql`` is ``docker.io/library/mysql``)."""
DEFAULT_TAG = "latest"
"""The tag of a reference that has neither tag nor digest, as ``docker pull`` adds it."""
LEGACY_DOMAINS = frozenset({"index.docker.io", "registry-1.docker.io"})
OFFICIAL_NAMESPACE = "library"
MAX_NAME = 255
MAX_REFERENCE = 1024  # name (255) + tag (128) + the longest digest (sha512: 135), with room to spare

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?")
_HEX64 = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """``domain/path``, the name a registry and the store key images by."""
        return f"{self.domain}/{self.path}"

    name = repository

    @property
    def familiar_repository(self) -> str:
        """The short form docker prints: ``mysql`` for ``docker.io/library/mysql``."""
        if self.domain == DEFAULT_DOMAIN:
            prefix = OFFICIAL_NAMESPACE + "/"
            rest = self.path[len(prefix) :]
            # docker.io/library/a/b stays library/a/b: "a/b" would read back as docker.io/a/b (docker's
            # familiarizeName drops the prefix only when no "/" is left).
            return rest if self.path.startswith(prefix) and "/" not in rest else self.path
        return self.repository

    @property
    def familiar(self) -> str:
        """``familiar_repository`` plus tag and digest, as docker prints references."""
        return self.familiar_repository + self._suffix()

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    def __str__(self) -> str:
        return self.repository + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """This repository with ``tag`` and no digest.

        Raises:
            InvalidReference: ``tag`` is not a valid tag (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``).
        """
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise InvalidReference(f"invalid tag {tag!r}: must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        """This reference pinned to ``digest`` (its tag, if any, is kept).

        Raises:
            InvalidReference: ``digest`` is not a valid digest.
        """
        return replace(self, digest=_check_digest(digest, str(self)))

    def tagged(self) -> Reference:
        """This reference with ``latest`` when it has neither tag nor digest (docker's default)."""
        if self.tag is None and self.digest is None:
            return replace(self, tag=DEFAULT_TAG)
        return self


def _check_digest(digest: str, where: str) -> str:
    if not isinstance(digest, str) or not digest.isascii():
        raise InvalidReference(f"invalid reference {where!r}: invalid digest {digest!r}")
    try:
        return str(Digest(digest))
    except InvalidDigest as e:
        raise InvalidReference(f"invalid reference {where!r}: {e}") from None


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parses ``text`` into a normalised :class:`Reference`.

    With ``default_tag`` (the default) a reference with neither tag nor digest gets ``latest``, as ``docker pull``
    does.
    """
    if isinstance(text, str):
        return _parse_cached(text, default_tag)  # references are values: listing 1,000 tags parses each once
    return _parse(text, default_tag=default_tag)


@functools.lru_cache(maxsize=8192)
def _parse_cached(text: str, default_tag: bool) -> Reference:
    return _parse(text, default_tag=default_tag)


def _parse(text: str, *, default_tag: bool = True) -> Reference:
    if not isinstance(text, str):
        raise InvalidReference(f"invalid reference: expected a string, got {type(text).__name__}")
    if not text:
        raise InvalidReference("invalid reference: empty")
    if len(text) > MAX_REFERENCE:
        raise InvalidReference(f"invalid reference {text[:40]!r}…: longer than {MAX_REFERENCE} characters")
    if not text.isascii():
        raise InvalidReference(f"invalid reference {text!r}: only ASCII characters are allowed")
    if _HEX64.fullmatch(text):
        raise InvalidReference(
            f"invalid reference {text!r}: cannot use a 64-character hex string (an image ID) as a name"
        )
    rest, digest = text, None
    if "@" in rest:
        rest, _, digest_text = rest.partition("@")
        digest = _check_digest(digest_text, text)
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"invalid reference {text!r}: invalid tag {tag!r}")
    if not rest:
        raise InvalidReference(f"invalid reference {text!r}: empty repository name")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, path = first, remainder
        if not _DOMAIN.fullmatch(domain):
            raise InvalidReference(f"invalid reference {text!r}: invalid registry host {domain!r}")
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            why = "must be lowercase" if component.lower() != component else "has an invalid component"
            raise InvalidReference(f"invalid reference {text!r}: repository name {why} ({component!r})")
    if len(domain) + 1 + len(path) > MAX_NAME:
        raise InvalidReference(f"invalid reference {text!r}: repository name longer than {MAX_NAME} characters")
    ref = Reference(domain=domain, path=path, tag=tag, digest=digest)
    return ref.tagged() if default_tag else ref
