"""Where blobs came from, and the registry client a transfer uses.

Invariants: a blob's sources are the repositories (``registry/path``) it was pulled from or pushed to, kept under
``imgcore/sources/`` as hints for cross-repository mounts on push (a wrong hint costs one refused mount, never a
wrong blob: the registry checks the digest); a source file is never followed through a symlink.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from imgcore.registry.client import RegistryClient
from imgcore.store import ContentStore

__all__ = ["DEFAULT_JOBS", "client_for", "known_sources", "record_source"]

DEFAULT_JOBS = 3
"""Layers moved at a time by pull and push (docker's ``max-concurrent-downloads`` default)."""
_MAX_SOURCES_BYTES = 1 << 20


def client_for(
    domain: str,
    *,
    insecure: Iterable[str] = (),
    ca_file: str | os.PathLike[str] | None = None,
    jobs: int = DEFAULT_JOBS,
    **kwargs: Any,
) -> RegistryClient:
    """A :class:`RegistryClient` for ``domain`` with a connection pool big enough for ``jobs`` parallel transfers."""
    return RegistryClient(domain, insecure=insecure, ca_file=ca_file, pool_size=max(jobs + 2, 4), **kwargs)


def record_source(store: ContentStore, digests: Iterable[str], repository: str) -> None:
    """Remember that these blobs came from ``repository`` (``registry/path``): push mounts them from there."""
    d = store.paths.sources
    d.mkdir(parents=True, exist_ok=True)
    for digest in digests:
        if repository in known_sources(store, digest):
            continue
        fd = os.open(d / digest.replace(":", "-"), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, (repository + "\n").encode())
        finally:
            os.close(fd)


def known_sources(store: ContentStore, digest: str) -> list[str]:
    """Repositories (``registry/path``) a blob is known to exist in, most recent last."""
    try:
        fd = os.open(store.paths.sources / digest.replace(":", "-"), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return []
    try:
        text = os.read(fd, _MAX_SOURCES_BYTES).decode("utf-8", "replace")
    finally:
        os.close(fd)
    return [line for line in text.splitlines() if line]
