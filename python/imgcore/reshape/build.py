"""The reshape side of the one builder: an in-memory base (layers dropped or swapped) extended by
:func:`imgcore.image.builder.append`, stored unlisted, verified, then tagged.

Invariants:
- the source image's config (Env, Cmd, labels, author, comment) is carried over; only what the reshape names
  changes (layers, ``rootfs.diff_ids``, history, ``-c`` changes);
- ``created`` is ``source_date_epoch``, else ``$SOURCE_DATE_EPOCH``, else the source image's own ``created`` to the
  second, so the same inputs give the same digests (crane keeps the time as well);
- nothing is listed in ``index.json`` before :func:`imgcore.reshape.verify.verify` re-hashed it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from imgcore.image.builder import Addition, append, manifest_for
from imgcore.image.model import Image
from imgcore.models import DOCKER_MANIFEST, Descriptor, ImageConfig
from imgcore.store import ContentStore, Lease

__all__ = ["derived", "rebuild", "reshape_epoch"]


def reshape_epoch(image: Image, source_date_epoch: int | None) -> int | None:
    """The ``created`` time of a reshaped image: ``source_date_epoch``, else ``$SOURCE_DATE_EPOCH`` (None: the
    builder reads it), else the source image's own ``created`` to the second (so a reshape is reproducible)."""
    if source_date_epoch is not None or os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        return source_date_epoch
    return int(image.created.timestamp()) if image.created is not None else 0


def derived(image: Image, data: dict[str, Any], layers: Sequence[Descriptor]) -> Image:
    """An in-memory image (not stored) with config ``data`` and ``layers``, typed like ``image``: the base the
    one builder extends when a reshape drops or swaps layers."""
    config = ImageConfig.from_dict(data)
    manifest = manifest_for(config, layers, docker=image.manifest.media_type == DOCKER_MANIFEST)
    desc = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
    return Image(desc, manifest, config, (), None, image.store)


def rebuild(
    store: ContentStore,
    lease: Lease,
    source: Image,
    base: Image,
    additions: Sequence[Addition],
    *,
    changes: Sequence[str] = (),
    source_date_epoch: int | None = None,
) -> Image:
    """``base`` (``source`` or one :func:`derived` from it) plus ``additions``, stored but not listed; the
    source's author and comment kept, ``created`` from :func:`reshape_epoch`."""
    data = base.config.data
    return append(
        store,
        lease,
        base,
        additions,
        changes=changes,
        author=data.get("author"),
        comment=data.get("comment"),
        source_date_epoch=reshape_epoch(source, source_date_epoch),
        index_entry=False,
    )
