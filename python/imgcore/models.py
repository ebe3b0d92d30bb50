"""Typed, frozen models of OCI and Docker image documents, kept beside their raw bytes.

A model never does I/O. A document's digest is always the hash of its raw bytes (``raw``), never of a
re-serialisation, as go-containerregistry keeps ``Manifest()`` apart from ``RawManifest()``.
"""

from __future__ import annotations

import json
import platform as _platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imgcore._core import Digest, sha256
from imgcore.errors import InvalidDigest, InvalidManifest, UnsupportedMediaType

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "LAYER_MEDIA_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "REF_NAME",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "canonical_json",
    "parse_manifest_or_index",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
LAYER_MEDIA_TYPES = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_LAYER_NONDIST_GZIP,
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER,
    }
)


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces): the same document always has the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _load(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidManifest(f"{what}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidManifest(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def _document(
    raw: bytes, what: str, media_type: str | None, default: str, allowed: frozenset[str]
) -> tuple[dict[str, Any], str]:
    """A manifest or index's JSON and media type (the document's own, else the one given, else ``default``),
    checked against ``allowed`` and schemaVersion 2."""
    data = _load(raw, what)
    mt = data.get("mediaType") or media_type or default
    if mt not in allowed:
        raise UnsupportedMediaType(f"{what}: unsupported media type {mt!r}")
    if data.get("schemaVersion") != 2:
        raise InvalidManifest(f"{what}: schemaVersion must be 2, got {data.get('schemaVersion')!r}")
    return data, str(mt)


_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True)
class Platform:
    """An OCI platform: ``os/architecture[/variant]``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine().lower()
        arch = _GOARCH.get(machine, machine)
        variant = "v8" if arch == "arm64" else ("v7" if machine == "armv7l" else None)
        return cls("linux", arch, variant)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Platform:
        return cls(
            str(data.get("os", "")), str(data.get("architecture", "")), data.get("variant"), data.get("os.version")
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        return out

    def matches(self, other: Platform) -> bool:
        """True when ``other`` (a descriptor's platform) can run here; arm64's variant defaults to v8."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if self.variant is None or other.variant is None:
            return True
        return self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None
    platform: Platform | None = None
    urls: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.size < 0:
            raise InvalidManifest(f"descriptor {self.digest}: negative size {self.size}")

    @classmethod
    def from_json(cls, data: Any, where: str = "descriptor") -> Descriptor:
        if not isinstance(data, dict):
            raise InvalidManifest(f"{where}: expected an object")
        try:
            digest = str(Digest(data["digest"]))
            size = data["size"]
            media_type = data.get("mediaType", "")
        except KeyError as e:
            raise InvalidManifest(f"{where}: missing field {e.args[0]!r}") from None
        except (InvalidDigest, TypeError) as e:
            raise InvalidManifest(f"{where}: {e}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(f"{where}: size must be a non-negative integer, got {size!r}")
        plat = data.get("platform")
        urls = data.get("urls")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=dict(data["annotations"]) if data.get("annotations") else None,
            platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
            urls=tuple(urls) if urls else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    def with_annotations(self, annotations: Mapping[str, str] | None) -> Descriptor:
        return Descriptor(
            self.media_type,
            self.digest,
            self.size,
            dict(annotations) if annotations else None,
            self.platform,
            self.urls,
        )


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = None
    raw: bytes = field(default=b"", repr=False)

    @property
    def digest(self) -> str:
        return str(Digest(_sha(self.raw)))

    @classmethod
    def from_bytes(cls, raw: bytes, media_type: str | None = None) -> Manifest:
        data, mt = _document(raw, "manifest", media_type, OCI_MANIFEST, MANIFEST_TYPES)
        if "config" not in data:
            raise InvalidManifest("manifest: missing config descriptor")
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise InvalidManifest("manifest: layers must be a list")
        return cls(
            media_type=mt,
            config=Descriptor.from_json(data["config"], "manifest config"),
            layers=tuple(Descriptor.from_json(x, f"manifest layer {i}") for i, x in enumerate(layers)),
            annotations=data.get("annotations"),
            raw=raw,
        )

    @staticmethod
    def build(
        config: Descriptor,
        layers: list[Descriptor],
        *,
        media_type: str = OCI_MANIFEST,
        annotations: Mapping[str, str] | None = None,
    ) -> Manifest:
        """A new manifest serialised deterministically."""
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        if annotations:
            doc["annotations"] = dict(annotations)
        return Manifest.from_bytes(canonical_json(doc))


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = None
    raw: bytes = field(default=b"", repr=False)

    @property
    def digest(self) -> str:
        return str(Digest(_sha(self.raw)))

    @classmethod
    def from_bytes(cls, raw: bytes, media_type: str | None = None) -> Index:
        data, mt = _document(raw, "index", media_type, OCI_INDEX, INDEX_TYPES)
        manifests = data.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidManifest("index: manifests must be a list")
        return cls(
            media_type=mt,
            manifests=tuple(Descriptor.from_json(x, f"index manifest {i}") for i, x in enumerate(manifests)),
            annotations=data.get("annotations"),
            raw=raw,
        )

    def for_platform(self, want: Platform) -> Descriptor:
        """The manifest for ``want``, as docker resolves a manifest list."""
        for desc in self.manifests:
            if desc.platform is not None and want.matches(desc.platform):
                return desc
        have = ", ".join(str(d.platform) for d in self.manifests if d.platform) or "none"
        raise InvalidManifest(f"index: no manifest for platform {want} (available: {have})")


@dataclass(frozen=True)
class ImageConfig:
    """An image configuration (OCI ``config.v1`` / Docker ``container.image.v1``)."""

    data: Mapping[str, Any]
    raw: bytes = field(default=b"", repr=False)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ImageConfig:
        data = _load(raw, "image config")
        rootfs = data.get("rootfs")
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
            raise InvalidManifest("image config: missing rootfs.diff_ids")
        for d in rootfs["diff_ids"]:
            try:
                Digest(d)
            except (InvalidDigest, TypeError) as e:
                raise InvalidManifest(f"image config: bad diff_id: {e}") from None
        return cls(data=data, raw=raw)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageConfig:
        return cls.from_bytes(canonical_json(data))

    @property
    def digest(self) -> str:
        """The image ID: the sha256 of the config bytes, as docker's is."""
        return _sha(self.raw)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.data["rootfs"]["diff_ids"])

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.data.get("history") or [])

    @property
    def created(self) -> str | None:
        value = self.data.get("created")
        return value if isinstance(value, str) else None

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.data.get("config") or {})

    @property
    def platform(self) -> Platform:
        return Platform(str(self.data.get("os", "")), str(self.data.get("architecture", "")), self.data.get("variant"))


def _sha(raw: bytes) -> str:
    return sha256(raw)


def parse_manifest_or_index(raw: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parses a manifest or an index, deciding by ``mediaType`` in the document, then the one given, then shape."""
    data = _load(raw, "manifest")
    mt = data.get("mediaType") or media_type
    if mt in INDEX_TYPES or (mt is None and "manifests" in data):
        return Index.from_bytes(raw, mt)
    if mt in MANIFEST_TYPES or (mt is None and "layers" in data):
        return Manifest.from_bytes(raw, mt)
    raise UnsupportedMediaType(f"manifest: unsupported media type {mt!r}")
