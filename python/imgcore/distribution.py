"""Moving images between the store and the outside world: registry pull and push, docker-save and OCI archives.

Pull: the tag or digest is resolved to a manifest (an index or manifest list is resolved to one platform), the
config and the layers are fetched -- layers ``jobs`` at a time, each hashed while it streams into a resumable
:meth:`Store.ingest` partial and renamed into the store only when its digest matches. An interrupted pull (a dropped
connection, or the program killed) resumes from the partial's bytes with a ``Range`` request. Manifests are stored
and the tag written last, so a tag never points at an image with missing blobs.

Push: blobs the registry already has are skipped, blobs known to come from another repository of the same registry
are mounted from there, the rest are uploaded (monolithic or chunked), then the manifest.

Save / load: see :func:`save` and :func:`load`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgcore._progress import NullProgress, Progress, short_id
from imgcore.errors import ImgcoreError, InvalidManifest, RegistryError
from imgcore.models import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    parse_manifest_or_index,
)
from imgcore.reference import Reference
from imgcore.reference import parse as parse_reference
from imgcore.registry.client import RegistryClient
from imgcore.store import Store

__all__ = [
    "PullResult",
    "PushResult",
    "client_for",
    "known_sources",
    "pull",
    "push",
    "record_source",
]

UnpackHook = Callable[[Store, Descriptor], None]

_DEFAULT_JOBS = 3


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


@dataclass(frozen=True)
class PushResult:
    reference: str
    digest: str
    size: int
    uploaded: int
    layers: tuple[tuple[str, str], ...] = field(default=())


def client_for(
    domain: str,
    *,
    insecure: Iterable[str] = (),
    ca_file: str | os.PathLike[str] | None = None,
    jobs: int = _DEFAULT_JOBS,
    **kwargs: Any,
) -> RegistryClient:
    """A :class:`RegistryClient` for ``domain`` with a connection pool big enough for ``jobs`` parallel transfers."""
    return RegistryClient(domain, insecure=insecure, ca_file=ca_file, pool_size=max(jobs + 2, 4), **kwargs)


# ------------------------------------------------------------------------------------------------- sources


def _sources_dir(store: Store) -> Path:
    return store.root / "imgcore" / "sources"


def record_source(store: Store, digests: Iterable[str], repository: str) -> None:
    """Remember that these blobs came from ``repository`` (``registry/path``): push mounts them from there."""
    d = _sources_dir(store)
    d.mkdir(parents=True, exist_ok=True)
    for digest in digests:
        path = d / digest.replace(":", "-")
        if repository in known_sources(store, digest):
            continue
        with path.open("a", encoding="utf-8") as f:
            f.write(repository + "\n")


def known_sources(store: Store, digest: str) -> list[str]:
    """Repositories (``registry/path``) a blob is known to exist in, most recent last."""
    try:
        text = (_sources_dir(store) / digest.replace(":", "-")).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line]


# ------------------------------------------------------------------------------------------------- pull


def _default_unpack(store: Store, layer: Descriptor) -> None:
    """Unpack one layer blob into ``<store>/imgcore/layers/<hex>`` with the Rust extractor (issue 3)."""
    import imgcore

    extract = getattr(imgcore, "extract_layer", None)
    if extract is None:
        raise ImgcoreError("pull --unpack: this build of imgcore has no layer extractor (imgcore.extract_layer)")
    layers = store.root / "imgcore" / "layers"
    dest = layers / layer.digest.split(":", 1)[1]
    if dest.exists():
        return
    tmp = layers / f".tmp-{dest.name}-{os.getpid()}-{threading.get_ident()}"
    tmp.mkdir(parents=True)
    try:
        extract(str(store.blob_path(layer.digest)), str(tmp))
        tmp.rename(dest)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _resolve_platform(platform: str | Platform | None) -> Platform:
    if isinstance(platform, Platform):
        return platform
    if platform is None:
        return Platform.host()
    try:
        return Platform.parse(platform)
    except ValueError as e:
        raise InvalidManifest(f"platform: {e}") from None


def _download_layer(
    client: RegistryClient,
    store: Store,
    repo: str,
    layer: Descriptor,
    progress: Progress,
    cancel: threading.Event,
) -> int:
    """Stream one blob into the store, resuming from a partial with Range. Returns the bytes fetched."""
    lid = short_id(layer.digest)
    fetched = 0
    failures = 0
    with store.ingest(layer.digest, layer.size) as ing:
        if ing.offset:
            progress.layer(lid, "Downloading", ing.offset, layer.size)
        else:
            progress.layer(lid, "Downloading", 0, layer.size)
        while ing.offset < layer.size:
            if cancel.is_set():
                raise _Cancelled
            try:
                with client.open_blob(repo, layer.digest, offset=ing.offset) as stream:
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
                if not e.retryable or failures >= client.retries:
                    raise
                failures += 1
                time.sleep(min(8.0, client.backoff * 2**failures))
        progress.layer(lid, "Verifying Checksum")
        ing.commit()
    progress.layer(lid, "Download complete")
    return fetched


def pull(
    ref: str | Reference,
    *,
    store: Store | None = None,
    platform: str | Platform | None = None,
    jobs: int = _DEFAULT_JOBS,
    unpack: bool | UnpackHook = False,
    progress: Progress | None = None,
    client: RegistryClient | None = None,
    insecure: Iterable[str] = (),
    ca_file: str | os.PathLike[str] | None = None,
) -> PullResult:
    """Pull an image by tag or digest from its registry into ``store``, as ``docker pull`` does.

    Args:
        ref: the image reference (``alpine``, ``host:5000/ns/app:1.0``, ``name@sha256:...``).
        platform: ``os/arch[/variant]`` to pick from a multi-platform image; the host's by default.
        jobs: layers downloaded at the same time.
        unpack: unpack each layer as soon as it is stored (True for the built-in extractor, or a hook).
        progress: where docker-style status lines go (nothing by default).
    """
    store = store if store is not None else Store()
    progress = progress if progress is not None else NullProgress()
    r = parse_reference(ref) if isinstance(ref, str) else ref.tagged()
    want = _resolve_platform(platform)
    client = client if client is not None else client_for(r.domain, insecure=insecure, ca_file=ca_file, jobs=jobs)
    repo = r.path
    target = r.digest or r.tag or "latest"
    progress.line(f"{r.digest or r.tag}: Pulling from {r.path}")

    top = client.get_manifest(repo, target)
    doc = parse_manifest_or_index(top.raw, top.media_type or None)
    index_raw: tuple[bytes, str] | None = None
    if isinstance(doc, Index):
        chosen = doc.for_platform(want)
        index_raw = (top.raw, doc.media_type)
        mresp = client.get_manifest(repo, chosen.digest)
        if mresp.digest != chosen.digest:
            raise InvalidManifest(f"pull {r}: index names {chosen.digest} but the registry served {mresp.digest}")
        manifest = Manifest.from_bytes(mresp.raw, mresp.media_type or None)
    else:
        manifest = doc
    mdigest = manifest.digest

    hook: UnpackHook | None = _default_unpack if unpack is True else (unpack or None)
    downloaded = 0
    statuses: dict[str, str] = {}
    all_present = all(store.has_blob(d.digest) for d in (manifest.config, *manifest.layers)) and store.has_blob(mdigest)

    # Config first: small, and it tells us the layers are for the platform we want.
    if not store.has_blob(manifest.config.digest):
        raw = client.get_blob(repo, manifest.config.digest)
        store.put_blob(raw, digest=manifest.config.digest, size=manifest.config.size)
        downloaded += len(raw)

    todo: list[Descriptor] = []
    seen: set[str] = set()
    for layer in manifest.layers:
        lid = short_id(layer.digest)
        if layer.digest in seen:
            continue
        seen.add(layer.digest)
        if store.has_blob(layer.digest):
            progress.layer(lid, "Already exists")
            statuses[layer.digest] = "Already exists"
        else:
            progress.layer(lid, "Pulling fs layer")
            todo.append(layer)

    cancel = threading.Event()
    unpack_futures: list[Future[None]] = []
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="imgcore-pull") as pool, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgcore-unpack") as unpacker:  # fmt: skip

            def fetch(layer: Descriptor) -> int:
                n = _download_layer(client, store, repo, layer, progress, cancel)
                if hook is not None:
                    progress.layer(short_id(layer.digest), "Extracting")
                    fut = unpacker.submit(_unpack_then_report, hook, store, layer, progress)
                    unpack_futures.append(fut)
                else:
                    progress.layer(short_id(layer.digest), "Pull complete")
                statuses[layer.digest] = "Pull complete"
                return n

            futures = [pool.submit(fetch, layer) for layer in todo]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                cancel.set()
                wait(futures)
                errors = [f.exception() for f in futures if f.exception() is not None]
                real = [e for e in errors if not isinstance(e, _Cancelled)]
                raise (real or errors)[0]  # type: ignore[misc]
            downloaded += sum(f.result() for f in futures)
            wait(unpack_futures)
            for f in unpack_futures:
                f.result()
    if hook is not None:
        for layer in manifest.layers:
            if statuses.get(layer.digest) == "Already exists":
                hook(store, layer)

    mdesc = store.put_manifest(manifest.raw, manifest.media_type)
    if index_raw is not None:
        store.put_manifest(*index_raw)
    record_source(store, [d.digest for d in (manifest.config, *manifest.layers)], f"{client.registry}/{repo}")
    before = store.tags().get(str(r))
    store.tag(r, mdesc)
    up_to_date = all_present and before is not None and before.digest == mdesc.digest
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
    )


def _push_blob(
    client: RegistryClient,
    store: Store,
    repo: str,
    blob: Descriptor,
    progress: Progress,
    chunk_size: int | None,
    show: bool,
) -> tuple[str, int]:
    """Make sure the registry has ``blob`` in ``repo``: skip, mount or upload. Returns (status, bytes uploaded)."""
    lid = short_id(blob.digest)

    def report(status: str, current: int | None = None) -> None:
        if show:
            progress.layer(lid, status, current, blob.size)

    if client.blob_size(repo, blob.digest, push=True) is not None:
        report("Layer already exists")
        return "Layer already exists", 0
    location: str | None = None
    prefix = client.registry + "/"
    for source in reversed(known_sources(store, blob.digest)):
        if not source.startswith(prefix) or source[len(prefix) :] == repo:
            continue
        from_repo = source[len(prefix) :]
        try:
            location = client.mount_blob(repo, blob.digest, from_repo)
        except RegistryError:
            location = None
            continue
        if location is None:
            status = f"Mounted from {from_repo}"
            report(status)
            return status, 0
        break
    report("Pushing", 0)
    with store.open_blob(blob.digest) as f:
        client.upload_blob(
            repo,
            blob.digest,
            blob.size,
            f,
            location=location,
            chunk_size=chunk_size,
            on_progress=lambda n: report("Pushing", n),
        )
    report("Pushed")
    return "Pushed", blob.size


def push(
    ref: str | Reference,
    *,
    store: Store | None = None,
    source: str | Reference | None = None,
    jobs: int = _DEFAULT_JOBS,
    chunk_size: int | None = None,
    progress: Progress | None = None,
    client: RegistryClient | None = None,
    insecure: Iterable[str] = (),
    ca_file: str | os.PathLike[str] | None = None,
) -> PushResult:
    """Push an image from the store to its registry, as ``docker push`` does.

    Args:
        ref: where to push (``host/ns/name:tag``); also the local image unless ``source`` names another one.
        chunk_size: upload blobs in PATCH chunks of this many bytes instead of one PUT.
    """
    store = store if store is not None else Store()
    progress = progress if progress is not None else NullProgress()
    r = parse_reference(ref) if isinstance(ref, str) else ref.tagged()
    local = parse_reference(source) if isinstance(source, str) else (source or r)
    desc = store.resolve(local)
    client = client if client is not None else client_for(r.domain, insecure=insecure, ca_file=ca_file, jobs=jobs)
    repo = r.path
    progress.line(f"The push refers to repository [{r.repository}]")
    raw = store.get_blob(desc.digest, verify=True)
    doc = parse_manifest_or_index(raw, desc.media_type or None)
    manifests: list[Manifest] = []
    if isinstance(doc, Index):
        for child in doc.manifests:
            if store.has_blob(child.digest):
                manifests.append(Manifest.from_bytes(store.get_blob(child.digest), child.media_type or None))
    else:
        manifests.append(doc)

    statuses: dict[str, str] = {}
    uploaded = 0
    blobs: dict[str, tuple[Descriptor, bool]] = {}
    for m in manifests:
        for layer in reversed(m.layers):
            blobs.setdefault(layer.digest, (layer, True))
        blobs.setdefault(m.config.digest, (m.config, False))
    for blob, show in blobs.values():
        if not store.has_blob(blob.digest):
            raise ImgcoreError(f"push {r}: blob {blob.digest} is not in the store")
        if show:
            progress.layer(short_id(blob.digest), "Preparing")
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="imgcore-push") as pool:
        futures = {
            digest: pool.submit(_push_blob, client, store, repo, blob, progress, chunk_size, show)
            for digest, (blob, show) in blobs.items()
        }
        wait(list(futures.values()), return_when=FIRST_EXCEPTION)
        for digest, fut in futures.items():
            status, n = fut.result()
            statuses[digest] = status
            uploaded += n
    if isinstance(doc, Index):
        for m in manifests:
            client.put_manifest(repo, m.digest, m.raw, m.media_type)
    target = r.digest or r.tag or "latest"
    digest = client.put_manifest(repo, target, raw, doc.media_type)
    record_source(store, list(blobs), f"{client.registry}/{repo}")
    progress.line(f"{r.tag or digest}: digest: {digest} size: {len(raw)}")
    return PushResult(str(r), digest, len(raw), uploaded, tuple(statuses.items()))


def _unpack_then_report(hook: UnpackHook, store: Store, layer: Descriptor, progress: Progress) -> None:
    hook(store, layer)
    progress.layer(short_id(layer.digest), "Pull complete")
