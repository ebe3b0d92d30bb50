"""``pull``: an image from its registry into the store, as ``docker pull`` does.

The tag or digest is resolved to a manifest (an index or manifest list to one platform), the config and the
layers are fetched -- layers ``jobs`` at a time, each hashed while it streams into a resumable ingest partial and
renamed into the store only when its digest matches. An interrupted pull (a dropped connection, or the program
killed) resumes from the partial's bytes with a ``Range`` request.

Invariants:
- a lease holds every blob the pull stores or relies on ("Already exists") from its first check to its tag, so a
  concurrent ``prune`` or ``rmi`` never leaves the new tag pointing at missing blobs;
- manifests are stored and the tag written last: a tag never points at an image with missing blobs;
- with ``unpack`` each layer is unpacked into the shared layer cache with its digest and the config's diff_id
  verified, before it is cached by chain ID.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from imgcore import _fs
from imgcore._json import ARCHIVE_LIMIT, MANIFEST_LIMIT
from imgcore._progress import NullProgress, Progress, short_id
from imgcore.errors import InvalidArgument, InvalidManifest, NotFound, RegistryError
from imgcore.image.catalog import load_image, record_repo_digest, tag_manifest
from imgcore.image.model import Image, chain_ids
from imgcore.layers.cache import LayerCache, default_driver
from imgcore.models import Descriptor, ImageConfig, Index, Manifest, Platform, parse_manifest_or_index
from imgcore.reference import Reference
from imgcore.reference import parse as parse_reference
from imgcore.registry.client import BlobStream, RegistryClient
from imgcore.store import ContentStore, Lease
from imgcore.transfer.sources import DEFAULT_JOBS, client_for, record_source

__all__ = ["FOREIGN_URLS_ENV", "LayerUnpacker", "PullResult", "foreign_url_policy", "pull"]


class _Cancelled(Exception):
    pass


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` did. ``digest`` is what the registry's tag pointed at (an index for multi-platform images);
    ``manifest`` is the platform manifest stored and tagged."""

    reference: str
    digest: str
    manifest: Descriptor
    status: str
    downloaded: int
    layers: tuple[tuple[str, str], ...] = field(default=())
    image: Image | None = field(default=None, compare=False)


class LayerUnpacker:
    """Unpacks pulled layers where containers will look for them, so the first ``create`` has nothing left to do.

    With the overlay driver each layer goes, in overlay form, into the layer cache as soon as its blob is stored,
    while later ones still download. With the copy driver the image is flattened once, after the last layer.
    Either way every layer's digest and the config's diff_id are checked while it is unpacked.
    """

    def __init__(self, store: ContentStore, lease: Lease, diff_ids: list[str], layers: tuple[Descriptor, ...]) -> None:
        if len(diff_ids) != len(layers):
            raise InvalidManifest(f"pull --unpack: {len(layers)} layers but {len(diff_ids)} diff_ids in the config")
        self.store = store
        self.lease = lease
        self.cache = LayerCache(store)
        self.driver = default_driver(store.paths.containers)
        self.per_layer = self.driver == "overlay"
        self._jobs: dict[str, list[tuple[Descriptor, str, str]]] = {}
        chains = chain_ids(diff_ids)
        lease.hold(*(LayerCache.key(c) for c in chains))
        for d, diff, chain in zip(layers, diff_ids, chains, strict=True):
            self._jobs.setdefault(d.digest, []).append((d, diff, chain))

    def unpack_layer(self, layer: Descriptor) -> None:
        """Overlay driver: unpack one stored layer into the shared layer cache (idempotent, locked)."""
        for desc, diff_id, chain in self._jobs[layer.digest]:
            self.cache.ensure_layer(desc, diff_id, chain)

    def finish(self, manifest_desc: Descriptor, manifest: Manifest, config_raw: bytes) -> None:
        """Copy driver: flatten the whole image once all its layers are stored."""
        if self.per_layer:
            return
        image = Image(manifest_desc, manifest, ImageConfig.from_bytes(config_raw), store=self.store)
        self.lease.hold(f"rootfs/{self.cache.baseline_key(image)}")
        self.cache.ensure_rootfs(image)


def _resolve_platform(platform: str | Platform | None) -> Platform:
    if isinstance(platform, Platform):
        return platform
    if platform is None:
        return Platform.host()
    try:
        return Platform.parse(platform)
    except ValueError as e:
        raise InvalidManifest(f"platform: {e}") from None


FOREIGN_URLS_ENV = "IMGCORE_FOREIGN_URLS"
"""A regular expression every foreign layer URL must match (the whole URL); unset: any http(s) URL."""


def foreign_url_policy(pattern: str | None = None) -> re.Pattern[str] | None:
    """The allow-list for foreign layer URLs: ``pattern``, else ``$IMGCORE_FOREIGN_URLS``, else None (any)."""
    text = pattern if pattern is not None else os.environ.get(FOREIGN_URLS_ENV) or None
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as e:
        raise InvalidArgument(f"foreign URL allow-list {text!r}: {e}") from None


class _Source:
    """Where one layer's bytes come from: the registry, then (for a blob it lacks, with ``urls``) each allowed
    URL in turn, as moby and containerd fetch foreign and non-distributable layers. URLs get no credentials."""

    def __init__(self, client: RegistryClient, repo: str, layer: Descriptor, allow: re.Pattern[str] | None) -> None:
        self.client, self.repo, self.layer, self.allow = client, repo, layer, allow
        self.urls: list[str] | None = None  # set once the registry said it lacks the blob

    def open(self, offset: int) -> BlobStream:
        if self.urls is None:
            try:
                return self.client.open_blob(self.repo, self.layer.digest, offset=offset)
            except NotFound:
                if not self.layer.urls:
                    raise
                self.urls = self._allowed()
        while True:
            try:
                return self.client.open_url(self.urls[0], offset=offset)
            except RegistryError as e:
                if e.retryable or len(self.urls) == 1:
                    raise
                self.urls.pop(0)

    def _allowed(self) -> list[str]:
        urls = [u for u in self.layer.urls or () if urlsplit(u).scheme in ("http", "https")]
        allowed = [u for u in urls if self.allow is None or self.allow.fullmatch(u)]
        if not allowed:
            why = "no http(s) URL" if not urls else f"no URL allowed by '{self.allow.pattern if self.allow else ''}'"
            raise RegistryError(
                f"get blob {self.client.registry}/{self.repo}@{self.layer.digest}: the registry lacks this foreign "
                f"layer and it has {why} (--allow-foreign-url / ${FOREIGN_URLS_ENV})"
            )
        return allowed


def _download_layer(
    client: RegistryClient,
    store: ContentStore,
    repo: str,
    layer: Descriptor,
    progress: Progress,
    cancel: threading.Event,
    allow: re.Pattern[str] | None = None,
) -> int:
    """Stream one blob into the store, resuming from a partial with Range. Returns the bytes fetched.

    A blob the registry lacks is fetched from the descriptor's ``urls`` (foreign layers, see :class:`_Source`);
    either way the ingest stops at the descriptor's size and checks its digest before the blob is stored."""
    lid = short_id(layer.digest)
    fetched = 0
    failures = 0
    source = _Source(client, repo, layer, allow)
    with store.ingest(layer.digest, layer.size) as ing:
        if ing.offset:
            progress.layer(lid, "Downloading", ing.offset, layer.size)
        else:
            progress.layer(lid, "Downloading", 0, layer.size)
        while ing.offset < layer.size:
            if cancel.is_set():
                raise _Cancelled
            attempt_start = ing.offset
            try:
                with source.open(ing.offset) as stream:
                    if stream.start != ing.offset:
                        ing.restart()
                    last = 0.0
                    for chunk in stream.chunks():
                        if cancel.is_set():
                            raise _Cancelled
                        ing.write(chunk)
                        fetched += len(chunk)
                        now = time.monotonic()
                        if now - last > 0.1:
                            last = now
                            progress.layer(lid, "Downloading", ing.offset, layer.size)
                    if ing.offset < layer.size:
                        raise RegistryError(
                            f"get blob {client.registry}/{repo}@{layer.digest}: connection closed after "
                            f"{ing.offset} of {layer.size} bytes",
                            retryable=True,
                        )
            except RegistryError as e:
                if ing.offset > attempt_start:
                    failures = 0  # progress was made: only consecutive fruitless attempts count
                if not e.retryable or failures >= client.retries:
                    raise
                failures += 1
                time.sleep(min(8.0, client.backoff * 2**failures))
        progress.layer(lid, "Verifying Checksum")
        ing.commit()
    progress.layer(lid, "Download complete")
    return fetched


@_fs.disk_full_is_an_error("pull")
def pull(
    ref: str | Reference,
    *,
    store: ContentStore,
    platform: str | Platform | None = None,
    jobs: int = DEFAULT_JOBS,
    unpack: bool = False,
    progress: Progress | None = None,
    client: RegistryClient | None = None,
    insecure: Iterable[str] = (),
    ca_file: str | os.PathLike[str] | None = None,
    foreign_urls: str | None = None,
) -> PullResult:
    """Pull an image by tag or digest from its registry into ``store``, as ``docker pull`` does.

    Args:
        ref: the image reference (``alpine``, ``host:5000/ns/app:1.0``, ``name@sha256:...``).
        platform: ``os/arch[/variant]`` to pick from a multi-platform image; the host's by default.
        jobs: layers downloaded at the same time.
        unpack: unpack the layers for containers while pulling (see :class:`LayerUnpacker`).
        progress: where docker-style status lines go (nothing by default).
        foreign_urls: a regular expression the whole URL of a foreign layer must match to be fetched from it
            (``$IMGCORE_FOREIGN_URLS`` by default; unset: any http or https URL).
    """
    progress = progress if progress is not None else NullProgress()
    r = parse_reference(ref) if isinstance(ref, str) else ref.tagged()
    want = _resolve_platform(platform)
    allow = foreign_url_policy(foreign_urls)
    client = client if client is not None else client_for(r.domain, insecure=insecure, ca_file=ca_file, jobs=jobs)
    repo = r.path
    target = r.digest or r.tag or "latest"
    progress.line(f"{r.digest or r.tag}: Pulling from {r.path}")

    top = client.get_manifest(repo, target)
    doc = parse_manifest_or_index(top.raw, top.media_type or None, where=f"pull {r}: manifest", limit=MANIFEST_LIMIT)
    index_raw: tuple[bytes, str] | None = None
    if isinstance(doc, Index):
        chosen = doc.for_platform(want)
        index_raw = (top.raw, doc.media_type)
        mresp = client.get_manifest(repo, chosen.digest)
        if mresp.digest != chosen.digest:
            raise InvalidManifest(f"pull {r}: index names {chosen.digest} but the registry served {mresp.digest}")
        manifest = Manifest.from_bytes(
            mresp.raw, mresp.media_type or None, where=f"pull {r}: manifest {chosen.digest}", limit=MANIFEST_LIMIT
        )
    else:
        manifest = doc
    if manifest.is_artifact:
        return _pull_artifact(client, store, r, top.digest, manifest, progress, allow)
    mdigest = manifest.digest

    with store.lease(f"pull {r}") as lease:
        downloaded = 0
        statuses: dict[str, str] = {}
        with lease.guard():
            lease.add(top.digest, mdigest, manifest.config.digest, *(d.digest for d in manifest.layers))
            all_present = all(store.has_blob(d.digest) for d in (manifest.config, *manifest.layers))
            all_present = all_present and store.has_blob(mdigest)

        # Config first: small, and it tells us the layers are for the platform we want.
        if store.has_blob(manifest.config.digest):
            config_raw = store.get_blob(manifest.config.digest)
        else:
            if manifest.config.size > ARCHIVE_LIMIT:
                raise InvalidManifest(f"pull {r}: config is {manifest.config.size} bytes, more than {ARCHIVE_LIMIT}")
            config_raw = client.get_blob(repo, manifest.config.digest)
            config = ImageConfig.from_bytes(config_raw, where=f"pull {r}: config {manifest.config.digest}")
            if len(config.diff_ids) != len(manifest.layers):
                raise InvalidManifest(
                    f"pull {r}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids in the config"
                )
            store.put_blob(config_raw, digest=manifest.config.digest, size=manifest.config.size)
            downloaded += len(config_raw)
        unpacker: LayerUnpacker | None = None
        if unpack:
            unpacker = LayerUnpacker(store, lease, ImageConfig.from_bytes(config_raw).diff_ids, manifest.layers)

        todo: list[Descriptor] = []
        present: list[Descriptor] = []
        seen: set[str] = set()
        for layer in manifest.layers:
            lid = short_id(layer.digest)
            if layer.digest in seen:
                continue
            seen.add(layer.digest)
            if store.has_blob(layer.digest):
                progress.layer(lid, "Already exists")
                statuses[layer.digest] = "Already exists"
                present.append(layer)
            else:
                progress.layer(lid, "Pulling fs layer")
                todo.append(layer)

        cancel = threading.Event()
        unpack_futures: list[Future[None]] = []
        per_layer = unpacker is not None and unpacker.per_layer
        workers = min(max(1, jobs), max(1, len(todo)))  # (threads start on demand: no idle ones)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgcore-pull") as pool, \
                ThreadPoolExecutor(max_workers=2, thread_name_prefix="imgcore-unpack") as unpack_pool:  # fmt: skip
            if per_layer:
                assert unpacker is not None
                unpack_futures += [unpack_pool.submit(unpacker.unpack_layer, layer) for layer in present]

            def fetch(layer: Descriptor) -> int:
                n = _download_layer(client, store, repo, layer, progress, cancel, allow)
                statuses[layer.digest] = "Pull complete"
                if per_layer:
                    assert unpacker is not None
                    progress.layer(short_id(layer.digest), "Extracting")
                    unpack_futures.append(unpack_pool.submit(_unpack_then_report, unpacker, layer, progress))
                elif unpacker is None:
                    progress.layer(short_id(layer.digest), "Pull complete")
                return n

            for i, layer in enumerate(todo):
                if i >= jobs:
                    progress.layer(short_id(layer.digest), "Waiting")
            futures = [pool.submit(fetch, layer) for layer in todo]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:
                # Ctrl-C: stop the workers at their next chunk; their partials stay for the next run.
                cancel.set()
                raise
            if any(f.exception() is not None for f in done):
                cancel.set()
                wait(futures)
                errors = [e for e in (f.exception() for f in futures) if e is not None]
                real = [e for e in errors if not isinstance(e, _Cancelled)]
                raise (real or errors)[0]
            downloaded += sum(f.result() for f in futures)
            wait(unpack_futures)
            for uf in unpack_futures:
                uf.result()

        mdesc = store.put_manifest(manifest.raw, manifest.media_type)
        if unpacker is not None and not unpacker.per_layer:
            for layer in todo:
                progress.layer(short_id(layer.digest), "Extracting")
            unpacker.finish(mdesc, manifest, config_raw)
            for layer in todo:
                progress.layer(short_id(layer.digest), "Pull complete")
        if index_raw is not None:
            store.put_manifest(*index_raw)
        record_source(store, [d.digest for d in (manifest.config, *manifest.layers)], f"{client.registry}/{repo}")
        before = store.tags().get(str(r))
        entry = tag_manifest(store, lease, r, mdesc, manifest.config.digest)
        record_repo_digest(store, manifest.config.digest, r.repository, top.digest)
        up_to_date = all_present and before is not None and before.digest == entry.digest
        status = ("Image is up to date for " if up_to_date else "Downloaded newer image for ") + r.familiar
        progress.line(f"Digest: {top.digest}")
        progress.line(f"Status: {status}")
        return PullResult(
            reference=str(r),
            digest=top.digest,
            manifest=mdesc,
            status=status,
            downloaded=downloaded,
            layers=tuple((d.digest, statuses.get(d.digest, "")) for d in manifest.layers),
            image=load_image(store, entry, (str(r),)),
        )


def _pull_artifact(
    client: RegistryClient,
    store: ContentStore,
    r: Reference,
    digest: str,
    manifest: Manifest,
    progress: Progress,
    allow: re.Pattern[str] | None,
) -> PullResult:
    """An OCI artifact: its config and blobs are stored as they are (digest and size checked, nothing parsed or
    unpacked) and it is tagged; ``images`` does not list it, ``artifacts`` does. The last lines are oras's."""
    repo = r.path
    blobs = list({d.digest: d for d in (manifest.config, *manifest.layers)}.values())
    with store.lease(f"pull {r}") as lease:
        with lease.guard():
            lease.add(digest, manifest.digest, *(d.digest for d in blobs))
        downloaded = 0
        statuses: dict[str, str] = {}
        cancel = threading.Event()
        for d in blobs:
            if store.has_blob(d.digest):
                statuses[d.digest] = "Already exists"
                continue
            downloaded += _download_layer(client, store, repo, d, progress, cancel, allow)
            statuses[d.digest] = "Pull complete"
        mdesc = store.put_manifest(manifest.raw, manifest.media_type)
        record_source(store, [d.digest for d in blobs], f"{client.registry}/{repo}")
        tag_manifest(store, lease, r, mdesc, manifest.digest)
    status = f"Pulled [registry] {r.familiar}"
    progress.line(status)
    progress.line(f"Digest: {digest}")
    return PullResult(str(r), digest, mdesc, status, downloaded, tuple(statuses.items()))


def _unpack_then_report(unpacker: LayerUnpacker, layer: Descriptor, progress: Progress) -> None:
    unpacker.unpack_layer(layer)
    progress.layer(short_id(layer.digest), "Pull complete")
