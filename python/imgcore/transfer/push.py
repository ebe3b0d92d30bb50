"""``push``: an image from the store to its registry, as ``docker push`` does.

Invariants: blobs the registry already has are skipped, blobs known to come from another repository of the same
registry are mounted from there, the rest are uploaded (monolithic or chunked, streamed from the store, never
whole in memory); manifests go last, children of an index before the index, so the registry never holds a
manifest whose blobs it lacks. The local image is found by the one resolver.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from imgcore._progress import NullProgress, Progress, short_id
from imgcore.errors import ImgcoreError, NotAnImage, RegistryError
from imgcore.image.catalog import record_repo_digest, resolve, resolve_artifact
from imgcore.models import NON_DISTRIBUTABLE, Descriptor, Index, Manifest, parse_manifest_or_index
from imgcore.reference import Reference
from imgcore.reference import parse as parse_reference
from imgcore.registry.client import RegistryClient
from imgcore.store import ContentStore
from imgcore.transfer.sources import DEFAULT_JOBS, client_for, known_sources, record_source

__all__ = ["PushResult", "push"]


@dataclass(frozen=True)
class PushResult:
    """What :func:`push` did: the pushed reference, the manifest digest and size, bytes uploaded, per-blob status."""

    reference: str
    digest: str
    size: int
    uploaded: int
    layers: tuple[tuple[str, str], ...] = field(default=())


def _push_blob(
    client: RegistryClient,
    store: ContentStore,
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
    store: ContentStore,
    source: str | Reference | None = None,
    jobs: int = DEFAULT_JOBS,
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
    progress = progress if progress is not None else NullProgress()
    r = parse_reference(ref) if isinstance(ref, str) else ref.tagged()
    local = str(source) if source is not None else str(r)
    image_id: str | None = None
    try:
        image = resolve(store, local)
    except NotAnImage:  # an OCI artifact goes out as it came in (as oras pushes one)
        desc = resolve_artifact(store, local).manifest_desc
    else:
        # A docker-typed image goes out as its original manifest, so the registry keeps the digest it had.
        desc = image.original if image.original is not None else image.target_desc
        image_id = image.id
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
            if layer.urls and layer.media_type in NON_DISTRIBUTABLE:
                # docker's rule: a foreign layer stays where its URLs say; the manifest keeps the descriptor
                progress.layer(short_id(layer.digest), "Skipped foreign layer")
                statuses[layer.digest] = "Skipped foreign layer"
                continue
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
    if image_id is not None:
        record_repo_digest(store, image_id, r.repository, digest)
    progress.line(f"{r.tag or digest}: digest: {digest} size: {len(raw)}")
    return PushResult(str(r), digest, len(raw), uploaded, tuple(statuses.items()))
