"""The one image builder (go-containerregistry's ``mutate.Append``): a base image (or none) plus additions gives
a new config, manifest and tag. ``commit``, ``import`` and ``load`` of classic archives all build through
:func:`append`, so config, history, media types and times are written the same way every time.

Invariants:
- the base is never changed: its config is deep-copied, its layers are reused by descriptor;
- every blob the new image needs is in the caller's lease before it is relied on, and the tag is written last,
  so a tag never points at an image with missing blobs and a concurrent ``prune`` sweeps none of them;
- media types follow the layers: a docker-typed base keeps docker types when every new layer can be expressed in
  them (gzip or plain tar); otherwise the new image is OCI-typed (docker's schema 2 has no zstd layer type);
- ``created`` is ``SOURCE_DATE_EPOCH`` when that is set (or ``source_date_epoch`` is given), else now, so
  reproducible builds give the same digests;
- documents are canonical JSON (sorted keys, no whitespace): the same content gives the same digest.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from imgcore.errors import InvalidArgument
from imgcore.image.catalog import keep_untagged, load_image, tag_manifest
from imgcore.image.changes import apply_changes
from imgcore.image.model import Image
from imgcore.image.sizes import record_layer_size
from imgcore.models import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Manifest,
    Platform,
)
from imgcore.reference import Reference
from imgcore.store import ContentStore, Lease

__all__ = ["Addition", "append", "created_time", "manifest_for"]

_TO_DOCKER = {OCI_LAYER_GZIP: DOCKER_LAYER_GZIP, OCI_LAYER: DOCKER_LAYER}
_TO_OCI = {v: k for k, v in _TO_DOCKER.items()}


@dataclass(frozen=True)
class Addition:
    """One step added on top of the base: a stored layer blob with its diff_id, or (``layer=None``) a history
    entry marked ``empty_layer`` (a commit that changed nothing, a config-only change)."""

    layer: Descriptor | None
    diff_id: str | None = None
    uncompressed_size: int | None = None
    created_by: str = ""
    comment: str = ""
    author: str = ""


def created_time(source_date_epoch: int | None = None) -> str:
    """RFC 3339 time for ``created``: ``source_date_epoch`` or ``$SOURCE_DATE_EPOCH`` when set, else now."""
    if source_date_epoch is None:
        env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        if env:
            if not env.isdigit():
                raise InvalidArgument(f"SOURCE_DATE_EPOCH={env!r}: expected a number of seconds")
            source_date_epoch = int(env)
    if source_date_epoch is not None:
        return _dt.datetime.fromtimestamp(int(source_date_epoch), _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _media_types(base: Image | None, new_layers: Sequence[Descriptor]) -> tuple[bool, list[Descriptor]]:
    """(docker-typed?, the base's layers in that typing)."""
    base_layers = list(base.manifest.layers) if base is not None else []
    docker = base is not None and base.manifest.media_type == DOCKER_MANIFEST
    if docker and all(d.media_type in _TO_DOCKER or d.media_type in _TO_OCI for d in new_layers):
        return True, base_layers
    oci = [replace(d, media_type=_TO_OCI.get(d.media_type, d.media_type)) for d in base_layers]
    return False, oci


def manifest_for(config: ImageConfig, layers: Sequence[Descriptor], *, docker: bool = False) -> Manifest:
    """The manifest of ``config`` + ``layers``, with the config and manifest media types of one family (docker's
    schema 2 or OCI) and each layer typed in that family."""
    table = _TO_DOCKER if docker else _TO_OCI
    typed = [replace(d, media_type=table.get(d.media_type, d.media_type)) for d in layers]
    cfg_desc = Descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config.digest, len(config.raw))
    return Manifest.build(cfg_desc, typed, media_type=DOCKER_MANIFEST if docker else OCI_MANIFEST)


def append(
    store: ContentStore,
    lease: Lease,
    base: Image | None,
    additions: Sequence[Addition],
    *,
    changes: Sequence[str] = (),
    author: str | None = None,
    comment: str | None = None,
    platform: Platform | None = None,
    tag: Reference | None = None,
    source_date_epoch: int | None = None,
    index_entry: bool = True,
) -> Image:
    """Builds, stores and (when ``tag`` is given) tags the image ``base`` + ``additions``; returns it.

    The additions' layer blobs must already be stored and in ``lease``. ``changes`` are ``-c`` instructions
    applied to the config's ``config`` section; ``author``/``comment`` go to the config's top level as docker
    writes them (``docker inspect`` shows them). Without a base, ``platform`` (the host's by default) names the
    new image's os and architecture. With ``index_entry=False`` and no tag, the image is stored but not listed in
    ``index.json`` (the caller verifies it first, or makes it a platform of an index; the lease keeps it).
    """
    if tag is not None and tag.digest is not None:
        raise InvalidArgument(f"invalid tag {tag}: a tag cannot have a digest")
    created = created_time(source_date_epoch)
    if base is not None:
        cfg: dict[str, Any] = copy.deepcopy(dict(base.config.data))
    else:
        plat = platform or Platform.host()
        cfg = {"architecture": plat.architecture, "os": plat.os, "config": {}}
        if plat.variant:
            cfg["variant"] = plat.variant
    cfg["created"] = created
    cfg["config"] = apply_changes(dict(cfg.get("config") or {}), changes)
    for key, value in (("author", author), ("comment", comment)):
        if value:
            cfg[key] = value
        else:
            cfg.pop(key, None)
    rootfs = dict(cfg.get("rootfs") or {})
    diff_ids = list(rootfs.get("diff_ids") or [])
    history = list(cfg.get("history") or [])
    new_layers: list[Descriptor] = []
    for add in additions:
        entry: dict[str, Any] = {"created": created}
        for key, value in (("created_by", add.created_by), ("author", add.author), ("comment", add.comment)):
            if value:
                entry[key] = value
        if add.layer is None:
            entry["empty_layer"] = True
        else:
            if not add.diff_id:
                raise InvalidArgument(f"layer {add.layer.digest}: a new layer needs its diff_id")
            diff_ids.append(add.diff_id)
            new_layers.append(add.layer)
            if add.uncompressed_size is not None:
                record_layer_size(store, add.layer.digest, add.uncompressed_size)
        history.append(entry)
    cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    cfg["history"] = history
    config = ImageConfig.from_dict(cfg)

    docker, base_layers = _media_types(base, new_layers)
    manifest = manifest_for(config, base_layers + new_layers, docker=docker)
    lease.hold(config.digest)
    store.put_blob(config.raw, digest=config.digest)
    lease.hold(manifest.digest)
    mdesc = store.put_manifest(manifest.raw, manifest.media_type)
    if tag is not None:
        return load_image(store, tag_manifest(store, lease, tag, mdesc, config.digest), (str(tag),))
    if index_entry:
        return load_image(store, keep_untagged(store, lease, mdesc))
    return load_image(store, mdesc)
