"""The image value model (go-containerregistry's ``v1.Image``/``v1.Layer``): immutable values read from a store.

An :class:`Image` is what docker calls one: its ID is the digest of its config; ``digest`` is what a tag points
at (the manifest, or the index of a multi-platform image); ``tags`` are full normalised references. Its
``layers`` are :class:`Layer` values pairing each manifest descriptor with its diff_id.

Invariants:
- values never change; a new image is made by :mod:`imgcore.image.builder`, never by mutating one;
- the parsed documents keep their raw bytes (``manifest.raw``, ``config.raw``), and every digest is computed from
  those bytes;
- a value holds its store only to read blobs on demand (``Layer.open``); the store takes no part in equality.
"""

from __future__ import annotations

import datetime as _dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from imgcore._core import layer_index, sha256
from imgcore._humanize import parse_time, short_id
from imgcore.models import Descriptor, ImageConfig, Manifest, Platform
from imgcore.reference import Reference, parse
from imgcore.store import ContentStore

__all__ = ["Artifact", "ContainerConfig", "HistoryEntry", "Image", "Layer", "LayerEntry", "chain_ids"]


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI ChainIDs: ``chain[0] = diff[0]``, ``chain[i] = sha256(chain[i-1] + " " + diff[i])``."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha256(f"{out[-1]} {d}".encode()))
    return out


@dataclass(frozen=True)
class LayerEntry:
    """One entry of a layer's tar, as :meth:`Layer.entries` lists it (whiteouts applied to nothing below)."""

    path: str
    type: str  # file, dir, symlink, hardlink, char, block, fifo
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: str


@dataclass(frozen=True)
class Layer:
    """One layer of an image: its blob (``digest``, ``size``, ``media_type``) and its ``diff_id``."""

    descriptor: Descriptor
    diff_id: str
    store: ContentStore = field(compare=False, repr=False)

    @property
    def digest(self) -> str:
        """The blob's digest (usually of the compressed tar)."""
        return self.descriptor.digest

    @property
    def size(self) -> int:
        """The blob's size in bytes, as the manifest declares it."""
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        """The descriptor's media type (OCI or docker, tar/gzip/zstd)."""
        return self.descriptor.media_type

    @property
    def stored(self) -> bool:
        """Whether the blob is in the store (a foreign or partially pulled layer may not be)."""
        return self.store.has_blob(self.digest)

    def open(self) -> BinaryIO:
        """The blob's bytes as stored (compressed), for reading."""
        return self.store.open_blob(self.digest)

    def entries(self) -> list[LayerEntry]:
        """What the layer's tar holds, path-sorted, read from the blob by the Rust index (no extraction)."""
        rows = layer_index([self.store.blob_path(self.digest)])
        return [
            LayerEntry(p, t, mode, uid, gid, size, mtime, link) for p, t, mode, uid, gid, size, mtime, link, _ in rows
        ]


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of the config's history (``docker history``), oldest first in :attr:`Image.history`."""

    created: _dt.datetime | None
    created_by: str
    comment: str
    author: str
    empty_layer: bool


@dataclass(frozen=True)
class ContainerConfig:
    """The typed view of the config's ``config`` section: what a container of the image runs with."""

    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContainerConfig:
        """From the config's ``config`` object (docker's capitalised keys); wrong types read as empty."""

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key)
            return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

        def keys(key: str) -> tuple[str, ...]:
            value = data.get(key)
            return tuple(sorted(str(k) for k in value)) if isinstance(value, dict) else ()

        labels = data.get("Labels")
        return cls(
            cmd=strings("Cmd"),
            entrypoint=strings("Entrypoint"),
            env=strings("Env"),
            working_dir=str(data.get("WorkingDir") or ""),
            user=str(data.get("User") or ""),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            exposed_ports=keys("ExposedPorts"),
            volumes=keys("Volumes"),
            stop_signal=str(data.get("StopSignal") or ""),
        )


@dataclass(frozen=True)
class Image:
    """One image in the store.

    ``manifest_desc``/``manifest`` are the image manifest (for a multi-platform index, the platform's entry);
    ``target`` is what ``index.json`` points at when that differs (the index itself); ``tags`` are full
    normalised references (``docker.io/library/tomcat:latest``). ``original`` is the docker schema 2 manifest
    the (OCI-typed) manifest was made from, when the image came in docker-typed: ``push`` and ``save`` send its
    bytes, so the registry's digest is kept.
    """

    manifest_desc: Descriptor
    manifest: Manifest
    config: ImageConfig
    tags: tuple[str, ...] = ()
    target: Descriptor | None = None
    store: ContentStore | None = field(default=None, compare=False, repr=False)
    original: Descriptor | None = None

    @property
    def id(self) -> str:
        """docker's IMAGE ID: the config digest (``sha256:…``)."""
        return self.manifest.config.digest

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the ID, as ``docker images`` shows it."""
        return short_id(self.id)

    @property
    def digest(self) -> str:
        """The digest a tag points at (the manifest, or the index of a multi-platform image)."""
        return (self.target or self.manifest_desc).digest

    @property
    def distribution_digest(self) -> str:
        """The digest the image has in a registry: the original docker manifest's when there is one."""
        return self.original.digest if self.original is not None else self.digest

    @property
    def digests(self) -> tuple[str, ...]:
        """Every digest that names this image: what a tag points at, the platform manifest, the original."""
        out = [self.digest, self.manifest_desc.digest]
        if self.original is not None:
            out.append(self.original.digest)
        return tuple(dict.fromkeys(out))

    @property
    def target_desc(self) -> Descriptor:
        """The descriptor a tag of this image records in ``index.json``."""
        return (self.target or self.manifest_desc).with_annotations(None)

    @functools.cached_property
    def created(self) -> _dt.datetime | None:
        """The config's ``created`` time (None when absent or unreadable)."""
        return parse_time(self.config.created)

    @functools.cached_property
    def references(self) -> tuple[Reference, ...]:
        """The tags, parsed."""
        return tuple(parse(t) for t in self.tags)

    @property
    def repo_tags(self) -> list[str]:
        """Familiar ``repo:tag`` strings, as ``docker inspect`` lists them."""
        return [r.familiar for r in self.references]

    @property
    def repo_digests(self) -> list[str]:
        """``repo@digest`` for every repository that tags this image (containerd-store docker shows these)."""
        seen: list[str] = []
        for r in self.references:
            item = f"{r.familiar_repository}@{self.digest}"
            if item not in seen:
                seen.append(item)
        return seen

    @property
    def platform(self) -> Platform:
        """The config's os/architecture/variant."""
        return self.config.platform

    @property
    def diff_ids(self) -> tuple[str, ...]:
        """The config's ``rootfs.diff_ids``, bottom layer first."""
        return tuple(self.config.diff_ids)

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers, bottom first, each paired with its diff_id (``""`` where the config lists none)."""
        if self.store is None:
            raise ValueError(f"image {self.id}: not read from a store, its layers cannot be opened")
        diffs = list(self.config.diff_ids)
        return tuple(
            Layer(d, diffs[i] if i < len(diffs) else "", self.store) for i, d in enumerate(self.manifest.layers)
        )

    @property
    def run_config(self) -> ContainerConfig:
        """The typed ``config`` section: Cmd, Entrypoint, Env, WorkingDir, User, labels, ports, volumes."""
        return ContainerConfig.from_dict(self.config.config)

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        """The config's history, oldest first."""
        return tuple(
            HistoryEntry(
                parse_time(h.get("created")),
                str(h.get("created_by") or ""),
                str(h.get("comment") or ""),
                str(h.get("author") or ""),
                bool(h.get("empty_layer")),
            )
            for h in self.config.history
            if isinstance(h, dict)
        )


@dataclass(frozen=True)
class Artifact:
    """An OCI artifact in the store (a manifest that is not an image: :attr:`Manifest.is_artifact`): listed by
    ``artifacts``, removed by ``rmi``/``prune``, never run."""

    manifest_desc: Descriptor
    manifest: Manifest
    tags: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        """The manifest's digest."""
        return self.manifest_desc.digest

    @property
    def artifact_type(self) -> str:
        """``artifactType``, else the config's media type."""
        return self.manifest.kind

    @property
    def size(self) -> int:
        """The bytes of the manifest, its config and its blobs, as the descriptors give them."""
        return self.manifest_desc.size + self.manifest.config.size + sum(d.size for d in self.manifest.layers)

    @functools.cached_property
    def references(self) -> tuple[Reference, ...]:
        """The tags, parsed."""
        return tuple(parse(t) for t in self.tags)
