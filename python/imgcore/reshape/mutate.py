"""``rebase``, ``append`` and ``config``: new images from old ones by swapping base layers, adding layer tarballs
or changing the config, without a container (crane's ``rebase``/``append``/``mutate``).

Invariants:
- ``rebase`` checks that the old base's diff_ids are the bottom of the image's (:class:`~imgcore.errors.BaseMismatch`
  otherwise, naming the first layer that differs); the result's layers, ``rootfs.diff_ids`` and history are the
  new base's followed by the image's own above the old base, the image's config (Env, Cmd, labels, ...) kept;
- ``append`` stores each tarball (tar, gzip or zstd, checked to be a readable tar; a plain tar is gzip-compressed
  deterministically) and adds one history entry per layer whose ``created_by`` names it; an image tagged as an
  index gets the layers on every platform, and the new index keeps each platform and annotation;
- ``config`` applies ``-c`` instructions (:func:`imgcore.image.changes.apply_changes`) and adds an ``empty_layer``
  history entry saying what changed, no layer; an index is changed on every platform;
- every result is built by the one builder, verified (every blob and diff_id re-hashed) and only then tagged;
  ``created`` is kept from the source image unless ``SOURCE_DATE_EPOCH`` is set, so the same inputs give the
  same digests.
"""

from __future__ import annotations

import copy
import os
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imgcore._core import sha256
from imgcore.errors import BaseMismatch, BlobNotFound, InvalidArgument
from imgcore.image.builder import Addition
from imgcore.image.catalog import load_image
from imgcore.image.changes import apply_changes
from imgcore.image.importer import store_layer
from imgcore.image.model import Image
from imgcore.models import Descriptor, Index, canonical_json, parse_manifest_or_index
from imgcore.reference import parse
from imgcore.reshape.build import derived, rebuild
from imgcore.reshape.verify import finish
from imgcore.store import ContentStore, Lease

__all__ = ["append_layers", "rebase", "reconfigure"]


def _hold(lease: Lease, *images: Image) -> None:
    with lease.guard():
        for img in images:
            lease.add(img.digest, img.manifest_desc.digest, img.id, *(d.digest for d in img.manifest.layers))


def _history_above(image: Image, old: Image) -> list[Any]:
    """The image's history entries above the old base: after the old base's own entries when the image's history
    starts with as many layers as the old base has, else after the entry of its ``len(old layers)``-th layer."""
    history = list(image.config.history)
    k = len(old.manifest.layers)
    h_old = len(old.config.history)
    head = history[:h_old]
    if h_old and sum(1 for h in head if isinstance(h, dict) and not h.get("empty_layer")) == k:
        return copy.deepcopy(history[h_old:])
    seen = 0
    for i, h in enumerate(history):
        if seen == k:
            return copy.deepcopy(history[i:])
        if isinstance(h, dict) and not h.get("empty_layer"):
            seen += 1
    return []


def _rebased(image: Image, old: Image, new: Image) -> Image:
    k = len(old.diff_ids)
    for i, (mine, theirs) in enumerate(zip(image.diff_ids, old.diff_ids, strict=False)):
        if mine != theirs:
            raise BaseMismatch(
                f"rebase {image.short_id}: {old.short_id} is not its base: layer {i} is {mine}, the old base has "
                f"{theirs}"
            )
    if k > len(image.diff_ids):
        raise BaseMismatch(
            f"rebase {image.short_id}: {old.short_id} is not its base: it has {k} layers, the image "
            f"{len(image.diff_ids)}"
        )
    data = copy.deepcopy(dict(image.config.data))
    data["rootfs"] = {"type": "layers", "diff_ids": [*new.diff_ids, *image.diff_ids[k:]]}
    data["history"] = [*copy.deepcopy(list(new.config.history)), *_history_above(image, old)]
    return derived(image, data, [*new.manifest.layers, *image.manifest.layers[k:]])


def rebase(
    store: ContentStore,
    image: Image,
    old_base: Image,
    new_base: Image,
    tag: str | None = None,
    *,
    source_date_epoch: int | None = None,
) -> Image:
    """``imgcore rebase IMAGE --old-base OLD --new-base NEW -t OUT`` (crane's ``rebase``): ``image`` with the
    layers of ``old_base`` at its bottom replaced by ``new_base``'s; returns the new image."""
    ref = parse(tag) if tag else None
    with store.lease("rebase") as lease:
        _hold(lease, image, old_base, new_base)
        new = rebuild(store, lease, image, _rebased(image, old_base, new_base), [], source_date_epoch=source_date_epoch)
        return finish(store, lease, new.manifest_desc, new.id, ref)


def _each_platform(
    store: ContentStore, lease: Lease, image: Image, build: Callable[[Image], Image]
) -> tuple[Descriptor, str]:
    """``build`` applied to the image, or to every platform of the index it was tagged as; returns the stored
    manifest or index descriptor and the ID of the image ``image`` stood for."""
    target = image.target
    if target is None:
        new = build(image)
        return new.manifest_desc, new.id
    doc = parse_manifest_or_index(store.get_blob(target.digest, verify=True), target.media_type or None)
    if not isinstance(doc, Index):
        new = build(image)
        return new.manifest_desc, new.id
    missing = [str(d.platform or d.digest) for d in doc.manifests if not store.has_blob(d.digest)]
    if missing:
        raise BlobNotFound(
            f"index {target.digest}: the manifests of {', '.join(missing)} are not in the store; a change to an "
            "index needs every platform (name one platform's manifest by digest to change only it)",
            digest=target.digest,
        )
    children: list[dict[str, Any]] = []
    chosen = image.id
    for child in doc.manifests:
        one = load_image(store, child.with_annotations(None))
        _hold(lease, one)
        new = build(one)
        if child.digest == image.manifest_desc.digest:
            chosen = new.id
        entry = Descriptor(
            new.manifest_desc.media_type, new.manifest_desc.digest, new.manifest_desc.size,
            child.annotations, child.platform, child.urls,
        ).to_json()  # fmt: skip
        children.append(entry)
    raw_doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": doc.media_type, "manifests": children}
    if doc.annotations:
        raw_doc["annotations"] = dict(doc.annotations)
    raw = canonical_json(raw_doc)
    lease.hold(sha256(raw))
    desc = store.put_manifest(raw, doc.media_type)
    return desc, chosen


def append_layers(
    store: ContentStore,
    image: Image,
    layers: Sequence[str | os.PathLike[str]],
    tag: str | None = None,
    *,
    source_date_epoch: int | None = None,
) -> Image:
    """``imgcore append IMAGE LAYER.tar... -t OUT`` (crane's ``append``, with a history entry per layer): the
    tarballs added on top, to every platform when ``image`` is an index; returns the new image."""
    if not layers:
        raise InvalidArgument("append: name at least one layer tarball")
    ref = parse(tag) if tag else None
    with store.lease("append") as lease:
        additions = []
        for src in layers:
            name = Path(src).name
            desc, diff_id, size = store_layer(store, lease, src, os.fspath(src))
            additions.append(Addition(desc, diff_id, size, created_by=f"imgcore append {name}"))

        def build(one: Image) -> Image:
            return rebuild(store, lease, one, one, additions, source_date_epoch=source_date_epoch)

        desc, image_id = _each_platform(store, lease, image, build)
        return finish(store, lease, desc, image_id, ref)


def reconfigure(
    store: ContentStore,
    image: Image,
    changes: Sequence[str],
    tag: str | None = None,
    *,
    source_date_epoch: int | None = None,
) -> Image:
    """``imgcore config IMAGE -c 'ENV A=B' ... -t OUT``: the config changed by ``-c`` instructions, no layer
    added (an ``empty_layer`` history entry records the change); every platform of an index; returns it."""
    if not changes:
        raise InvalidArgument("config: give at least one -c change")
    apply_changes({}, changes)  # a bad -c is refused before anything is stored
    ref = parse(tag) if tag else None
    what = "imgcore config " + " ".join(f"-c {shlex.quote(c)}" for c in changes)
    with store.lease("config") as lease:

        def build(one: Image) -> Image:
            return rebuild(
                store, lease, one, one, [Addition(None, created_by=what)], changes=changes,
                source_date_epoch=source_date_epoch,
            )  # fmt: skip

        desc, image_id = _each_platform(store, lease, image, build)
        return finish(store, lease, desc, image_id, ref)
