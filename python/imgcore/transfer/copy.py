"""``copy``: an image from one registry repository to another, never through the store or the disk.

Each blob streams from the source's GET into the destination's upload (one ``PUT`` with the blob's known length,
or ``PATCH`` chunks of ``chunk_size`` from a buffer of that size): at most a few MiB of any blob are in memory.
Blobs go ``jobs`` at a time; manifests are copied byte for byte, so every digest is kept.

Invariants:
- a blob is hashed while it streams; its last bytes are released to the destination only after its digest and
  size are checked, so a corrupt source never completes an upload (the connection is dropped mid-body and the
  session cancelled); a destination therefore never holds a blob that does not hash to its name;
- a blob the destination has (HEAD) is skipped; on one registry it is mounted from the source repository
  (``POST ...?mount=&from=``), falling back to an upload when the registry refuses; a manifest the destination
  has (HEAD by digest) is not walked again;
- manifests go last, an index's children before the index, so the destination never names what it lacks;
- non-distributable (foreign) layers are not copied, as docker, skopeo and crane leave them: their manifest
  points at URLs outside the registry;
- a client sends its credentials only to its own registry (two registries: two clients, each its own).

Platforms: by default an index is copied whole (every platform, the index byte for byte, so the tag's digest is
the source's), as ``crane copy`` and ``regctl image copy`` do and as mirroring needs; ``platform`` copies only
that platform's manifest and tags it directly (what ``skopeo copy`` does by default for the host's platform).
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Literal, TypedDict, cast

from imgcore._core import Hasher
from imgcore._json import MANIFEST_LIMIT
from imgcore._progress import NullProgress, Progress, short_id
from imgcore.errors import DigestMismatch, ImgcoreError, InvalidArgument, InvalidManifest, RegistryError, SizeMismatch
from imgcore.models import (
    DOCKER_FOREIGN_LAYER,
    Descriptor,
    Index,
    Manifest,
    Platform,
    parse_manifest_or_index,
)
from imgcore.reference import Reference
from imgcore.reference import parse as parse_reference
from imgcore.registry.client import BlobStream, ManifestResponse, RegistryClient
from imgcore.transfer.remote import Clients, parse_platform, parse_repository

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["COPY_JOBS", "BlobCopy", "Copier", "CopyOptions", "CopyResult", "copy", "thread_pool"]

COPY_JOBS = 4
"""Blobs copied at a time by default."""
_TAG_JOBS = 4  # tags copied at a time by --all-tags
_MAX_DEPTH = 4  # an index of indexes of ...: refuse deeper nesting than any real image has
_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable."

BlobStatus = Literal["copied", "mounted", "exists", "foreign"]


class CopyOptions(TypedDict, total=False):
    """The options of :func:`copy` past the references and the clients (for the front door's signatures)."""

    all_tags: bool
    platform: str | Platform | None
    jobs: int
    chunk_size: int | None
    progress: Progress | None


@dataclass(frozen=True)
class BlobCopy:
    """What happened to one blob: ``copied`` (streamed), ``mounted`` (cross-repository), ``exists`` (the
    destination had it) or ``foreign`` (a non-distributable layer, left where its URLs point)."""

    digest: str
    size: int
    status: BlobStatus


@dataclass(frozen=True)
class CopyResult:
    """One copied reference: ``digest`` is what ``destination`` now names, ``media_type`` its type;
    ``manifests`` counts the manifests and indexes written, ``blobs`` says what happened to each blob."""

    source: str
    destination: str
    digest: str
    media_type: str
    manifests: int
    blobs: tuple[BlobCopy, ...] = field(default=())

    @property
    def copied_bytes(self) -> int:
        """Bytes streamed from source to destination (mounted and present blobs cost none)."""
        return sum(b.size for b in self.blobs if b.status == "copied")


class _SourceFailed(Exception):
    """The source stream broke while the destination was reading it (kept apart from the destination's
    errors, so the destination's request is not retried with a body that cannot be replayed)."""

    def __init__(self, cause: RegistryError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _NotRewindable(Exception):
    """The destination's request wanted to send the body again (a retry): a stream cannot be replayed."""


class _Cancelled(Exception):
    pass


class _Relay(io.RawIOBase):
    """The upload body: reads the source stream, hashes it and holds back the last bytes until the digest and
    size are verified (so a mismatch aborts the upload before it can complete)."""

    def __init__(self, stream: BlobStream, desc: Descriptor, what: str, cancel: threading.Event) -> None:
        super().__init__()
        self._chunks: Iterator[bytes] = stream.chunks()
        self._desc = desc
        self._what = what
        self._cancel = cancel
        self._hasher = Hasher(desc.digest.split(":", 1)[0])
        self._chunk = b""  # the source's last chunk; its bytes from _off on are still to be read
        self._off = 0
        self._pos = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET and offset == self._pos:
            return self._pos
        raise _NotRewindable(f"{self._what}: the upload was interrupted after {self._pos} bytes")

    def _next(self) -> bytes:
        if self._cancel.is_set():
            raise _Cancelled
        try:
            return next(self._chunks, b"")
        except RegistryError as e:
            raise _SourceFailed(e) from None

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes: a source chunk as it came when it fits (no copy), else its next ``n`` bytes.

        Fewer than ``n`` is not the end; ``b""`` is (after the digest and size were checked)."""
        left = self._desc.size - self._pos
        want = left if n is None or n < 0 else min(n, left)
        if want == 0:
            if not self._checked:
                self._check()
            return b""
        if self._off >= len(self._chunk):
            self._chunk, self._off = self._next(), 0
            if not self._chunk:
                raise SizeMismatch(f"{self._what}: the source ended after {self._pos} of {self._desc.size} bytes",
                                   expected=self._desc.size, actual=self._pos)  # fmt: skip
        take = self._chunk[self._off : self._off + want]  # the chunk itself, not a copy, when it all fits
        self._off += len(take)
        self._hasher.update(take)
        self._pos += len(take)
        if self._pos == self._desc.size:
            self._check()
        return take

    def _check(self) -> None:
        extra = len(self._chunk) - self._off or len(self._next())
        if extra:
            raise SizeMismatch(f"{self._what}: the source sent more than the {self._desc.size} bytes expected",
                               expected=self._desc.size, actual=self._desc.size + extra)  # fmt: skip
        actual = self._hasher.digest()
        if actual != self._desc.digest:
            raise DigestMismatch(f"{self._what}: the source's bytes hash to {actual}; upload aborted",
                                 expected=self._desc.digest, actual=actual)  # fmt: skip
        self._checked = True


class _Filled(io.RawIOBase):
    """Reads of exactly ``n`` bytes (but the last) from a reader that returns fewer: ``PATCH`` chunks of the
    asked size, from a buffer of that size."""

    def __init__(self, inner: _Relay) -> None:
        super().__init__()
        self._inner = inner

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._inner.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def read(self, n: int | None = -1) -> bytes:
        first = self._inner.read(n)
        if n is None or n < 0 or len(first) >= n or not first:
            return first
        buf = bytearray(first)
        while len(buf) < n:
            more = self._inner.read(n - len(buf))
            if not more:
                break
            buf += more
        return bytes(buf)


class _Outcome:
    """What became of one blob, set once by whoever settles it (this thread or a worker); others wait."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.result: BlobCopy | None = None
        self.error: BaseException | None = None

    def set(self, result: BlobCopy | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self._done.set()

    def wait(self) -> None:
        self._done.wait()


def thread_pool(workers: int, prefix: str) -> ThreadPoolExecutor:
    """A thread pool of ``workers`` threads named ``prefix``-N (sync's HEADs use it too)."""
    # NOTE: concurrent.futures (with the logging it imports) costs 10-20 ms of start-up; a copy that only mounts
    # or skips, and manifest/digest/tags, never need threads, so it is imported when threads are wanted.
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix)


def _is_foreign(desc: Descriptor) -> bool:
    return desc.media_type == DOCKER_FOREIGN_LAYER or desc.media_type.startswith(_NONDISTRIBUTABLE)


class Copier:
    """Copies manifests and their blobs from one repository to another; blobs ``jobs`` at a time.

    One copier serves many references (``--all-tags``, ``sync``), from several threads at once if need be: a
    blob is copied (or found present) once per copier, whichever manifests share it. Use it as a context
    manager (it owns a thread pool).
    """

    def __init__(
        self,
        src: RegistryClient,
        src_repo: str,
        dst: RegistryClient,
        dst_repo: str,
        *,
        jobs: int = COPY_JOBS,
        chunk_size: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.src, self.src_repo, self.dst, self.dst_repo = src, src_repo, dst, dst_repo
        self.chunk_size = chunk_size
        self.progress = progress if progress is not None else NullProgress()
        self.same_registry = src is dst or src.registry == dst.registry
        self.jobs = max(1, jobs)
        self._pool: ThreadPoolExecutor | None = None  # made when the first blob has to stream
        self._blobs: dict[str, _Outcome] = {}
        self._put_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def close(self) -> None:
        """Stop the blob workers (a blob in flight stops at its next chunk) and wait for them."""
        self._cancel.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Copier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blobs ----------------------------------------------------------------------------------------------------

    def _report(self, desc: Descriptor, show: bool) -> Callable[..., None]:
        lid = short_id(desc.digest)

        def report(status: str, current: int | None = None) -> None:
            if show:
                self.progress.layer(lid, status, current, desc.size)

        return report

    def _check_blob(self, desc: Descriptor, show: bool) -> BlobCopy | str | None:
        """Settle a blob without moving its bytes if possible: a status, or where to upload it (an upload
        session's URL, or None for a new one).

        On one registry the mount is asked for straight away (a registry answers 201 for a blob the
        destination already has, too); elsewhere a HEAD tells whether the destination has it.
        """
        report = self._report(desc, show)
        if _is_foreign(desc):
            report("Foreign layer, not copied")
            return BlobCopy(desc.digest, desc.size, "foreign")
        location: str | None = None
        if self.same_registry and self.src_repo != self.dst_repo:
            try:
                location = self.dst.mount_blob(self.dst_repo, desc.digest, self.src_repo)
            except RegistryError:
                location = None
            else:
                if location is None:
                    report(f"Mounted from {self.src_repo}")
                    return BlobCopy(desc.digest, desc.size, "mounted")
        if self.dst.blob_size(self.dst_repo, desc.digest, push=True) is not None:
            if location is not None:
                self.dst.cancel_upload(location, self.dst_repo)
            report("Layer already exists")
            return BlobCopy(desc.digest, desc.size, "exists")
        return location

    def _copy_blob(self, desc: Descriptor, show: bool, location: str | None) -> BlobCopy:
        report = self._report(desc, show)
        self._stream_blob(desc, location, report)
        report("Copied")
        return BlobCopy(desc.digest, desc.size, "copied")

    def _stream_blob(self, desc: Descriptor, location: str | None, report: Callable[..., None]) -> None:
        what = (
            f"copy blob {desc.digest} from {self.src.registry}/{self.src_repo} to {self.dst.registry}/{self.dst_repo}"
        )
        failures = 0
        while True:
            loc = location or self.dst.start_upload(self.dst_repo)
            location = None
            report("Copying", 0)
            try:
                with self.src.open_blob(self.src_repo, desc.digest) as stream:
                    if stream.total is not None and stream.total != desc.size:
                        raise SizeMismatch(f"{what}: the source serves {stream.total} bytes, the manifest says "
                                           f"{desc.size}", expected=desc.size, actual=stream.total)  # fmt: skip
                    relay = _Relay(stream, desc, what, self._cancel)
                    body = cast(IO[bytes], _Filled(relay) if self.chunk_size else relay)
                    self.dst.upload_blob(
                        self.dst_repo,
                        desc.digest,
                        desc.size,
                        body,
                        location=loc,
                        chunk_size=self.chunk_size,
                        on_progress=lambda n: report("Copying", n),
                    )
                return
            except (_SourceFailed, _NotRewindable, RegistryError) as e:
                self.dst.cancel_upload(loc, self.dst_repo)
                cause = e.cause if isinstance(e, _SourceFailed) else e
                retryable = isinstance(e, _NotRewindable) or (isinstance(cause, RegistryError) and cause.retryable)
                if not retryable or failures >= self.dst.retries:
                    if isinstance(cause, RegistryError):
                        raise cause from None
                    raise RegistryError(f"{what}: {cause}", retryable=True) from None
                failures += 1
                time.sleep(min(8.0, self.dst.backoff * 2**failures))
            except BaseException:
                self.dst.cancel_upload(loc, self.dst_repo)
                raise

    def _blob(self, desc: Descriptor, show: bool) -> _Outcome:
        """The blob's outcome: settled here when no byte has to move, else streamed by a pool worker."""
        with self._lock:
            out = self._blobs.get(desc.digest)
            if out is not None:
                return out
            out = self._blobs[desc.digest] = _Outcome()
        try:
            checked = self._check_blob(desc, show)
        except BaseException as e:
            out.set(error=e)
            raise
        if isinstance(checked, BlobCopy):
            out.set(checked)
            return out
        with self._lock:
            if self._pool is None:
                self._pool = thread_pool(self.jobs, "imgcore-copy")
            pool = self._pool
        pool.submit(self._run, out, desc, show, checked)
        return out

    def _run(self, out: _Outcome, desc: Descriptor, show: bool, location: str | None) -> None:
        try:
            out.set(self._copy_blob(desc, show, location))
        except BaseException as e:
            self._cancel.set()  # the copy fails: the other streams stop at their next chunk
            out.set(error=e)

    def _copy_blobs(self, blobs: list[tuple[Descriptor, bool]]) -> list[BlobCopy]:
        """Every blob settled: the cheap checks (HEAD, mount) one after the other in this thread, which on
        loopback is quicker than handing them to threads; the uploads ``jobs`` at a time."""
        outcomes = [self._blob(desc, show) for desc, show in blobs]
        for out in outcomes:
            out.wait()
        errors = [out.error for out in outcomes if out.error is not None]
        if errors:
            real = [e for e in errors if not isinstance(e, _Cancelled)]
            raise (real or errors)[0]
        return [out.result for out in outcomes if out.result is not None]

    # -- manifests ------------------------------------------------------------------------------------------------

    def _get(self, reference: str) -> tuple[ManifestResponse, Manifest | Index]:
        top = self.src.get_manifest(self.src_repo, reference)
        where = f"{self.src.registry}/{self.src_repo}@{top.digest}: manifest"
        return top, parse_manifest_or_index(top.raw, top.media_type or None, where=where, limit=MANIFEST_LIMIT)

    def _put(self, resp: ManifestResponse, doc: Manifest | Index, reference: str) -> None:
        """PUT a manifest, holding its digest's lock and, for an index, its children's.

        NOTE: docker-registry's filesystem storage rewrites a manifest's revision link in place on every PUT
        (truncate, then write), and an index PUT reads its children's links to check they exist: a child PUT
        again (under a tag, or by a second thread) while an index naming it is checked makes that index fail
        with DIGEST_INVALID / MANIFEST_BLOB_UNKNOWN. So two PUTs that touch the same manifest never overlap.
        """
        digests = {resp.digest}
        if isinstance(doc, Index):
            digests |= {child.digest for child in doc.manifests}
        with self._lock:
            locks = [self._put_locks.setdefault(d, threading.Lock()) for d in sorted(digests)]
        with contextlib.ExitStack() as held:
            for lock in locks:  # in digest order: no two PUTs wait on each other
                held.enter_context(lock)
            self.dst.put_manifest(self.dst_repo, reference, resp.raw, resp.media_type or doc.media_type)

    def _copy_tree(self, resp: ManifestResponse, doc: Manifest | Index, blobs: list[BlobCopy], depth: int) -> int:
        """Everything ``doc`` needs in the destination except ``doc`` itself; returns manifests written."""
        if depth > _MAX_DEPTH:
            raise InvalidManifest(f"{self.src.registry}/{self.src_repo}: indexes nested deeper than {_MAX_DEPTH}")
        if isinstance(doc, Manifest):
            wanted = [(layer, True) for layer in doc.layers]
            blobs += self._copy_blobs([(doc.config, False), *wanted])
            return 0
        written = 0
        for child in doc.manifests:
            if self.dst.head_manifest(self.dst_repo, child.digest) is not None:
                continue  # the registry has it, so it has all its blobs (it refuses manifests whose blobs it lacks)
            cresp, cdoc = self._get(child.digest)
            written += self._copy_tree(cresp, cdoc, blobs, depth + 1)
            self._put(cresp, cdoc, child.digest)
            written += 1
        return written

    def copy_reference(
        self, reference: str, dst_reference: str, *, platform: str | Platform | None = None
    ) -> CopyResult:
        """Copy what ``src_repo:reference`` names to ``dst_repo:dst_reference`` (a tag or a digest).

        With ``platform`` and an index, only that platform's manifest is copied and ``dst_reference`` names it.
        ``dst_reference`` may be a digest only when it is the digest of what is copied.
        """
        resp, doc = self._get(reference)
        if isinstance(doc, Index) and platform is not None:
            chosen = doc.for_platform(parse_platform(platform))
            resp, doc = self._get(chosen.digest)
            if not isinstance(doc, Manifest):
                raise InvalidManifest(f"{self.src.registry}/{self.src_repo}: {chosen.digest} is an index")
        if ":" in dst_reference and dst_reference != resp.digest:
            raise InvalidArgument(f"copy to {self.dst.registry}/{self.dst_repo}@{dst_reference}: the source is "
                                  f"{resp.digest}")  # fmt: skip
        self.progress.line(f"Copying {self.src.registry}/{self.src_repo}{_sep(reference)}{reference} to "
                           f"{self.dst.registry}/{self.dst_repo}{_sep(dst_reference)}{dst_reference}")  # fmt: skip
        blobs: list[BlobCopy] = []
        written = 0
        if self.dst.head_manifest(self.dst_repo, resp.digest) is None:
            written = self._copy_tree(resp, doc, blobs, 0)
        self._put(resp, doc, dst_reference)
        written += 1
        self.progress.line(f"{dst_reference}: digest: {resp.digest} size: {resp.size}")
        return CopyResult(
            source=f"{self.src.registry}/{self.src_repo}{_sep(reference)}{reference}",
            destination=f"{self.dst.registry}/{self.dst_repo}{_sep(dst_reference)}{dst_reference}",
            digest=resp.digest,
            media_type=resp.media_type or doc.media_type,
            manifests=written,
            blobs=tuple(blobs),
        )


def _sep(reference: str) -> str:
    return "@" if ":" in reference else ":"


def _target(r: Reference) -> str:
    return r.digest or r.tag or "latest"


def copy(
    src: str | Reference,
    dst: str | Reference,
    *,
    clients: Clients | None = None,
    all_tags: bool = False,
    platform: str | Platform | None = None,
    jobs: int = COPY_JOBS,
    chunk_size: int | None = None,
    progress: Progress | None = None,
) -> list[CopyResult]:
    """Copy an image (or with ``all_tags`` every tag of a repository) from one registry repository to another.

    Args:
        src: ``host/repo:tag`` or ``host/repo@digest``; a repository (no tag) with ``all_tags``.
        dst: ``host/repo[:tag]`` (``latest`` when it has no tag, as docker reads names; ``@digest`` to write by
            digest only); a repository with ``all_tags`` (each tag keeps its name).
        clients: the registry clients to use (one per host, with credentials); a fresh set by default.
        platform: copy only this platform of an index (``os/arch[/variant]``); by default every platform.
        jobs: blobs copied at the same time.
        chunk_size: upload in ``PATCH`` chunks of this many bytes (a buffer of this size) instead of one ``PUT``.

    Returns:
        One :class:`CopyResult` per reference copied.
    """
    own = clients is None
    clients = clients if clients is not None else Clients(pool_size=max(jobs + 2, 4))
    try:
        if all_tags:
            s = parse_repository(src, "copy --all-tags: source")
            d = parse_repository(dst, "copy --all-tags: destination")
        else:
            s = parse_reference(src) if isinstance(src, str) else src.tagged()
            d = parse_reference(dst) if isinstance(dst, str) else dst.tagged()
        sc, dc = clients.get(s.domain), clients.get(d.domain)
        with Copier(sc, s.path, dc, d.path, jobs=jobs, chunk_size=chunk_size, progress=progress) as copier:
            if not all_tags:
                return [copier.copy_reference(_target(s), _target(d), platform=platform)]
            tags = sc.list_tags(s.path)
            if not tags:
                raise ImgcoreError(f"copy --all-tags: {s} has no tags")
            # a few tags at a time: each is mostly small requests; blobs they share still move once
            with thread_pool(_TAG_JOBS, "imgcore-tags") as pool:
                return list(pool.map(lambda t: copier.copy_reference(t, t, platform=platform), tags))
    finally:
        if own:
            clients.close()
