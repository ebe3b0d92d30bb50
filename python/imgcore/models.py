"""Typed, frozen models of OCI and Docker image documents, kept beside their raw bytes.

A model never does I/O. A document's digest is always the hash of its raw bytes (``raw``), never of a
re-serialisation, as go-containerregistry keeps ``Manifest()`` apart from ``RawManifest()``.

Every document from outside is checked against its schema before use, with types, depths and sizes
(:mod:`imgcore._json` bounds the parse). A document that does not fit raises
:class:`~imgcore.errors.InvalidManifest` (:class:`~imgcore.errors.InvalidArchive` for docker-save's
``manifest.json`` and ``repositories``) naming the document and the field path::

    manifest sha256:ab12…: layers[3].size: expected a non-negative integer, got "12"

and never a ``TypeError``/``KeyError``/``RecursionError`` from a hostile document. Rules shared by every model:

* ``null`` for an optional field means absent (as Go's encoding/json reads it); a required field may not be null.
* Unknown fields are ignored (the OCI specs require it) but still bounded by the loader.
* Sizes are integers (not booleans, not floats) in ``0 .. 2**63-1``; digests are ``algorithm:hex`` as
  :class:`~imgcore.Digest` accepts them; annotations and labels map strings to strings.
* An image config's ``created`` (and a history entry's) is never fatal: a mistyped or non-RFC-3339 value reads as
  unknown (``ImageConfig.created`` is None) and ``ImageConfig.created_error`` says what was wrong, so one image with
  a bad time does not break listing the others.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform as _platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from imgcore._core import Digest, sha256
from imgcore._json import ARCHIVE_LIMIT, load_array, load_object
from imgcore.errors import (
    ImgcoreError,
    InvalidArchive,
    InvalidArgument,
    InvalidDigest,
    InvalidManifest,
    UnsupportedMediaType,
)

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "LAYER_MEDIA_TYPES",
    "NON_DISTRIBUTABLE",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "ORIGINAL_MANIFEST",
    "REF_NAME",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "SaveManifestEntry",
    "SchemaCheck",
    "canonical_json",
    "is_attestation",
    "oci_form",
    "parse_manifest_or_index",
    "parse_repositories",
    "parse_save_manifest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
"""Media type of an OCI image manifest."""
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
"""Media type of an OCI image index (also the default for an OCI layout's ``index.json``)."""
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
"""Media type of an OCI image config."""
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
"""Media type of an uncompressed OCI layer tarball."""
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
"""Media type of a gzip-compressed OCI layer tarball."""
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
"""Media type of a zstd-compressed OCI layer tarball."""
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
"""Media type of a Docker schema 2 image manifest."""
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
"""Media type of a Docker manifest list (Docker's counterpart of an OCI index)."""
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
"""Media type of a Docker image config."""
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
"""Media type of an uncompressed Docker layer tarball."""
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
"""Media type of a gzip-compressed Docker layer tarball."""
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
"""The annotation that names an image in an OCI layout's ``index.json`` (the store keys its tags by it)."""
ORIGINAL_MANIFEST = "io.imgcore.original-manifest"
"""The annotation on an ``index.json`` entry that points at an OCI-typed manifest made from a docker schema 2 one:
the digest of the docker manifest, whose bytes ``push`` and ``save`` send so the digest is kept."""

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
NON_DISTRIBUTABLE = frozenset(
    {
        DOCKER_FOREIGN_LAYER,
        OCI_LAYER_NONDIST_GZIP,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
"""Layer media types that push leaves out (foreign and OCI non-distributable layers), as docker does."""
IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
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
"""The layer media types imgcore knows: OCI and Docker, plain and compressed, non-distributable and foreign."""

MAX_SIZE = (1 << 63) - 1  # Go's int64, what every registry and runtime reads sizes into
# The image-spec's media type grammar (RFC 6838 restricted names), from its JSON schema.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))", re.ASCII
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_DOCKER_TO_OCI = {
    DOCKER_LAYER: OCI_LAYER,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_FOREIGN_LAYER: OCI_LAYER_NONDIST_GZIP,
    DOCKER_CONFIG: OCI_CONFIG,
}


def oci_form(manifest: Manifest) -> Manifest:
    """The OCI-typed twin of a docker schema 2 manifest: the same config and layer blobs (same digests and sizes,
    ``urls`` kept), with OCI media types (gzip and plain layers map one to one, a foreign layer becomes a
    non-distributable one, the config becomes ``config.v1``), serialised deterministically. Tools that read only
    OCI manifests from a layout (skopeo's and umoci's ``oci:`` transports) read the twin."""
    if manifest.media_type != DOCKER_MANIFEST:
        raise UnsupportedMediaType(f"manifest {manifest.digest}: {manifest.media_type} is not docker schema 2")

    def retype(d: Descriptor) -> Descriptor:
        return Descriptor(_DOCKER_TO_OCI.get(d.media_type, d.media_type), d.digest, d.size, d.annotations,
                          d.platform, d.urls)  # fmt: skip

    return Manifest.build(retype(manifest.config), [retype(d) for d in manifest.layers],
                          annotations=manifest.annotations)  # fmt: skip


ATTESTATION_TYPE = "vnd.docker.reference.type"


def is_attestation(desc: Descriptor) -> bool:
    """Whether an index entry is a buildx attestation manifest (provenance, SBOM) rather than an image."""
    return (desc.annotations or {}).get(ATTESTATION_TYPE) == "attestation-manifest"


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces): the same document always has the same digest."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidManifest(f"cannot serialise document: {e}") from None


# ------------------------------------------------------------------------------------------------- schema checks


def _show(value: Any) -> str:
    """A short, JSON-like rendering of a bad value for an error message."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        text = str(value) if value.bit_length() < 300 else f"an integer of {value.bit_length()} bits"
        return text
    if isinstance(value, str):
        text = json.dumps(value[:64])
        return text[:-1] + '…"' if len(value) > 64 else text
    if isinstance(value, float):
        return repr(value)
    return type(value).__name__


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _IDENT.fullmatch(key) else json.dumps(key[:64])
    if not _IDENT.fullmatch(key):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


class _Doc:
    """A document being checked: its name for messages and the error class its failures raise."""

    __slots__ = ("_kind", "_raw", "_what", "error")

    def __init__(self, what: str, error: type[ImgcoreError] = InvalidManifest, *, raw: bytes | None = None) -> None:
        self._kind = what
        self._raw = raw
        self._what: str | None = None if raw is not None else what
        self.error = error

    @property
    def what(self) -> str:
        """The document's name: ``kind`` and, for one parsed from bytes, the digest of those bytes (computed only
        when a message needs it)."""
        if self._what is None:
            self._what = _doc_name(self._kind, self._raw or b"")
        return self._what

    def fail(self, path: str, why: str) -> NoReturn:
        """Raises the document's error: its name, the field path and ``why``."""
        raise self.error(f"{self.what}: {path}: {why}" if path else f"{self.what}: {why}")

    def expected(self, path: str, what: str, value: Any) -> NoReturn:
        """Raises ``expected <what>, got <value>`` for the field at ``path``."""
        self.fail(path, f"expected {what}, got {_show(value)}")

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        """``value`` if it is a JSON object."""
        if not isinstance(value, dict):
            self.expected(path, "an object", value)
        return value

    def required(self, data: Mapping[str, Any], key: str, path: str) -> Any:
        """``data[key]``, which must be present and not null."""
        value = data.get(key)
        if value is None:
            if key in data:
                self.fail(_join(path, key), "must not be null")
            self.fail(path, f"missing field {json.dumps(key)}")
        return value

    def text(self, value: Any, path: str) -> str:
        """``value`` if it is a string."""
        if not isinstance(value, str):
            self.expected(path, "a string", value)
        return value

    def opt_str(self, data: Mapping[str, Any], key: str, path: str) -> str | None:
        """``data[key]`` if it is a string, None when absent or null."""
        value = data.get(key)
        return None if value is None else self.text(value, _join(path, key))

    def flag(self, data: Mapping[str, Any], key: str, path: str) -> bool | None:
        """``data[key]`` if it is a boolean, None when absent or null."""
        value = data.get(key)
        if value is not None and not isinstance(value, bool):
            self.expected(_join(path, key), "a boolean", value)
        return value

    def integer(self, value: Any, path: str, *, non_negative: bool = True) -> int:
        """``value`` if it is an integer within int64 (and not negative unless ``non_negative`` is false)."""
        if not isinstance(value, int) or isinstance(value, bool) or value > MAX_SIZE:
            self.expected(path, "a non-negative integer" if non_negative else "an integer", value)
        if value < (0 if non_negative else -MAX_SIZE - 1):
            self.expected(path, "a non-negative integer" if non_negative else "an integer", value)
        return value

    def digest(self, value: Any, path: str) -> str:
        """``value`` if it is a valid digest string."""
        if not isinstance(value, str):
            self.expected(path, "a digest string", value)
        try:
            return str(Digest(value))
        except (InvalidDigest, ValueError, TypeError) as e:  # ValueError: lone surrogates pyo3 cannot encode
            self.fail(path, f"invalid digest {_show(value)}: {str(e).split(': ', 1)[-1]}")

    def str_list(self, value: Any, path: str) -> list[str]:
        """``value`` if it is an array of strings."""
        if not isinstance(value, list):
            self.expected(path, "an array of strings", value)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.expected(_join(path, i), "a string", item)
        return value

    def opt_str_list(self, data: Mapping[str, Any], key: str, path: str) -> list[str] | None:
        """``data[key]`` if it is an array of strings, None when absent or null."""
        value = data.get(key)
        return None if value is None else self.str_list(value, _join(path, key))

    def str_map(self, value: Any, path: str) -> dict[str, str]:
        """``value`` if it is an object of strings."""
        if not isinstance(value, dict):
            self.expected(path, "an object of strings", value)
        for key, item in value.items():
            if not isinstance(item, str):
                self.expected(_join(path, key), "a string", item)
        return value

    def opt_str_map(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, str] | None:
        """``data[key]`` if it is an object of strings, None when absent or null."""
        value = data.get(key)
        return None if value is None else self.str_map(value, _join(path, key))

    def obj_map(self, data: Mapping[str, Any], key: str, path: str) -> None:
        """A map of strings to objects (``ExposedPorts``, ``Volumes``: Go's ``map[string]struct{}``)."""
        value = data.get(key)
        if value is None:
            return
        where = _join(path, key)
        for k, item in self.obj(value, where).items():
            if item is not None:
                self.obj(item, _join(where, k))

    def media_type(self, value: Any, path: str) -> str:
        """``value`` if it is a media type (``type/subtype``)."""
        text = self.text(value, path)
        if not _MEDIA_TYPE.fullmatch(text):
            self.expected(path, "a media type (type/subtype)", value)
        return text


SchemaCheck = _Doc
"""The field checker every schema here is written with (``obj``, ``required``, ``text``, ``integer``, ``digest``,
``str_list``, ...): ``SchemaCheck("state file X", InvalidStateFile)`` checks a store or container state file the
same way, raising the given error class with the file and the field path."""


def _platform_from(doc: _Doc, value: Any, path: str) -> Platform:
    data = doc.obj(value, path)
    arch = doc.text(doc.required(data, "architecture", path), _join(path, "architecture"))
    os_ = doc.text(doc.required(data, "os", path), _join(path, "os"))
    doc.opt_str_list(data, "os.features", path)
    doc.opt_str_list(data, "features", path)
    return Platform(os_, arch, doc.opt_str(data, "variant", path), doc.opt_str(data, "os.version", path))


def _descriptor_from(doc: _Doc, value: Any, path: str) -> Descriptor:
    data = doc.obj(value, path)
    mt = data.get("mediaType")
    # "" is "unknown", as the constructor allows it (and as earlier stores wrote it into index.json).
    media_type = "" if mt is None or mt == "" else doc.media_type(mt, _join(path, "mediaType"))
    digest = doc.digest(doc.required(data, "digest", path), _join(path, "digest"))
    size = doc.integer(doc.required(data, "size", path), _join(path, "size"))
    annotations = doc.opt_str_map(data, "annotations", path)
    urls = doc.opt_str_list(data, "urls", path)
    plat = data.get("platform")
    doc.opt_str(data, "artifactType", path)
    doc.opt_str(data, "data", path)
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        annotations=dict(annotations) if annotations else None,
        platform=None if plat is None else _platform_from(doc, plat, _join(path, "platform")),
        urls=tuple(urls) if urls else None,
    )


def _as_bytes(raw: Any, kind: str) -> bytes:
    """A document's raw bytes (``bytes``, ``bytearray`` or ``memoryview``); anything else is an error."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, bytearray | memoryview):
        return bytes(raw)
    raise InvalidManifest(f"{kind}: expected the document's bytes, got {type(raw).__name__}")


def _doc_name(kind: str, raw: bytes) -> str:
    try:
        return f"{kind} {sha256(raw)}"
    except Exception:  # raw of the wrong type: the loader says so with the plain name
        return kind


def _media_type_of(
    doc: _Doc, data: Mapping[str, Any], media_type: str | None, default: str, allowed: frozenset[str]
) -> str:
    """The document's own media type, else the one given (a Content-Type, a descriptor's), else ``default``."""
    value = data.get("mediaType")
    if value is None or value == "":  # "" read as absent, as before the schema checks
        value = media_type or default
        if not isinstance(value, str):
            doc.expected("mediaType", "a string", value)
    else:
        doc.text(value, "mediaType")
    if value not in allowed:
        raise UnsupportedMediaType(f"{doc.what}: unsupported media type {_show(value)}")
    version = data.get("schemaVersion")
    if not isinstance(version, int) or isinstance(version, bool) or version != 2:
        doc.fail("schemaVersion", f"must be 2, got {_show(version)}")
    return value


# ------------------------------------------------------------------------------------------------- models

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

    def __post_init__(self) -> None:
        doc = _Doc("platform")
        doc.text(self.os, "os")
        doc.text(self.architecture, "architecture")
        for name in ("variant", "os_version"):
            value = getattr(self, name)
            if value is not None:
                doc.text(value, name)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]``; a malformed one raises :class:`~imgcore.errors.InvalidArgument` (a ValueError)."""
        parts = text.strip().split("/") if isinstance(text, str) else []
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgument(f"invalid platform {_show(text)}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        """The platform images are picked for here: always ``linux``, with this machine's architecture in Go's
        names (``x86_64`` -> ``amd64``, ``aarch64`` -> ``arm64``) and variant ``v8`` for arm64, ``v7`` for armv7l."""
        machine = _platform.machine().lower()
        arch = _GOARCH.get(machine, machine)
        variant = "v8" if arch == "arm64" else ("v7" if machine == "armv7l" else None)
        return cls("linux", arch, variant)

    @classmethod
    def from_json(cls, data: Any, where: str = "platform") -> Platform:
        """A descriptor's ``platform`` object; ``os`` and ``architecture`` are required strings."""
        return _platform_from(_Doc(where), data, "")

    def to_json(self) -> dict[str, Any]:
        """The platform as a descriptor's ``platform`` object; ``variant`` and ``os.version`` only when set."""
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
    """An OCI content descriptor: what a blob is, its digest and its size.

    The constructor checks types (``media_type`` a string, possibly empty for "unknown"; ``digest`` a valid
    digest; ``size`` a non-negative integer); :meth:`from_json` also checks a document's descriptor field by field.
    """

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None
    platform: Platform | None = None
    urls: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        digest = self.digest
        doc = _Doc(f"descriptor {digest}" if isinstance(digest, str) else "descriptor")
        doc.text(self.media_type, "media_type")
        doc.digest(digest, "digest")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            doc.expected("size", "a non-negative integer", self.size)
        if self.size < 0:
            raise InvalidManifest(f"descriptor {self.digest}: negative size {self.size}")
        if self.size > MAX_SIZE:
            doc.expected("size", "a non-negative integer", self.size)
        if self.annotations is not None:
            if not isinstance(self.annotations, Mapping):
                doc.expected("annotations", "an object of strings", self.annotations)
            for key, value in self.annotations.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    doc.expected(_join("annotations", str(key)), "a string", value)
        if self.platform is not None and not isinstance(self.platform, Platform):
            doc.expected("platform", "a Platform", self.platform)
        if self.urls is not None:
            if not isinstance(self.urls, tuple):
                doc.expected("urls", "a tuple of strings", self.urls)
            for i, url in enumerate(self.urls):
                doc.text(url, _join("urls", i))

    @classmethod
    def from_json(cls, data: Any, where: str = "descriptor") -> Descriptor:
        """A descriptor object from a document; ``where`` names it in errors (``index.json``, ...)."""
        return _descriptor_from(_Doc(where), data, "")

    def to_json(self) -> dict[str, Any]:
        """The descriptor as a JSON object (``mediaType``, ``digest``, ``size``); ``urls``, ``annotations`` and
        ``platform`` only when set."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    def with_annotations(self, annotations: Mapping[str, str] | None) -> Descriptor:
        """A copy with ``annotations`` in place of this one's; None or empty removes them (as the store does to
        drop an ``index.json`` entry's name before handing the descriptor out)."""
        return Descriptor(
            self.media_type,
            self.digest,
            self.size,
            dict(annotations) if annotations else None,
            self.platform,
            self.urls,
        )


def _check_descriptors(doc: _Doc, name: str, items: Any) -> None:
    if not isinstance(items, tuple):
        doc.expected(name, "a tuple of descriptors", items)
    for i, item in enumerate(items):
        if not isinstance(item, Descriptor):
            doc.expected(_join(name, i), "a Descriptor", item)


def _check_annotations(doc: _Doc, annotations: Any) -> None:
    if annotations is not None:
        if not isinstance(annotations, Mapping):
            doc.expected("annotations", "an object of strings", annotations)
        doc.str_map(dict(annotations), "annotations")


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = None
    raw: bytes = field(default=b"", repr=False)
    artifact_type: str | None = None

    def __post_init__(self) -> None:
        doc = _Doc("manifest")
        doc.text(self.media_type, "mediaType")
        if not isinstance(self.config, Descriptor):
            doc.expected("config", "a Descriptor", self.config)
        _check_descriptors(doc, "layers", self.layers)
        _check_annotations(doc, self.annotations)
        if not isinstance(self.raw, bytes):
            doc.expected("raw", "bytes", self.raw)

    @property
    def digest(self) -> str:
        """The manifest's digest: the sha256 of :attr:`raw` as received or written, never of a re-serialisation."""
        return str(Digest(_sha(self.raw)))

    @property
    def is_artifact(self) -> bool:
        """An OCI artifact rather than an image: ``artifactType`` is set, or the config is not an image config
        (the OCI empty config, a helm chart's, ...), as containerd and podman tell them apart."""
        config_type = self.config.media_type
        return self.artifact_type is not None or (bool(config_type) and config_type not in IMAGE_CONFIG_TYPES)

    @property
    def kind(self) -> str:
        """The artifact type: ``artifactType``, else the config's media type (what ``oras`` and podman show)."""
        return self.artifact_type or self.config.media_type

    @classmethod
    def from_bytes(
        cls, raw: bytes, media_type: str | None = None, *, where: str | None = None, limit: int = ARCHIVE_LIMIT
    ) -> Manifest:
        """Parses and checks a manifest; ``media_type`` (a Content-Type) is used when the document has none.

        ``where`` replaces the default name in errors (``manifest <digest of raw>``); registry responses should
        pass ``limit=MANIFEST_LIMIT``.
        """
        raw = _as_bytes(raw, where or "manifest")
        doc = _Doc(where) if where else _Doc("manifest", raw=raw)
        return cls._from_data(doc, load_object(raw, doc.what, limit=limit), raw, media_type)

    @classmethod
    def _from_data(cls, doc: _Doc, data: dict[str, Any], raw: bytes, media_type: str | None) -> Manifest:
        mt = _media_type_of(doc, data, media_type, OCI_MANIFEST, MANIFEST_TYPES)
        config = _descriptor_from(doc, doc.required(data, "config", ""), "config")
        layers = doc.required(data, "layers", "")
        if not isinstance(layers, list):
            doc.expected("layers", "an array of descriptors", layers)
        subject = data.get("subject")
        if subject is not None:
            _descriptor_from(doc, subject, "subject")
        artifact_type = doc.opt_str(data, "artifactType", "")
        annotations = doc.opt_str_map(data, "annotations", "")
        return cls(
            media_type=mt,
            artifact_type=artifact_type or None,
            config=config,
            layers=tuple(_descriptor_from(doc, x, _join("layers", i)) for i, x in enumerate(layers)),
            annotations=annotations,
            raw=bytes(raw),
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
    """An image index (OCI) or manifest list (Docker); also an OCI layout's ``index.json``."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = None
    raw: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        doc = _Doc("index")
        doc.text(self.media_type, "mediaType")
        _check_descriptors(doc, "manifests", self.manifests)
        _check_annotations(doc, self.annotations)
        if not isinstance(self.raw, bytes):
            doc.expected("raw", "bytes", self.raw)

    @property
    def digest(self) -> str:
        """The index's digest: the sha256 of :attr:`raw` as received or written, never of a re-serialisation."""
        return str(Digest(_sha(self.raw)))

    @classmethod
    def from_bytes(
        cls, raw: bytes, media_type: str | None = None, *, where: str | None = None, limit: int = ARCHIVE_LIMIT
    ) -> Index:
        """Parses and checks an index; ``where`` names it in errors (default ``index <digest of raw>``)."""
        raw = _as_bytes(raw, where or "index")
        doc = _Doc(where) if where else _Doc("index", raw=raw)
        return cls._from_data(doc, load_object(raw, doc.what, limit=limit), raw, media_type)

    @classmethod
    def from_data(cls, data: Any, where: str, raw: bytes = b"", media_type: str | None = None) -> Index:
        """Checks an index already parsed by :func:`imgcore._json.load_object` (the store's ``index.json``,
        whose entries the store keeps editing as dicts)."""
        doc = _Doc(where)
        return cls._from_data(doc, doc.obj(data, ""), raw, media_type)

    @classmethod
    def _from_data(cls, doc: _Doc, data: dict[str, Any], raw: bytes, media_type: str | None) -> Index:
        mt = _media_type_of(doc, data, media_type, OCI_INDEX, INDEX_TYPES)
        manifests = doc.required(data, "manifests", "")
        if not isinstance(manifests, list):
            doc.expected("manifests", "an array of descriptors", manifests)
        subject = data.get("subject")
        if subject is not None:
            _descriptor_from(doc, subject, "subject")
        doc.opt_str(data, "artifactType", "")
        annotations = doc.opt_str_map(data, "annotations", "")
        return cls(
            media_type=mt,
            manifests=tuple(_descriptor_from(doc, x, _join("manifests", i)) for i, x in enumerate(manifests)),
            annotations=annotations,
            raw=bytes(raw),
        )

    def for_platform(self, want: Platform) -> Descriptor:
        """The manifest for ``want``, as docker resolves a manifest list. Attestation manifests (buildx's
        ``vnd.docker.reference.type: attestation-manifest``, platform ``unknown/unknown``) are never picked nor
        listed as available: they are not images."""
        images = [d for d in self.manifests if not is_attestation(d)]
        for desc in images:
            if desc.platform is not None and want.matches(desc.platform):
                return desc
        have = ", ".join(str(d.platform) for d in images if d.platform) or "none"
        raise InvalidManifest(f"index: no manifest for platform {want} (available: {have})")


def _rfc3339_error(value: Any) -> str | None:
    """Why ``value`` is not an RFC 3339 time (None when it is one)."""
    if not isinstance(value, str):
        return f"expected an RFC 3339 time string, got {_show(value)}"
    m = _RFC3339.fullmatch(value) if len(value) <= 64 else None
    if m is None:
        return f"expected an RFC 3339 time, got {_show(value)}"
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        _dt.datetime(year, month, day, hour, minute, min(second, 59))  # RFC 3339 allows a leap second
        if m.group(8) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
            raise ValueError("offset out of range")
        if second > 60:
            raise ValueError("second out of range")
    except ValueError as e:
        return f"expected an RFC 3339 time, got {_show(value)} ({e})"
    return None


_CONFIG_STRINGS = ("User", "WorkingDir", "StopSignal", "Hostname", "Domainname", "Image", "MacAddress")
_CONFIG_LISTS = ("Env", "Cmd", "Entrypoint", "OnBuild", "Shell")
_CONFIG_BOOLS = ("ArgsEscaped", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce")


def _check_container_config(doc: _Doc, value: Any, path: str) -> None:
    data = doc.obj(value, path)
    for key in _CONFIG_STRINGS:
        doc.opt_str(data, key, path)
    for key in _CONFIG_LISTS:
        doc.opt_str_list(data, key, path)
    for key in _CONFIG_BOOLS:
        doc.flag(data, key, path)
    doc.flag(data, "NetworkDisabled", path)
    doc.obj_map(data, "ExposedPorts", path)
    doc.obj_map(data, "Volumes", path)
    doc.opt_str_map(data, "Labels", path)
    health = data.get("Healthcheck")
    if health is not None:
        where = _join(path, "Healthcheck")
        health = doc.obj(health, where)
        doc.opt_str_list(health, "Test", where)
        for key in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
            if health.get(key) is not None:
                doc.integer(health[key], _join(where, key), non_negative=False)
    timeout = data.get("StopTimeout")
    if timeout is not None:
        doc.integer(timeout, _join(path, "StopTimeout"), non_negative=False)


def _check_config(doc: _Doc, data: Mapping[str, Any]) -> str | None:
    """Checks an image config's schema; returns why its ``created`` is unusable (None when fine or absent)."""
    for key in ("architecture", "os", "variant", "os.version", "author"):
        doc.opt_str(data, key, "")
    doc.opt_str_list(data, "os.features", "")
    if data.get("config") is not None:
        _check_container_config(doc, data["config"], "config")
    rootfs = doc.obj(doc.required(data, "rootfs", ""), "rootfs")
    kind = doc.required(rootfs, "type", "rootfs")
    if kind != "layers":
        doc.fail("rootfs.type", f'expected "layers", got {_show(kind)}')
    diff_ids = doc.required(rootfs, "diff_ids", "rootfs")
    if not isinstance(diff_ids, list):
        doc.expected("rootfs.diff_ids", "an array of digests", diff_ids)
    for i, d in enumerate(diff_ids):
        doc.digest(d, _join("rootfs.diff_ids", i))
    history = data.get("history")
    if history is not None:
        if not isinstance(history, list):
            doc.expected("history", "an array of objects", history)
        for i, entry in enumerate(history):
            where = _join("history", i)
            entry = doc.obj(entry, where)
            for key in ("created_by", "author", "comment"):
                doc.opt_str(entry, key, where)
            doc.flag(entry, "empty_layer", where)
    created = data.get("created")
    return None if created is None else _rfc3339_error(created)


@dataclass(frozen=True)
class ImageConfig:
    """An image configuration (OCI ``config.v1`` / Docker ``container.image.v1``).

    The constructor checks ``data`` against the schema (module docstring). A bad ``created`` is not an error:
    :attr:`created` is then None and :attr:`created_error` says why.
    """

    data: Mapping[str, Any]
    raw: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        doc = _Doc("image config", raw=self.raw) if isinstance(self.raw, bytes) and self.raw else _Doc("image config")
        if not isinstance(self.raw, bytes):
            doc.expected("raw", "bytes", self.raw)
        if not isinstance(self.data, Mapping):
            doc.expected("", "an object", self.data)
        object.__setattr__(self, "_created_error", _check_config(doc, self.data))

    @classmethod
    def from_bytes(cls, raw: bytes, *, where: str | None = None, limit: int = ARCHIVE_LIMIT) -> ImageConfig:
        """Parses and checks a config; ``where`` names it in errors (default ``image config <digest of raw>``)."""
        raw = _as_bytes(raw, where or "image config")
        default = _Doc("image config", raw=raw)
        data = load_object(raw, where or default.what, limit=limit)
        if where is None:
            return cls(data=data, raw=raw)
        try:
            return cls(data=data, raw=raw)
        except InvalidManifest as e:  # name the config as the caller does
            raise InvalidManifest(f"{where}: {str(e).removeprefix(default.what + ': ')}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageConfig:
        """A config built from ``data``: serialised with :func:`canonical_json` (so the same data always gives
        the same digest) and checked as :meth:`from_bytes` checks one."""
        return cls.from_bytes(canonical_json(data))

    @property
    def digest(self) -> str:
        """The image ID: the sha256 of the config bytes, as docker's is."""
        return _sha(self.raw)

    @property
    def diff_ids(self) -> list[str]:
        """``rootfs.diff_ids``: the digests of the uncompressed layers, bottom first (a new list each time)."""
        return list(self.data["rootfs"]["diff_ids"])

    @property
    def history(self) -> list[dict[str, Any]]:
        """The ``history`` entries, oldest first; an empty list when the config has none."""
        return list(self.data.get("history") or [])

    @property
    def created(self) -> str | None:
        """The ``created`` time as written, when it is a valid RFC 3339 time; else None."""
        value = self.data.get("created")
        return value if isinstance(value, str) and self.created_error is None else None

    @property
    def created_error(self) -> str | None:
        """Why ``created`` is unusable (mistyped or not RFC 3339), or None when it is valid or absent."""
        error: str | None = self.__dict__.get("_created_error")
        return error

    @property
    def config(self) -> dict[str, Any]:
        """The ``config`` object (``Env``, ``Cmd``, ``Entrypoint``, ...) as a new dict; empty when absent."""
        return dict(self.data.get("config") or {})

    @property
    def platform(self) -> Platform:
        """The platform the config names (``os``, ``architecture``, ``variant``); a missing one reads as ``""``."""
        return Platform(
            str(self.data.get("os") or ""), str(self.data.get("architecture") or ""), self.data.get("variant")
        )


def _sha(raw: bytes) -> str:
    return sha256(raw)


def parse_manifest_or_index(
    raw: bytes, media_type: str | None = None, *, where: str | None = None, limit: int = ARCHIVE_LIMIT
) -> Manifest | Index:
    """Parses a manifest or an index, deciding by ``mediaType`` in the document, then the one given, then shape."""
    raw = _as_bytes(raw, where or "manifest")
    doc = _Doc(where) if where else _Doc("manifest", raw=raw)
    data = load_object(raw, doc.what, limit=limit)
    mt = data.get("mediaType")
    if mt is None or mt == "":
        mt = media_type or None
    elif not isinstance(mt, str):
        doc.expected("mediaType", "a string", mt)
    if mt in INDEX_TYPES or (mt is None and "manifests" in data):
        return Index._from_data(doc, data, raw, mt)
    if mt in MANIFEST_TYPES or (mt is None and "layers" in data):
        return Manifest._from_data(doc, data, raw, mt)
    raise UnsupportedMediaType(f"{doc.what}: unsupported media type {_show(mt)}")


# ------------------------------------------------------------------------------------------------- docker save


def _archive_path(doc: _Doc, value: Any, path: str) -> str:
    """A file name inside an archive: relative, no ``..``, no NUL (the archive reader still confines it)."""
    text = doc.text(value, path)
    if not text or "\0" in text or text.startswith("/") or ".." in text.split("/"):
        doc.expected(path, "a relative path inside the archive", value)
    return text


@dataclass(frozen=True)
class SaveManifestEntry:
    """One entry of docker-save's ``manifest.json``: the config file, its tags and the layer files, in order.

    ``layer_sources`` maps a layer's digest to its descriptor (docker writes it for foreign layers).
    """

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]
    layer_sources: Mapping[str, Descriptor] | None = None

    @property
    def config_digest(self) -> str | None:
        """``sha256:<hex>`` when the config's file name is its digest (``<hex>.json``, ``blobs/sha256/<hex>``)."""
        hex_ = self.config.rsplit("/", 1)[-1].removesuffix(".json")
        try:
            return str(Digest(f"sha256:{hex_}"))
        except InvalidDigest:
            return None


def parse_save_manifest(
    raw: bytes, where: str = "manifest.json", *, limit: int = ARCHIVE_LIMIT
) -> tuple[SaveManifestEntry, ...]:
    """docker-save's ``manifest.json`` (an array of entries); a malformed one raises
    :class:`~imgcore.errors.InvalidArchive` naming the entry and field (``manifest.json: [0].RepoTags: ...``)."""
    doc = _Doc(where, InvalidArchive)
    items = load_array(raw, where, limit=limit, error=InvalidArchive)
    out = []
    for i, item in enumerate(items):
        path = _join("", i)
        data = doc.obj(item, path)
        config = _archive_path(doc, doc.required(data, "Config", path), _join(path, "Config"))
        tags = doc.opt_str_list(data, "RepoTags", path) or []
        layers = doc.required(data, "Layers", path)
        if not isinstance(layers, list):
            doc.expected(_join(path, "Layers"), "an array of file names", layers)
        names = tuple(_archive_path(doc, x, _join(_join(path, "Layers"), j)) for j, x in enumerate(layers))
        sources = None
        raw_sources = data.get("LayerSources")
        if raw_sources is not None:
            where_sources = _join(path, "LayerSources")
            sources = {}
            for key, value in doc.obj(raw_sources, where_sources).items():
                digest = doc.digest(key, _join(where_sources, key))
                sources[digest] = _descriptor_from(doc, value, _join(where_sources, key))
        out.append(SaveManifestEntry(config, tuple(tags), names, sources))
    return tuple(out)


def parse_repositories(
    raw: bytes, where: str = "repositories", *, limit: int = ARCHIVE_LIMIT
) -> dict[str, dict[str, str]]:
    """docker's legacy ``repositories`` file: ``{repository: {tag: top layer id (64 hex)}}``; a malformed one
    raises :class:`~imgcore.errors.InvalidArchive`."""
    doc = _Doc(where, InvalidArchive)
    data = load_object(raw, where, limit=limit, error=InvalidArchive)
    out: dict[str, dict[str, str]] = {}
    for repo, tags in data.items():
        tag_map = doc.str_map(tags, _join("", repo))
        for tag, layer_id in tag_map.items():
            if not re.fullmatch(r"[0-9a-f]{64}", layer_id):
                doc.expected(_join(_join("", repo), tag), "a layer ID (64 lowercase hex)", layer_id)
        out[repo] = dict(tag_map)
    return out
