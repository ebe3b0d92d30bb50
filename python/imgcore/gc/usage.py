"""Disk usage in ``docker system df -v``'s terms: images (size, shared, unique), layers (uncompressed, stored,
users, unpacked), containers (writable layer), and what ``prune`` would reclaim.

Invariants: it only reads (never takes the GC lock for long, never changes the store); sizes are docker's (an
image's SIZE sums its layers' uncompressed sizes, so a shared layer counts in each image and ``saved_by_sharing``
says how much storing it once saves); partial downloads and staging are counted, not hidden; trees are walked
iteratively.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from imgcore.containers.manager import Containers
from imgcore.errors import BlobNotFound
from imgcore.gc.collect import mark
from imgcore.image.catalog import catalog
from imgcore.image.model import Image, chain_ids
from imgcore.image.sizes import layer_size
from imgcore.layers.cache import LayerCache, tree_bytes
from imgcore.models import Descriptor
from imgcore.store import ContentStore, collecting

__all__ = ["ContainerUsage", "DiskUsage", "ImageUsage", "LayerUsage", "disk_usage"]


@dataclass(frozen=True)
class LayerUsage:
    """One layer of the store as ``df -v`` shows it: sizes (uncompressed, stored, unpacked) and its users."""

    digest: str
    diff_id: str
    media_type: str
    size: int  # uncompressed
    stored: int  # bytes of the blob on disk (0 when not stored)
    images: tuple[str, ...]  # image IDs using it
    unpacked: int = 0  # bytes of its unpacked directories (imgcore/layers/<chain id>), when unpacked

    @property
    def shared(self) -> bool:
        """Whether more than one image uses the layer (it is then stored once for all of them)."""
        return len(self.images) > 1


@dataclass(frozen=True)
class ImageUsage:
    """One image as ``df -v`` shows it: ``size`` sums its layers, ``shared_size`` the ones other images use too,
    ``containers`` counts the containers created from it."""

    image: Image
    size: int
    shared_size: int
    containers: int

    @property
    def unique_size(self) -> int:
        """Bytes of the layers only this image uses: what removing it alone would free."""
        return self.size - self.shared_size


@dataclass(frozen=True)
class ContainerUsage:
    """One container as ``df -v`` shows it: its writable layer's size and the image it was created from."""

    id: str
    name: str
    image: str
    size: int  # bytes of its writable layer (upper/) or private copy (rootfs/)
    driver: str
    created: str = ""


@dataclass(frozen=True)
class DiskUsage:
    """The whole store's usage (``docker system df -v``): per image, per layer, per container, plus the bytes
    no image reaches, the copy driver's baselines and partial downloads. Sizes are bytes."""

    images: tuple[ImageUsage, ...]
    layers: tuple[LayerUsage, ...]
    containers: tuple[ContainerUsage, ...]
    other_blobs: int = 0  # bytes of blobs no image reaches (what prune would sweep)
    baselines: int = 0  # bytes of the copy driver's flattened image copies (imgcore/rootfs/<top chain>)
    partial: int = 0  # bytes of partial downloads and load staging (imgcore/ingest, imgcore/tmp)

    @property
    def images_size(self) -> int:
        """Disk the images need: every layer counted once."""
        return sum(layer.size for layer in self.layers)

    @property
    def images_size_without_sharing(self) -> int:
        """The images' sizes summed, a shared layer counted once per image (what it would take unshared)."""
        return sum(i.size for i in self.images)

    @property
    def saved_by_sharing(self) -> int:
        """What shared layers save: the images' sizes summed minus every layer counted once."""
        return self.images_size_without_sharing - self.images_size

    @property
    def images_active(self) -> int:
        """How many images have at least one container (docker's ACTIVE column)."""
        return sum(1 for i in self.images if i.containers)

    @property
    def images_reclaimable(self) -> int:
        """Bytes of the layers no image with a container uses: what ``prune -a`` could free at most."""
        active = {i.image.id for i in self.images if i.containers}
        return sum(layer.size for layer in self.layers if not active.intersection(layer.images))

    @property
    def containers_size(self) -> int:
        """Bytes of every container's writable layer (or private copy) together."""
        return sum(c.size for c in self.containers)

    @property
    def stored(self) -> int:
        """Bytes of the layer blobs on disk (compressed)."""
        return sum(layer.stored for layer in self.layers)


def disk_usage(store: ContentStore) -> DiskUsage:
    """``docker system df -v``: images (size, shared, unique, containers), layers (uncompressed, stored, users),
    containers (writable layer)."""
    images_ = catalog(store)
    cache = LayerCache(store)
    containers = Containers(store).list()
    users: dict[str, set[str]] = {}
    meta: dict[str, Descriptor] = {}
    diff_of: dict[str, str] = {}
    unpacked: dict[str, dict[str, int]] = {}
    for img in images_:
        diffs = img.config.diff_ids
        chains = chain_ids(diffs)
        for i, layer in enumerate(img.manifest.layers):
            users.setdefault(layer.digest, set()).add(img.id)
            meta.setdefault(layer.digest, layer)
            if i < len(diffs):
                diff_of.setdefault(layer.digest, diffs[i])
                unpacked.setdefault(layer.digest, {})[chains[i]] = cache.unpacked_bytes(chains[i])
    layers = tuple(
        LayerUsage(
            digest=d,
            diff_id=diff_of.get(d, ""),
            media_type=meta[d].media_type,
            size=layer_size(store, meta[d]),
            stored=store.blob_size(d) if store.has_blob(d) else 0,
            images=tuple(sorted(users[d])),
            unpacked=sum(unpacked.get(d, {}).values()),
        )
        for d in sorted(users)
    )
    by_digest = {layer.digest: layer for layer in layers}
    images = []
    for img in images_:
        size = sum(by_digest[x.digest].size for x in img.manifest.layers)
        shared = sum(by_digest[x.digest].size for x in img.manifest.layers if by_digest[x.digest].shared)
        n = sum(
            1 for c in containers if c.image_id == img.id or c.manifest_digest in (img.manifest_desc.digest, img.digest)
        )
        images.append(ImageUsage(img, size, shared, n))
    cusage = []
    for c in containers:
        path = Path(c.path)
        upper = path / "upper"
        size = tree_bytes(upper if upper.is_dir() else path / "rootfs")
        cusage.append(
            ContainerUsage(str(c.id), str(c.name or ""), str(c.image), size, str(c.driver), str(c.created or ""))
        )
    with collecting(store.paths):
        keep = mark(store, containers)
    other = 0
    for d in store.list_blobs():
        if d not in keep:
            with contextlib.suppress(BlobNotFound):
                other += store.blob_size(d)
    baselines = cache.baselines_bytes()
    partial = sum(tree_bytes(d) for d in (store.paths.ingest, store.paths.tmp) if d.is_dir())
    return DiskUsage(tuple(images), layers, tuple(cusage), other, baselines, partial)
