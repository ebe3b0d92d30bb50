"""``sync``: every tag of a source repository into a destination repository, skipping what is already there.

The source's tags are listed (following ``Link`` pages); then, for each tag, one manifest ``HEAD`` on each side,
``head_jobs`` tags at a time over keep-alive connections. A tag whose ``Docker-Content-Digest`` is the same on
both sides costs nothing more; any other tag is copied by :class:`~imgcore.transfer.copy.Copier` from the digest
its HEAD named (so what is copied is what was compared), every platform of an index, byte for byte;
``head_jobs`` changed tags are copied at a time, their blobs ``jobs`` at a time.

Invariants:
- an unchanged tag makes exactly two requests (a HEAD on each side); the only other requests of an unchanged sync
  are the source's tag list pages (and each registry's first ``/v2/`` probe and token);
- a tag is compared by digest only when both registries name one; a missing or malformed
  ``Docker-Content-Digest`` counts as changed, so the tag is copied (copying is idempotent);
- tags present only in the destination are left alone (``skopeo sync`` and ``regsync`` do the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from imgcore._core import Digest
from imgcore._progress import NullProgress, Progress
from imgcore.errors import InvalidDigest
from imgcore.reference import Reference
from imgcore.registry.client import RegistryClient
from imgcore.transfer.copy import COPY_JOBS, Copier, CopyResult, thread_pool
from imgcore.transfer.remote import Clients, parse_repository

__all__ = ["HEAD_JOBS", "SyncOptions", "SyncResult", "sync"]

HEAD_JOBS = 8
"""Tags compared at a time (each comparison is two HEADs on keep-alive connections)."""


class SyncOptions(TypedDict, total=False):
    """The options of :func:`sync` past the repositories and the clients (for the front door's signatures)."""

    tags: Sequence[str] | None
    jobs: int
    head_jobs: int
    chunk_size: int | None
    progress: Progress | None


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync` did: ``copied`` has a :class:`CopyResult` per tag written, ``unchanged`` the tags that
    already had the source's digest, ``vanished`` tags listed but gone by the time of their HEAD."""

    source: str
    destination: str
    copied: tuple[CopyResult, ...] = field(default=())
    unchanged: tuple[str, ...] = field(default=())
    vanished: tuple[str, ...] = field(default=())


def _head_digest(client: RegistryClient, repo: str, tag: str) -> str | None:
    """The digest the tag names (``""`` when the registry does not say, None when it has no such tag)."""
    head = client.head_manifest(repo, tag)
    if head is None:
        return None
    try:
        return str(Digest(head[0])) if head[0] else ""
    except InvalidDigest:
        return ""


def sync(
    src: str | Reference,
    dst: str | Reference,
    *,
    clients: Clients | None = None,
    tags: Sequence[str] | None = None,
    jobs: int = COPY_JOBS,
    head_jobs: int = HEAD_JOBS,
    chunk_size: int | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Make every tag of repository ``src`` name the same digest in repository ``dst``.

    Args:
        src, dst: repositories (``host/ns/app``, no tag).
        clients: registry clients (one per host, with credentials); a fresh set by default.
        tags: sync only these tags instead of every tag the source lists.
        jobs: blobs copied at the same time; ``head_jobs``: tags compared at the same time.
    """
    progress = progress if progress is not None else NullProgress()
    s = parse_repository(src, "sync: source")
    d = parse_repository(dst, "sync: destination")
    own = clients is None
    clients = clients if clients is not None else Clients(pool_size=max(head_jobs, jobs) + 2)
    try:
        sc, dc = clients.get(s.domain), clients.get(d.domain)
        names = list(tags) if tags is not None else sc.list_tags(s.path)

        def compare(tag: str) -> tuple[str, str | None, str | None]:
            return tag, _head_digest(sc, s.path, tag), _head_digest(dc, d.path, tag)

        with thread_pool(max(1, head_jobs), "imgcore-sync") as pool:
            compared = list(pool.map(compare, names))
            unchanged = [t for t, a, b in compared if a and a == b]
            vanished = [t for t, a, _ in compared if a is None]
            todo = [(t, a) for t, a, b in compared if a is not None and not (a and a == b)]
            for t in unchanged:
                progress.line(f"{t}: unchanged")
            copied: list[CopyResult] = []
            if todo:
                # several tags at a time: each is mostly small requests; shared blobs still move once
                with Copier(sc, s.path, dc, d.path, jobs=jobs, chunk_size=chunk_size, progress=progress) as copier:
                    copied = list(pool.map(lambda td: copier.copy_reference(td[1] or td[0], td[0]), todo))
        return SyncResult(str(s), str(d), tuple(copied), tuple(unchanged), tuple(vanished))
    finally:
        if own:
            clients.close()
