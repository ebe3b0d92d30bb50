"""Verify, then tag: every image a reshape makes is re-read from the store and re-hashed before a tag names it.

Invariants:
- the manifest (or index and each of its manifests) and the config are re-read and re-hashed against their
  descriptors; every layer blob is decoded once (``_core.inspect_blob``, the layers in parallel: the GIL is
  released) and both its digest and size and its diff_id are checked against the manifest and the config (a
  layer the same operation already re-hashed with :func:`verify_layers`, in parallel with its other work, is
  not decoded twice);
- only then is the tag written (or, with no tag, the untagged ``index.json`` entry), so a tag never names an image
  whose bytes were not checked after they were written;
- a failure raises :class:`~imgcore.errors.DigestMismatch` or :class:`~imgcore.errors.InvalidManifest` naming the
  image and the blob; nothing is tagged.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor

from imgcore._core import inspect_blob
from imgcore.errors import DigestMismatch, InvalidManifest, SizeMismatch
from imgcore.image.catalog import load_image, tag_manifest
from imgcore.image.model import Image
from imgcore.models import Descriptor, ImageConfig, Index, Manifest, parse_manifest_or_index
from imgcore.reference import Reference
from imgcore.store import ContentStore, Lease

__all__ = ["finish", "verify", "verify_layers"]


def _manifest(store: ContentStore, desc: Descriptor) -> list[tuple[Descriptor, str, str]]:
    """Checks one image manifest and its config; returns (layer descriptor, diff_id, where) per layer."""
    where = f"verify manifest {desc.digest}"
    manifest = Manifest.from_bytes(store.get_blob(desc.digest, verify=True), desc.media_type or None)
    if len(manifest.raw) != desc.size:
        raise SizeMismatch(f"{where}: {len(manifest.raw)} bytes, descriptor says {desc.size}")
    config = ImageConfig.from_bytes(store.get_blob(manifest.config.digest, verify=True))
    if len(config.raw) != manifest.config.size:
        raise SizeMismatch(f"{where}: config {manifest.config.digest} is {len(config.raw)} bytes")
    diff_ids = config.diff_ids
    if len(diff_ids) != len(manifest.layers):
        raise InvalidManifest(f"{where}: {len(manifest.layers)} layers but {len(diff_ids)} diff_ids in its config")
    return [
        (d, diff_id, f"{where} layer {i}") for i, (d, diff_id) in enumerate(zip(manifest.layers, diff_ids, strict=True))
    ]


def _layer(store: ContentStore, desc: Descriptor, diff_id: str, where: str) -> None:
    digest, measured, _, size, _ = inspect_blob(store.blob_path(desc.digest))
    if digest != desc.digest:
        raise DigestMismatch(f"{where}: blob hashes to {digest}", expected=desc.digest, actual=digest)
    if size != desc.size:
        raise SizeMismatch(f"{where} {desc.digest}: {size} bytes, descriptor says {desc.size}")
    if measured != diff_id:
        raise DigestMismatch(
            f"{where} {desc.digest}: uncompressed tar hashes to {measured}, config says {diff_id}",
            expected=diff_id,
            actual=measured,
        )


def verify_layers(store: ContentStore, layers: Iterable[tuple[Descriptor, str]], where: str = "verify") -> set[str]:
    """Re-hashes each layer blob (digest, size) and its diff_id, the layers in parallel; returns the checked
    ``"<digest> <diff_id>"`` keys (what :func:`verify` may then skip: they were re-hashed in this operation)."""
    todo = {f"{d.digest} {diff_id}": (d, diff_id) for d, diff_id in layers}
    if todo:
        with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            for f in [pool.submit(_layer, store, d, diff_id, f"{where} layer") for d, diff_id in todo.values()]:
                f.result()
    return set(todo)


def verify(store: ContentStore, desc: Descriptor, checked: Collection[str] = ()) -> None:
    """Re-hashes the manifest or index ``desc`` names, its configs and every layer blob and diff_id (except the
    ``checked`` ones, which :func:`verify_layers` re-hashed earlier in the same operation)."""
    doc = parse_manifest_or_index(store.get_blob(desc.digest, verify=True), desc.media_type or None)
    children = list(doc.manifests) if isinstance(doc, Index) else [desc]
    layers: dict[str, tuple[Descriptor, str, str]] = {}
    for child in children:
        for d, diff_id, where in _manifest(store, child):
            if f"{d.digest} {diff_id}" not in checked:
                layers.setdefault(f"{d.digest} {diff_id}", (d, diff_id, where))
    if layers:
        with ThreadPoolExecutor(max_workers=min(len(layers), os.cpu_count() or 1)) as pool:
            for f in [pool.submit(_layer, store, *item) for item in layers.values()]:
                f.result()


def finish(
    store: ContentStore,
    lease: Lease,
    target: Descriptor,
    image_id: str,
    tag: Reference | None,
    checked: Collection[str] = (),
) -> Image:
    """Verifies the stored image ``target`` (its blobs held by ``lease``), then tags it (or lists it untagged);
    returns it as read back from the store. ``checked`` layers were re-hashed earlier by :func:`verify_layers`."""
    verify(store, target, checked)
    if tag is not None:
        tag_manifest(store, lease, tag, target, image_id)
    else:
        with lease.guard():
            store.add_untagged(target)
    return load_image(store, target, (str(tag),) if tag is not None else ())
