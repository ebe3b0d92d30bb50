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

import contextlib
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from imgcore._progress import NullProgress, Progress, short_id
from imgcore.errors import ImgcoreError, InvalidArchive, InvalidManifest, RegistryError
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
    "LayerUnpacker",
    "LoadResult",
    "PullResult",
    "PushResult",
    "client_for",
    "known_sources",
    "load",
    "pull",
    "push",
    "record_source",
    "save",
]

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


class LayerUnpacker:
    """Unpacks pulled layers where containers will look for them, so the first ``create`` has nothing left to do.

    With the overlay driver each layer goes, in overlay form, to ``Containers.layer_dir(chain_id)`` (``diff/`` plus
    ``info.json``, as :meth:`Containers.ensure_layers` writes it), and layers are unpacked one by one as soon as
    their blob is stored, while later ones still download. With the copy driver the image is flattened once, after
    the last layer, by :meth:`Containers.ensure_rootfs`.
    """

    def __init__(self, store: Store, diff_ids: list[str], layers: tuple[Descriptor, ...]) -> None:
        if len(diff_ids) != len(layers):
            raise InvalidManifest(f"pull --unpack: {len(layers)} layers but {len(diff_ids)} diff_ids in the config")
        from imgcore.containers import Containers
        from imgcore.images import chain_ids

        self.store = store
        self.containers = Containers(store)
        self.driver = self.containers.default_driver()
        self.per_layer = self.driver == "overlay"
        self._jobs: dict[str, list[tuple[Descriptor, str, str]]] = {}
        for d, diff, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
            self._jobs.setdefault(d.digest, []).append((d, diff, chain))

    def unpack_layer(self, layer: Descriptor) -> None:
        """Overlay driver: unpack one stored layer into the shared layer cache (idempotent, locked)."""
        for desc, diff_id, chain in self._jobs[layer.digest]:
            self._unpack_one(desc, diff_id, chain)

    def _unpack_one(self, desc: Descriptor, diff_id: str, chain: str) -> None:
        self.containers.ensure_layer(desc, diff_id, chain)

    def finish(self, manifest_desc: Descriptor, manifest: Manifest, config_raw: bytes) -> None:
        """Copy driver: flatten the whole image once all its layers are stored."""
        if self.per_layer:
            return
        from imgcore.images import Image
        from imgcore.models import ImageConfig

        image = Image(manifest_desc, manifest, ImageConfig.from_bytes(config_raw))
        self.containers.ensure_rootfs(image)


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
            attempt_start = ing.offset
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


def pull(
    ref: str | Reference,
    *,
    store: Store | None = None,
    platform: str | Platform | None = None,
    jobs: int = _DEFAULT_JOBS,
    unpack: bool = False,
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
        unpack: unpack the layers for containers while pulling (see :class:`LayerUnpacker`).
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
    try:
        doc = parse_manifest_or_index(top.raw, top.media_type or None)
    except InvalidManifest as e:
        raise type(e)(f"pull {r}: {e}") from None
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

    downloaded = 0
    statuses: dict[str, str] = {}
    all_present = all(store.has_blob(d.digest) for d in (manifest.config, *manifest.layers)) and store.has_blob(mdigest)

    # Config first: small, and it tells us the layers are for the platform we want.
    if store.has_blob(manifest.config.digest):
        config_raw = store.get_blob(manifest.config.digest)
    else:
        config_raw = client.get_blob(repo, manifest.config.digest)
        store.put_blob(config_raw, digest=manifest.config.digest, size=manifest.config.size)
        downloaded += len(config_raw)
    unpacker: LayerUnpacker | None = None
    if unpack:
        from imgcore.models import ImageConfig

        unpacker = LayerUnpacker(store, ImageConfig.from_bytes(config_raw).diff_ids, manifest.layers)

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
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="imgcore-pull") as pool, \
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="imgcore-unpack") as unpack_pool:  # fmt: skip
        if per_layer:
            assert unpacker is not None
            unpack_futures += [unpack_pool.submit(unpacker.unpack_layer, layer) for layer in present]

        def fetch(layer: Descriptor) -> int:
            n = _download_layer(client, store, repo, layer, progress, cancel)
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


def _unpack_then_report(unpacker: LayerUnpacker, layer: Descriptor, progress: Progress) -> None:
    unpacker.unpack_layer(layer)
    progress.layer(short_id(layer.digest), "Pull complete")


# ------------------------------------------------------------------------------------------------- save / load

_DOCKER_NAME = "io.containerd.image.name"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load` stored: ``(name or None, manifest descriptor)`` per image."""

    images: tuple[tuple[str | None, Descriptor], ...]
    format: str


def _image_blobs(store: Store, desc: Descriptor) -> tuple[Manifest, list[Descriptor]]:
    raw = store.get_blob(desc.digest)
    doc = parse_manifest_or_index(raw, desc.media_type or None)
    if isinstance(doc, Index):
        child = doc.for_platform(Platform.host())
        return _image_blobs(store, child)
    return doc, [manifest_descriptor(doc), doc.config, *doc.layers]


def manifest_descriptor(m: Manifest) -> Descriptor:
    return Descriptor(m.media_type, m.digest, len(m.raw))


def save(
    refs: Iterable[str | Reference],
    output: str | os.PathLike[str] | BinaryIO,
    *,
    store: Store | None = None,
    format: str = "docker",
) -> list[str]:
    """Write images to an archive, as ``docker save`` does. Returns the names written.

    Formats: ``docker`` (docker 25+'s layout: an OCI layout plus the classic ``manifest.json`` and
    ``repositories``, readable by every docker version and by skopeo's ``docker-archive:``), ``oci`` (an OCI image
    layout as a tar) and ``oci-dir`` (an OCI image layout directory, ``output`` being the directory).
    """
    import json
    import tarfile

    if format not in ("docker", "oci", "oci-dir"):
        raise ImgcoreError(f"save: unknown format {format!r} (docker, oci, oci-dir)")
    store = store if store is not None else Store()
    images: list[tuple[Reference | None, Manifest, list[Descriptor]]] = []
    for ref in refs:
        text = str(ref)
        try:
            r: Reference | None = parse_reference(text) if isinstance(ref, str) else ref
            desc = store.resolve(r) if r is not None else None
        except ImgcoreError:
            r, desc = None, None
        if desc is None:
            desc = store.resolve(parse_reference(f"x@{text}")) if text.startswith("sha256:") else None
        if desc is None:
            from imgcore.errors import ImageNotFound

            raise ImageNotFound(f"save: no such image: {text}")
        manifest, blobs = _image_blobs(store, desc)
        images.append((r if r is not None and r.digest is None else None, manifest, blobs))

    index_entries = []
    docker_manifest = []
    repositories: dict[str, dict[str, str]] = {}
    blobs_by_digest: dict[str, Descriptor] = {}
    for r, manifest, blobs in images:
        for b in blobs:
            blobs_by_digest.setdefault(b.digest, b)
        annotations = {_DOCKER_NAME: str(r), "org.opencontainers.image.ref.name": r.tag or "latest"} if r else None
        index_entries.append(manifest_descriptor(manifest).with_annotations(annotations).to_json())
        docker_manifest.append(
            {
                "Config": f"blobs/sha256/{manifest.config.digest.split(':', 1)[1]}",
                "RepoTags": [r.familiar] if r and r.tag else [],
                "Layers": [f"blobs/sha256/{layer.digest.split(':', 1)[1]}" for layer in manifest.layers],
            }
        )
        if r and r.tag and manifest.layers:
            repositories.setdefault(r.familiar_repository, {})[r.tag] = manifest.layers[-1].digest.split(":", 1)[1]
    meta: dict[str, bytes] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index_entries}
        ).encode(),
    }
    if format == "docker":
        meta["manifest.json"] = json.dumps(docker_manifest).encode()
        if repositories:
            meta["repositories"] = json.dumps(repositories).encode()

    if format == "oci-dir":
        if not isinstance(output, str | os.PathLike):
            raise ImgcoreError("save: the oci-dir format needs a directory path")
        out_dir = Path(output)
        (out_dir / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        import shutil

        for digest in blobs_by_digest:
            dest = out_dir / "blobs" / "sha256" / digest.split(":", 1)[1]
            if not dest.exists():
                shutil.copyfile(store.blob_path(digest), dest)
        for name, data in meta.items():
            (out_dir / name).write_bytes(data)
        return [str(r) for r, _, _ in images if r]

    def add(tf: tarfile.TarFile, name: str, size: int, fileobj: BinaryIO, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, 0
        tf.addfile(info, fileobj)

    import io

    opened: BinaryIO | None = None
    if isinstance(output, str | os.PathLike):
        target = Path(output)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        opened = tmp.open("wb")
        fileobj: BinaryIO = opened
    else:
        fileobj = output
    try:
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for dirname in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(dirname)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                tf.addfile(info)
            for digest in blobs_by_digest:
                with store.open_blob(digest) as f:
                    add(tf, f"blobs/sha256/{digest.split(':', 1)[1]}", store.blob_size(digest), f)
            for name, data in meta.items():
                add(tf, name, len(data), io.BytesIO(data))
        if opened is not None:
            opened.flush()
            os.fsync(opened.fileno())
            opened.close()
            opened = None
            tmp.replace(target)
    finally:
        if opened is not None:
            opened.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return [str(r) for r, _, _ in images if r]


class _Staged:
    """An archive's regular files, spooled into a private directory inside the store (same filesystem)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, Path] = {}
        self.links: dict[str, str] = {}

    def path(self, name: str, where: str) -> Path:
        name = _clean_name(name, where)
        for _ in range(16):
            if name in self.files:
                return self.files[name]
            if name in self.links:
                name = self.links[name]
                continue
            break
        raise InvalidArchive(f"{where}: the archive has no file {name!r}")

    def has(self, name: str) -> bool:
        try:
            self.path(name, "")
        except InvalidArchive:
            return False
        return True


def _clean_name(name: str, where: str) -> str:
    import posixpath

    norm = posixpath.normpath(name.lstrip("/")) if name else ""
    if name.startswith("/") or norm.startswith("../") or norm == ".." or not norm or norm == ".":
        raise InvalidArchive(f"{where}: unsafe or empty name {name!r} in archive")
    return norm


def _stage_tar(src: str | os.PathLike[str] | BinaryIO, staging: Path) -> _Staged:
    import tarfile

    staged = _Staged(staging)
    where = f"load {src}" if isinstance(src, str | os.PathLike) else "load"
    n = 0
    try:
        tf = (
            tarfile.open(src, mode="r:*")  # noqa: SIM115
            if isinstance(src, str | os.PathLike)
            else tarfile.open(fileobj=src, mode="r|*")  # noqa: SIM115
        )
        with tf:
            for member in tf:
                if member.isdir():
                    continue
                name = _clean_name(member.name, where)
                if member.issym() or member.islnk():
                    import posixpath

                    target = member.linkname
                    if member.issym():
                        target = posixpath.join(posixpath.dirname(name), target)
                    staged.links[name] = _clean_name(target, where)
                    continue
                if not member.isfile():
                    continue
                n += 1
                dest = staging / f"f{n}"
                reader = tf.extractfile(member)
                if reader is None:
                    continue
                with dest.open("wb") as out:
                    while chunk := reader.read(1 << 20):
                        out.write(chunk)
                staged.files[name] = dest
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise InvalidArchive(f"{where}: not a readable tar archive: {e}") from None
    return staged


def _stage_dir(src: Path) -> _Staged:
    staged = _Staged(src)
    for p in src.rglob("*"):
        if p.is_file() and not p.is_symlink():
            staged.files[p.relative_to(src).as_posix()] = p
    return staged


def _sha256_path(path: Path) -> str:
    from imgcore import sha256_file

    return str(sha256_file(str(path)))


def _verified_blob(staged: _Staged, desc: Descriptor, where: str) -> Path:
    """The staged file for ``desc`` (``blobs/<alg>/<hex>``), checked for size and digest."""
    alg, _, hexpart = desc.digest.partition(":")
    path = staged.path(f"blobs/{alg}/{hexpart}", f"{where}: blob {desc.digest}")
    size = path.stat().st_size
    if size != desc.size:
        from imgcore.errors import SizeMismatch

        raise SizeMismatch(
            f"{where}: blob {desc.digest}: {size} bytes, descriptor says {desc.size}", expected=desc.size, actual=size
        )
    actual = _sha256_path(path)
    if actual != desc.digest:
        from imgcore.errors import DigestMismatch

        raise DigestMismatch(f"{where}: blob {desc.digest} hashes to {actual}", expected=desc.digest, actual=actual)
    return path


def _diff_id(path: Path, where: str) -> tuple[str, str]:
    """(diff_id, OCI layer media type) of a layer file that may be plain tar or gzip."""
    import gzip
    import zlib

    from imgcore import Hasher

    with path.open("rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(_ZSTD_MAGIC):
            from imgcore.errors import UnsupportedMediaType

            raise UnsupportedMediaType(f"{where}: zstd-compressed layers in a docker archive are not supported")
        if not head.startswith(_GZIP_MAGIC):
            return _sha256_path(path), "application/vnd.oci.image.layer.v1.tar"
        h = Hasher()
        try:
            with gzip.GzipFile(fileobj=f) as g:
                while chunk := g.read(1 << 20):
                    h.update(chunk)
        except (OSError, EOFError, zlib.error) as e:
            raise InvalidArchive(f"{where}: broken gzip stream: {e}") from None
        return str(h.digest()), "application/vnd.oci.image.layer.v1.tar+gzip"


def _names_from(text: str | None) -> Reference | None:
    if not text:
        return None
    try:
        r = parse_reference(text)
    except ImgcoreError:
        return None
    return r


_Plan = list[tuple[Reference | None, list[tuple[Descriptor, Path]], Descriptor]]


def _plan_oci(staged: _Staged, where: str) -> _Plan:
    """Verify an OCI layout (or docker 25+ archive) and list what to store: (name, blobs, manifest descriptor)."""
    import json

    try:
        index = json.loads(staged.path("index.json", where).read_bytes())
        entries = [Descriptor.from_json(m, f"{where}: index.json") for m in index["manifests"]]
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidManifest(f"{where}: index.json is not an OCI index: {e}") from None
    repo_tags: dict[str, list[str]] = {}
    if staged.has("manifest.json"):
        try:
            for item in json.loads(staged.path("manifest.json", where).read_bytes()):
                cfg = str(item["Config"]).rsplit("/", 1)[-1].removesuffix(".json")
                repo_tags.setdefault(f"sha256:{cfg}", []).extend(item.get("RepoTags") or [])
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidManifest(f"{where}: manifest.json is malformed: {e}") from None
    plan: _Plan = []
    for entry in entries:
        blobs: list[tuple[Descriptor, Path]] = []
        mpath = _verified_blob(staged, entry, where)
        raw = mpath.read_bytes()
        doc = parse_manifest_or_index(raw, entry.media_type or None)
        blobs.append((Descriptor(doc.media_type, entry.digest, entry.size), mpath))
        manifest_desc = blobs[0][0]
        if isinstance(doc, Index):
            children = [c for c in doc.manifests if staged.has(f"blobs/sha256/{c.digest.split(':', 1)[1]}")]
            if not children:
                raise InvalidArchive(f"{where}: index {entry.digest} has none of its manifests in the archive")
            chosen = next((c for c in children if c.platform and Platform.host().matches(c.platform)), children[0])
            cpath = _verified_blob(staged, chosen, where)
            doc = Manifest.from_bytes(cpath.read_bytes(), chosen.media_type or None)
            manifest_desc = Descriptor(doc.media_type, chosen.digest, chosen.size)
            blobs.append((manifest_desc, cpath))
        for d in (doc.config, *doc.layers):
            blobs.append((d, _verified_blob(staged, d, where)))
        names = list(repo_tags.get(doc.config.digest, []))
        ann = entry.annotations or {}
        if not names and ann.get(_DOCKER_NAME):
            names.append(ann[_DOCKER_NAME])
        if not names and "/" in ann.get("org.opencontainers.image.ref.name", ""):
            names.append(ann["org.opencontainers.image.ref.name"])
        refs: list[Reference | None] = [r for r in (_names_from(n) for n in names) if r is not None] or [None]
        for r in refs:
            plan.append((r, blobs, manifest_desc))
    return plan


def _plan_classic(staged: _Staged, where: str) -> _Plan:
    """Verify a classic docker-save archive (manifest.json, <id>/layer.tar) and build OCI manifests for it."""
    import json

    from imgcore.models import OCI_CONFIG, ImageConfig

    try:
        items = json.loads(staged.path("manifest.json", where).read_bytes())
        if not isinstance(items, list):
            raise TypeError("not a list")
    except (ValueError, TypeError) as e:
        raise InvalidManifest(f"{where}: manifest.json is malformed: {e}") from None
    plan: _Plan = []
    for i, item in enumerate(items):
        w = f"{where}: manifest.json[{i}]"
        try:
            cfg_name, layer_names, tags = str(item["Config"]), [str(x) for x in item["Layers"]], item.get("RepoTags")
        except (KeyError, TypeError) as e:
            raise InvalidManifest(f"{w}: missing {e}") from None
        cpath = staged.path(cfg_name, w)
        cfg_digest = _sha256_path(cpath)
        expected_hex = cfg_name.rsplit("/", 1)[-1].removesuffix(".json")
        if len(expected_hex) == 64 and f"sha256:{expected_hex}" != cfg_digest:
            from imgcore.errors import DigestMismatch

            raise DigestMismatch(f"{w}: config {cfg_name} hashes to {cfg_digest}",
                                 expected=f"sha256:{expected_hex}", actual=cfg_digest)  # fmt: skip
        config = ImageConfig.from_bytes(cpath.read_bytes())
        if len(config.diff_ids) != len(layer_names):
            n_ids = len(config.diff_ids)
            raise InvalidManifest(f"{w}: {len(layer_names)} layers but the config lists {n_ids} diff_ids")
        config_desc = Descriptor(OCI_CONFIG, cfg_digest, cpath.stat().st_size)
        blobs: list[tuple[Descriptor, Path]] = [(config_desc, cpath)]
        layers = []
        for name, want in zip(layer_names, config.diff_ids, strict=True):
            lpath = staged.path(name, w)
            diff_id, media_type = _diff_id(lpath, f"{w}: layer {name}")
            if diff_id != want:
                from imgcore.errors import DigestMismatch

                raise DigestMismatch(f"{w}: layer {name} has diff_id {diff_id}, the config says {want}",
                                     expected=want, actual=diff_id)  # fmt: skip
            digest = diff_id if media_type.endswith(".tar") else _sha256_path(lpath)
            d = Descriptor(media_type, digest, lpath.stat().st_size)
            layers.append(d)
            blobs.append((d, lpath))
        manifest = Manifest.build(config_desc, layers)
        mdesc = manifest_descriptor(manifest)
        mpath = staged.root / f"manifest-{i}"
        mpath.write_bytes(manifest.raw)
        blobs.insert(0, (mdesc, mpath))
        refs: list[Reference | None] = [r for r in (_names_from(t) for t in (tags or [])) if r is not None]
        refs = refs or [None]
        for r in refs:
            plan.append((r, blobs, mdesc))
    return plan


def load(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    store: Store | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Load images from a docker-save archive (classic or docker 25+), an OCI layout tar or an OCI layout directory.

    Every blob is verified (digests, sizes, diff_ids) before anything is stored: a broken archive stores nothing.
    """
    import shutil
    import tempfile

    store = store if store is not None else Store()
    progress = progress if progress is not None else NullProgress()
    where = f"load {os.fspath(source)}" if isinstance(source, str | os.PathLike) else "load"
    tmp_root = store.root / "imgcore" / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="load-", dir=tmp_root))
    try:
        if isinstance(source, str | os.PathLike) and Path(source).is_dir():
            staged = _stage_dir(Path(source))
        else:
            staged = _stage_tar(source, staging)
        if staged.has("index.json") and staged.has("oci-layout"):
            plan, fmt = _plan_oci(staged, where), "docker" if staged.has("manifest.json") else "oci"
        elif staged.has("manifest.json"):
            plan, fmt = _plan_classic(staged, where), "docker-classic"
        else:
            raise InvalidArchive(f"{where}: neither an OCI layout (index.json) nor a docker archive (manifest.json)")
        if not plan:
            raise InvalidArchive(f"{where}: the archive has no images")
        # Everything checked out: now store.
        stored: set[str] = set()
        out: list[tuple[str | None, Descriptor]] = []
        for r, blobs, mdesc in plan:
            for d, path in blobs:
                if d.digest not in stored and not store.has_blob(d.digest):
                    store.put_blob(path, digest=d.digest, size=d.size)
                stored.add(d.digest)
            if r is not None:
                store.tag(r, mdesc)
                progress.line(f"Loaded image: {r.familiar}")
            else:
                store.add_untagged(mdesc)
                config_digest = next(d.digest for d, _ in blobs if d is not mdesc and "config" in d.media_type)
                progress.line(f"Loaded image ID: {config_digest}")
            out.append((str(r) if r is not None else None, mdesc))
        return LoadResult(tuple(out), fmt)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
