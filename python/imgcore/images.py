"""Image-level operations in docker's terms: resolve, list, history, inspect, tag, rmi, prune, df, import, export.

An *image* is what docker calls one: its ID is the digest of its config (docker's "IMAGE ID"); a tag is an entry of
the store's ``index.json`` (annotation ``org.opencontainers.image.ref.name`` = the full normalised reference); an
untagged entry is a dangling image (``<none> <none>``).

Invariants:
- nothing here deletes a blob that an ``index.json`` entry or a container still reaches (mark from every index
  entry and every container's manifest, then sweep), and blob deletion runs under the exclusive GC lock, which
  writers hold shared (:func:`writing`) between their first blob and their tag;
- sizes are docker's: an image's SIZE is the sum of its layers' uncompressed sizes (computed once per blob and
  cached under ``imgcore/sizes/``), so a layer shared by two images counts in both, and ``df`` shows how much the
  sharing saves.
"""

from __future__ import annotations

import bz2
import contextlib
import datetime as _dt
import lzma
import os
import re
import stat
import subprocess
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from imgcore import _fs
from imgcore._core import Digest, Hasher, sha256
from imgcore._humanize import parse_time, short_id
from imgcore.errors import (
    BlobNotFound,
    ImageConflict,
    ImageInUse,
    ImageNotFound,
    InvalidArchive,
    InvalidArgument,
    InvalidReference,
    UnsupportedMediaType,
)
from imgcore.models import (
    DOCKER_LAYER,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    REF_NAME,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    canonical_json,
    parse_manifest_or_index,
)
from imgcore.reference import Reference, parse
from imgcore.store import Store

__all__ = [
    "ContainerUsage",
    "DeleteRecord",
    "DiskUsage",
    "HistoryRow",
    "Image",
    "ImageRow",
    "ImageUsage",
    "LayerUsage",
    "PruneReport",
    "chain_ids",
    "disk_usage",
    "export",
    "history",
    "image_size",
    "import_image",
    "inspect",
    "layer_size",
    "list_images",
    "load_image",
    "mark",
    "parse_filters",
    "prune",
    "record_layer_size",
    "remove_image",
    "resolve",
    "rmi",
    "tag",
    "write_tree_tar",
    "writing",
]

CHUNK = 1 << 20
ZERO_TIME = "0001-01-01T00:00:00Z"
_HEX_ID = re.compile(r"(sha256:)?([0-9a-f]{1,64})")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# ------------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Image:
    """One image in the store.

    ``manifest_desc``/``manifest`` are the image manifest (for a multi-platform index, the host's entry);
    ``target`` is what ``index.json`` points at (the index itself in that case); ``tags`` are full normalised
    references (``docker.io/library/tomcat:latest``).
    """

    manifest_desc: Descriptor
    manifest: Manifest
    config: ImageConfig
    tags: tuple[str, ...] = ()
    target: Descriptor | None = None

    @property
    def id(self) -> str:
        """docker's IMAGE ID: the config digest (``sha256:…``)."""
        return self.manifest.config.digest

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def digest(self) -> str:
        """The digest a tag points at (the manifest, or the index of a multi-platform image)."""
        return (self.target or self.manifest_desc).digest

    @property
    def target_desc(self) -> Descriptor:
        return (self.target or self.manifest_desc).with_annotations(None)

    @property
    def created(self) -> _dt.datetime | None:
        return parse_time(self.config.created)

    @property
    def references(self) -> tuple[Reference, ...]:
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
    def layers(self) -> tuple[Descriptor, ...]:
        return self.manifest.layers


@dataclass(frozen=True)
class ImageRow:
    """One line of ``images``: a tag, or ``<none> <none>`` for a dangling image."""

    repository: str
    tag: str
    image: Image
    size: int

    @property
    def dangling(self) -> bool:
        return not self.image.tags


@dataclass(frozen=True)
class HistoryRow:
    """One line of ``history``, newest first, as docker's history API returns them."""

    id: str  # the image ID on the top row, "<missing>" below (docker has no IDs for the layers of pulled images)
    created: _dt.datetime | None
    created_by: str
    size: int
    comment: str
    empty_layer: bool
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeleteRecord:
    """One line of ``rmi``/``prune`` output: ``("Untagged", "foo:latest")`` or ``("Deleted", "sha256:…")``."""

    action: str
    what: str

    def __str__(self) -> str:
        return f"{self.action}: {self.what}"


@dataclass(frozen=True)
class PruneReport:
    records: tuple[DeleteRecord, ...]
    deleted_blobs: tuple[str, ...]
    reclaimed: int  # bytes: blobs plus unpacked layer directories
    deleted_unpacked: tuple[str, ...] = ()  # imgcore/layers/<chain> and imgcore/rootfs/<chain> directories removed


# ------------------------------------------------------------------------------------------------- containers


def _containers(store: Store) -> list[Any]:
    """Every container of the store (imported here: ``containers`` builds on this module)."""
    from imgcore.containers import Containers

    return list(Containers(store).list())


def _container_uses(c: Any, image: Image) -> bool:
    return bool(
        getattr(c, "image_id", None) == image.id
        or getattr(c, "manifest_digest", None) in (image.manifest_desc.digest, image.digest)
    )


# ------------------------------------------------------------------------------------------------- locking


def writing(store: Store) -> contextlib.AbstractContextManager[None]:
    """Held (shared) by a writer from its first blob to its tag, so a concurrent prune cannot sweep the blobs of
    an image that is not tagged yet. Prune and rmi hold it exclusively."""
    return _fs.locked(store.root / "imgcore" / "gc.lock", shared=True)


def _gc_exclusive(store: Store) -> contextlib.AbstractContextManager[None]:
    return _fs.locked(store.root / "imgcore" / "gc.lock", shared=False)


# ------------------------------------------------------------------------------------------------- loading


def _manifest_for(store: Store, desc: Descriptor) -> tuple[Descriptor, Manifest]:
    raw = store.get_blob(desc.digest, verify=True)
    doc = parse_manifest_or_index(raw, desc.media_type or None)
    if isinstance(doc, Manifest):
        return Descriptor(doc.media_type, desc.digest, len(raw)), doc
    child = _pick_child(store, doc, desc.digest)
    raw = store.get_blob(child.digest, verify=True)
    return child.with_annotations(None), Manifest.from_bytes(raw, child.media_type or None)


def _pick_child(store: Store, index: Index, where: str) -> Descriptor:
    with contextlib.suppress(Exception):
        chosen = index.for_platform(Platform.host())
        if store.has_blob(chosen.digest):
            return chosen
    for d in index.manifests:
        if store.has_blob(d.digest) and "index" not in d.media_type and "list" not in d.media_type:
            return d
    raise BlobNotFound(f"image index {where}: none of its {len(index.manifests)} manifests is in the store")


def load_image(store: Store, desc: Descriptor, tags: Sequence[str] = ()) -> Image:
    """The image a manifest (or index) descriptor points at; manifest and config are verified on read."""
    mdesc, manifest = _manifest_for(store, desc)
    config = ImageConfig.from_bytes(store.get_blob(manifest.config.digest, verify=True))
    target = desc.with_annotations(None) if desc.digest != mdesc.digest else None
    return Image(mdesc, manifest, config, tuple(tags), target)


def _normalised(name: str | None) -> str | None:
    """A tag annotation as a full reference: other tools (skopeo, umoci) write short ones like ``copied``."""
    if not name:
        return None
    try:
        return str(parse(name))
    except InvalidReference:
        return None


def _catalog(store: Store, *, strict: bool = False) -> list[Image]:
    """One :class:`Image` per distinct digest in ``index.json``, its tags gathered; unreadable entries skipped
    unless ``strict``."""
    order: list[str] = []
    descs: dict[str, Descriptor] = {}
    tags: dict[str, list[str]] = {}
    for d in store.index_entries():
        if d.digest not in descs:
            order.append(d.digest)
            descs[d.digest] = d
            tags[d.digest] = []
        name = _normalised((d.annotations or {}).get(REF_NAME))
        if name:
            tags[d.digest].append(name)
            if not descs[d.digest].media_type and d.media_type:
                descs[d.digest] = d
    out = []
    for digest in order:
        try:
            out.append(load_image(store, descs[digest], sorted(tags[digest])))
        except (BlobNotFound, ValueError):
            if strict:
                raise
    return out


# ------------------------------------------------------------------------------------------------- resolve


def _lookup(store: Store, text: str, catalog: list[Image] | None = None) -> tuple[Image, Reference | None]:
    """Resolves ``text`` as docker does: a tag first, then an image ID (full or a unique prefix, with or without
    ``sha256:``), or ``name@digest``. Returns the image and the reference when ``text`` named one."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReference("invalid reference: empty")
    text = text.strip()
    hexmatch = _HEX_ID.fullmatch(text)
    id_only = hexmatch is not None and (hexmatch.group(1) is not None or len(hexmatch.group(2)) == 64)
    catalog = _catalog(store) if catalog is None else catalog
    ref: Reference | None = None
    if not id_only:
        try:
            ref = parse(text)
        except InvalidReference:
            if hexmatch is None:
                raise
    if ref is not None:
        if ref.digest is not None:
            for img in catalog:
                if ref.digest in (img.digest, img.manifest_desc.digest):
                    return img, ref
            if store.has_blob(ref.digest):
                with contextlib.suppress(ValueError, BlobNotFound):
                    return load_image(store, Descriptor("", ref.digest, store.blob_size(ref.digest))), ref
            raise ImageNotFound(f"no such image: {ref.familiar}")
        name = str(ref)
        for img in catalog:
            if name in img.tags:
                return img, ref
        if hexmatch is None:
            raise ImageNotFound(f"no such image: {ref.familiar}")
    assert hexmatch is not None
    prefix = hexmatch.group(2)
    ids = sorted({img.id for img in catalog if img.id.partition(":")[2].startswith(prefix)})
    if len(ids) > 1:
        raise ImageConflict(f"image ID prefix {prefix!r} is ambiguous: it matches {len(ids)} images")
    if ids:
        matches = [img for img in catalog if img.id == ids[0]]
        return sorted(matches, key=lambda i: not i.tags)[0], None
    if len(prefix) == 64:
        for img in catalog:
            if f"sha256:{prefix}" in (img.digest, img.manifest_desc.digest):
                return img, None
    raise ImageNotFound(f"no such image: {text}")


def resolve(store: Store, text: str) -> Image:
    """The image ``text`` names: ``repo[:tag]``, ``repo@sha256:…``, a full or short image ID (config digest),
    ``sha256:<id>``.

    Raises:
        InvalidReference: ``text`` is neither a valid reference nor a hex ID.
        ImageNotFound: nothing matches.
        ImageConflict: a short ID matches several images.
    """
    return _lookup(store, text)[0]


# ------------------------------------------------------------------------------------------------- sizes


def _sniff(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return "tar"


def _kind_of(media_type: str) -> str | None:
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    if media_type in (OCI_LAYER, DOCKER_LAYER) or media_type.endswith(".tar"):
        return "tar"
    return None


def _zstandard() -> Any:
    """The zstandard module, or None when it is not installed."""
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return zstandard


def _zstd_command_chunks(chunks: Iterable[bytes], where: str) -> Iterator[bytes]:
    """zstd decoding by the ``zstd`` command, for hosts without the zstandard module."""
    # TODO(#3): use the archive pipeline's Rust decoder once _core exports a decode/diff_id entry point.
    try:
        proc = subprocess.Popen(["zstd", "-dcq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise UnsupportedMediaType(
            f"{where}: zstd-compressed, but neither the zstandard module nor the zstd command is available"
        ) from None
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    failure: list[BaseException] = []

    def feed() -> None:
        assert proc.stdin is not None
        try:
            for c in chunks:
                proc.stdin.write(c)
        except BrokenPipeError:
            pass
        except BaseException as e:  # reported in the reading thread
            failure.append(e)
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        while out := proc.stdout.read(CHUNK):
            yield out
    finally:
        proc.stdout.close()
        t.join()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        rc = proc.wait()
    if failure:
        raise failure[0]
    if rc != 0:
        raise InvalidArchive(f"{where}: corrupt zstd stream: {err or f'zstd exited with {rc}'}")


def _decompressed(chunks: Iterable[bytes], kind: str, where: str) -> Iterator[bytes]:
    """The uncompressed bytes of a (possibly multi-member) gzip/zstd/bzip2/xz stream, or the bytes as they are."""
    if kind == "tar":
        yield from chunks
        return
    new: Callable[[], Any]
    errors: tuple[type[BaseException], ...]
    if kind == "zstd":
        zstandard = _zstandard()
        if zstandard is None:
            yield from _zstd_command_chunks(chunks, where)
            return
        new, errors = (lambda: zstandard.ZstdDecompressor().decompressobj()), (zstandard.ZstdError,)
    elif kind == "gzip":
        new, errors = (lambda: zlib.decompressobj(31)), (zlib.error,)
    elif kind == "bzip2":
        new, errors = bz2.BZ2Decompressor, (OSError, ValueError)
    elif kind == "xz":
        new, errors = lzma.LZMADecompressor, (lzma.LZMAError,)
    else:
        raise UnsupportedMediaType(f"{where}: unsupported compression {kind!r}")
    d = new()
    started = False
    try:
        for c in chunks:
            data = c
            while data:
                if d.eof:
                    if not data.strip(b"\0"):
                        break  # zero padding after the last member, as gzip(1) accepts
                    d = new()
                started = True
                out = d.decompress(data)
                if out:
                    yield out
                data = d.unused_data if d.eof else b""
        if hasattr(d, "flush") and not d.eof and (tail := d.flush()):
            yield tail
    except errors as e:
        raise InvalidArchive(f"{where}: corrupt {kind} stream: {e}") from None
    if started and not d.eof:
        raise InvalidArchive(f"{where}: truncated {kind} stream")


def _size_cache(store: Store, digest: str) -> Path:
    d = Digest(digest)
    return store.root / "imgcore" / "sizes" / f"{d.algorithm}-{d.hex}"


def record_layer_size(store: Store, digest: str, size: int) -> None:
    """Remembers a layer blob's uncompressed size (the writer knows it; saves ``images`` a decompression)."""
    path = _size_cache(store, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    _fs.atomic_write(path, f"{int(size)}\n".encode())


def layer_size(store: Store, desc: Descriptor) -> int:
    """The layer's uncompressed (tar) size, docker's per-layer SIZE; the blob's size when it is not stored."""
    kind = _kind_of(desc.media_type)
    if kind == "tar":
        return desc.size
    cache = _size_cache(store, desc.digest)
    with contextlib.suppress(OSError, ValueError):
        return int(cache.read_text().strip())
    if not store.has_blob(desc.digest):
        return desc.size
    if kind is None:
        with store.open_blob(desc.digest) as f:
            kind = _sniff(f.read(8))
    total = 0
    for chunk in _decompressed(store.iter_blob(desc.digest), kind, f"layer {desc.digest}"):
        total += len(chunk)
    record_layer_size(store, desc.digest, total)
    return total


def image_size(store: Store, image: Image) -> int:
    """docker's SIZE: the sum of the layers' uncompressed sizes."""
    return sum(layer_size(store, layer) for layer in image.layers)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI ChainIDs: ``chain[0] = diff[0]``, ``chain[i] = sha256(chain[i-1] + " " + diff[i])``."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha256(f"{out[-1]} {d}".encode()))
    return out


# ------------------------------------------------------------------------------------------------- images


_FILTER_KEYS = ("before", "dangling", "label", "reference", "since")


def parse_filters(filters: Iterable[str]) -> dict[str, list[str]]:
    """``["dangling=true", "reference=foo*"]`` -> ``{"dangling": ["true"], "reference": ["foo*"]}``."""
    out: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise InvalidArgument(f"invalid filter {f!r}: expected KEY=VALUE")
        if key not in _FILTER_KEYS:
            raise InvalidArgument(f"invalid filter {key!r}: supported filters are {', '.join(_FILTER_KEYS)}")
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}': expected true or false")
        out.setdefault(key, []).append(value)
    return out


def _go_path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` never cross ``/``; ``[...]`` classes with ``^`` negation."""
    rx = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            rx.append("[^/]*")
        elif ch == "?":
            rx.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            rx.append(re.escape(pattern[i]))
        elif ch == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("^", "]") else i + 1)
            if j < 0:
                raise InvalidArgument(f"invalid reference filter {pattern!r}: unterminated character class")
            body = pattern[i + 1 : j]
            neg = body.startswith("^")
            body = body[1:] if neg else body
            rx.append("[" + ("^/" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = j
        else:
            rx.append(re.escape(ch))
        i += 1
    return re.fullmatch("".join(rx), name) is not None


def _familiar_match(pattern: str, ref: Reference) -> bool:
    """distribution/reference ``FamiliarMatch``: the familiar string, or else the familiar name."""
    return _go_path_match(pattern, ref.familiar) or _go_path_match(pattern, ref.familiar_repository)


def _labels(image: Image) -> Mapping[str, str]:
    labels = image.config.config.get("Labels")
    return labels if isinstance(labels, dict) else {}


def list_images(store: Store, filters: Iterable[str] = (), *, reference: str | None = None) -> list[ImageRow]:
    """``docker images``: one row per tag, ``<none> <none>`` for a dangling image, newest first.

    ``filters`` are docker's (``dangling=true|false``, ``reference=PATTERN``, ``label=KEY[=VALUE]``,
    ``before=IMAGE``, ``since=IMAGE``); ``reference`` is the positional ``REPO[:TAG]`` argument (a pattern too).
    """
    spec = parse_filters(filters)
    patterns = list(spec.get("reference", []))
    if reference is not None:
        patterns.append(reference)
    for p in patterns:
        _go_path_match(p, "")  # a malformed pattern is an error even when no image is there to match
    catalog = _catalog(store)
    created_limits: list[tuple[str, float]] = []
    for key in ("before", "since"):
        for value in spec.get(key, []):
            when = _lookup(store, value, catalog)[0].created
            created_limits.append((key, when.timestamp() if when else 0.0))
    rows: list[ImageRow] = []
    for img in catalog:
        if "dangling" in spec:
            want = spec["dangling"][-1].lower() in ("true", "1")
            if want != (not img.tags):
                continue
        ts = img.created.timestamp() if img.created else 0.0
        if any((k == "before" and ts >= t) or (k == "since" and ts <= t) for k, t in created_limits):
            continue
        labels = _labels(img)
        if not all(_label_match(labels, want) for want in spec.get("label", [])):
            continue
        refs = list(img.references)
        if patterns:
            refs = [r for r in refs if any(_familiar_match(p, r) for p in patterns)]
            if not refs:
                continue
        size = image_size(store, img)
        if not refs:
            rows.append(ImageRow("<none>", "<none>", img, size))
        for r in sorted(refs, key=lambda r: (r.familiar_repository, r.tag or "")):
            rows.append(ImageRow(r.familiar_repository, r.tag or "<none>", img, size))
    rows.sort(key=lambda row: -(row.image.created.timestamp() if row.image.created else 0.0))
    return rows


def _label_match(labels: Mapping[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


# ------------------------------------------------------------------------------------------------- history


def history(store: Store, text: str) -> list[HistoryRow]:
    """``docker history``: the config's history entries, newest first, each non-empty one with its layer's
    uncompressed size. Layers the history does not describe get rows of their own, so no layer is hidden."""
    img = resolve(store, text)
    entries = img.config.history
    layers = list(img.layers)
    rows: list[HistoryRow] = []
    li = 0
    for h in entries:
        empty = bool(h.get("empty_layer"))
        size = 0
        if not empty:
            if li < len(layers):
                size = layer_size(store, layers[li])
            li += 1
        rows.append(
            HistoryRow(
                "<missing>",
                parse_time(h.get("created")),
                str(h.get("created_by") or ""),
                size,
                str(h.get("comment") or ""),
                empty,
            )
        )
    for layer in layers[li:]:
        rows.append(HistoryRow("<missing>", img.created, "", layer_size(store, layer), "", False))
    rows.reverse()
    if rows:
        top = rows[0]
        rows[0] = HistoryRow(
            img.id, top.created, top.created_by, top.size, top.comment, top.empty_layer, tuple(img.repo_tags)
        )
    return rows


# ------------------------------------------------------------------------------------------------- inspect


def _tag_times_path(store: Store) -> Path:
    return store.root / "imgcore" / "images" / "last-tag-time.json"


def _record_tag_time(store: Store, image_id: str) -> None:
    path = _tag_times_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _fs.locked(path.with_suffix(".lock")):
        data: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = _fs.read_json(path)
            if isinstance(loaded, dict):
                data = loaded
        data[image_id] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        _fs.atomic_write_json(path, data)


def _tag_time(store: Store, image_id: str) -> str:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        value = _fs.read_json(_tag_times_path(store)).get(image_id)
        if isinstance(value, str):
            return value
    return ZERO_TIME


def inspect(store: Store, text: str) -> dict[str, Any]:
    """``docker image inspect`` for one image, with docker's keys."""
    img = resolve(store, text)
    data = img.config.data
    rootfs = data.get("rootfs") or {}
    out: dict[str, Any] = {
        "Id": img.id,
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Parent": "",
        "Comment": str(data.get("comment") or ""),
        "Created": img.config.created or ZERO_TIME,
        "DockerVersion": str(data.get("docker_version") or ""),
        "Author": str(data.get("author") or ""),
        "Config": img.config.config or None,
        "Architecture": str(data.get("architecture") or ""),
    }
    if data.get("variant"):
        out["Variant"] = data["variant"]
    out["Os"] = str(data.get("os") or "")
    if data.get("os.version"):
        out["OsVersion"] = data["os.version"]
    out.update(
        {
            "Size": image_size(store, img),
            "RootFS": {"Type": str(rootfs.get("type") or "layers"), "Layers": list(img.config.diff_ids)},
            "Metadata": {"LastTagTime": _tag_time(store, img.id)},
            "Descriptor": img.target_desc.to_json(),
        }
    )
    return out


# ------------------------------------------------------------------------------------------------- tag


def tag(store: Store, source: str, target: str) -> Image:
    """``docker tag SOURCE TARGET``: ``target`` (``latest`` when it has no tag) now points at ``source``'s image."""
    img, _ = _lookup(store, source)
    dst = parse(target)
    if dst.digest is not None:
        raise InvalidReference(f"invalid tag {target!r}: refusing to create a tag with a digest reference")
    name = str(dst)

    def drop_short_spellings(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # a tag another tool wrote as "copied" is the same tag as docker.io/library/copied:latest
        out = []
        for m in manifests:
            raw = (m.get("annotations") or {}).get(REF_NAME)
            if raw and raw != name and _normalised(raw) == name:
                m = {k: v for k, v in m.items() if k != "annotations"}
            out.append(m)
        return out

    with writing(store):  # not while a prune decides what is unreferenced
        store.update_index(drop_short_spellings)
        store.tag(dst, img.target_desc)
    _record_tag_time(store, img.id)
    return resolve(store, name)


# ------------------------------------------------------------------------------------------------- gc


def _walk(store: Store, digest: str, out: set[str]) -> None:
    """Adds ``digest`` and every blob it reaches (an index's stored manifests, a manifest's config and layers)."""
    if digest in out:
        return
    out.add(digest)
    if not store.has_blob(digest):
        return
    try:
        if store.blob_size(digest) > 4 << 20:
            return  # not a manifest or an index
        doc = parse_manifest_or_index(store.get_blob(digest))
    except (ValueError, BlobNotFound):
        return  # a layer or a config
    if isinstance(doc, Index):
        for d in doc.manifests:
            _walk(store, d.digest, out)
    else:
        out.add(doc.config.digest)
        out.update(layer.digest for layer in doc.layers)


def mark(store: Store, containers: Sequence[Any] | None = None) -> set[str]:
    """Every blob digest reachable from ``index.json`` or from a container's image: what GC must keep."""
    keep: set[str] = set()
    for d in store.index_entries():
        _walk(store, d.digest, keep)
    for c in _containers(store) if containers is None else containers:
        if getattr(c, "manifest_digest", None):
            _walk(store, c.manifest_digest, keep)
        if getattr(c, "image_id", None):
            keep.add(c.image_id)
    return keep


def _image_blobs(store: Store, img: Image) -> list[str]:
    out: set[str] = set()
    _walk(store, img.digest, out)
    out.add(img.manifest_desc.digest)
    out.add(img.id)
    out.update(layer.digest for layer in img.layers)
    return sorted(out)


def _delete_images(store: Store, images: Sequence[Image], containers: Sequence[Any]) -> list[str]:
    """Drops the images' index entries and sweeps their blobs that nothing else reaches (caller holds the GC
    lock). Returns the deleted blob digests."""
    digests = {img.digest for img in images}
    store.update_index(lambda ms: [m for m in ms if m.get("digest") not in digests])
    keep = mark(store, containers)
    deleted = []
    for img in images:
        for d in _image_blobs(store, img):
            if d not in keep and store.delete_blob(d):
                deleted.append(d)
                with contextlib.suppress(FileNotFoundError):
                    _size_cache(store, d).unlink()
    return deleted


# ------------------------------------------------------------------------------------------------- rmi


def _untag(store: Store, ref: Reference, records: list[DeleteRecord]) -> None:
    """Drops every index entry whose tag names ``ref`` (short names written by other tools included)."""
    name = str(ref.tagged() if ref.digest is None else ref)
    store.update_index(lambda ms: [m for m in ms if _normalised((m.get("annotations") or {}).get(REF_NAME)) != name])
    records.append(DeleteRecord("Untagged", ref.familiar))


def remove_image(store: Store, text: str, *, force: bool = False) -> list[DeleteRecord]:
    """``docker rmi [-f] IMAGE`` with docker's rules.

    By name: the tag goes; the image goes with its last tag. While a container uses the image its last tag
    stays unless ``force`` (:class:`ImageInUse`). By ID: an image with one tag is untagged and deleted; with
    several tags it needs ``force`` (:class:`ImageConflict`), as does an image a container uses. A deleted image
    that a container still uses keeps its blobs (the container needs them) until the container is removed and
    ``prune`` runs.
    """
    with _gc_exclusive(store):
        catalog = _catalog(store)
        img, ref = _lookup(store, text, catalog)
        same = [i for i in catalog if i.id == img.id] or [img]
        refs = sorted({r for i in same for r in i.references}, key=str)
        containers = _containers(store)
        users = [c for c in containers if any(_container_uses(c, i) for i in same)]
        records: list[DeleteRecord] = []
        quiet = False
        if ref is not None and ref.digest is None:
            if not force and len(refs) == 1 and users:
                raise ImageInUse(
                    f'conflict: unable to remove repository reference "{text}" (must force) - container '
                    f"{short_id(users[0].id)} is using its referenced image {img.short_id}"
                )
            _untag(store, ref, records)
            refs = [r for r in refs if str(r) != str(ref)]
            if refs:
                return records
            quiet = True
        elif len(refs) == 1:
            if not force and users:
                raise ImageInUse(
                    f"conflict: unable to delete {img.short_id} (must be forced) - image is being used by stopped "
                    f"container {short_id(users[0].id)}"
                )
            _untag(store, refs[0], records)
            refs = []
        if refs and not force:
            raise ImageConflict(
                f"conflict: unable to delete {img.short_id} (must be forced) - image is referenced in multiple "
                f"repositories ({', '.join(r.familiar for r in refs)})"
            )
        if users and not force:
            if quiet:
                return records
            raise ImageInUse(
                f"conflict: unable to delete {img.short_id} (must be forced) - image is being used by stopped "
                f"container {short_id(users[0].id)}"
            )
        for r in refs:
            _untag(store, r, records)
        deleted = _delete_images(store, same, containers)
        records.append(DeleteRecord("Deleted", img.id))
        records.extend(DeleteRecord("Deleted", d) for d in deleted if d != img.id)
        return records


rmi = remove_image


# ------------------------------------------------------------------------------------------------- prune


def prune(store: Store, *, all: bool = False) -> PruneReport:
    """``docker image prune [-a]``: removes dangling images (with ``all``, every image no container uses), then
    sweeps every blob that no ``index.json`` entry and no container reaches (orphans from interrupted writes,
    deleted images). A reachable blob is never deleted."""
    records: list[DeleteRecord] = []
    with _gc_exclusive(store):
        catalog = _catalog(store)
        containers = _containers(store)
        victims = [
            img for img in catalog if (all or not img.tags) and not any(_container_uses(c, img) for c in containers)
        ]
        if victims:
            digests = {img.digest for img in victims}
            store.update_index(lambda ms: [m for m in ms if m.get("digest") not in digests])
            seen: set[str] = set()
            for img in victims:
                records.extend(DeleteRecord("untagged", r.familiar) for r in img.references)
                if img.id not in seen:
                    seen.add(img.id)
                    records.append(DeleteRecord("deleted", img.id))
        keep = mark(store, containers)
        deleted: list[str] = []
        reclaimed = 0
        gone = {v.digest for v in victims}
        remaining = [img for img in catalog if img.digest not in gone]
        unpacked, reclaimed = _sweep_unpacked(store, remaining, containers)
        from imgcore.containers import Containers

        Containers(store).cleanup()  # half-made containers, layers and roots of interrupted commands
        for d in store.list_blobs():
            if d in keep:
                continue
            try:
                size = store.blob_size(d)
            except BlobNotFound:
                continue
            if store.delete_blob(d):
                deleted.append(d)
                reclaimed += size
                with contextlib.suppress(FileNotFoundError, ValueError):
                    _size_cache(store, d).unlink()
        return PruneReport(tuple(records), tuple(deleted), reclaimed, tuple(unpacked))


def _sweep_unpacked(store: Store, images: Sequence[Image], containers: Sequence[Any]) -> tuple[list[str], int]:
    """Removes unpacked layer directories (``imgcore/layers/<chain>``, the containers' shared lower layers) and
    copy-driver baselines (``imgcore/rootfs/<top chain>``) that no remaining image and no container needs. Each
    goes under the lock the containers code unpacks it under, renamed away first so it vanishes atomically."""
    import secrets
    import shutil

    keep: set[str] = set()
    tops: set[str] = set()
    for img in images:
        chains = [Digest(c).hex for c in chain_ids(img.config.diff_ids)]
        keep.update(chains)
        tops.add(chains[-1] if chains else "empty")
    for c in containers:  # overlay containers mount their chain's layers; copy ones diff against the baseline
        chains = [str(x).partition(":")[2] or str(x) for x in getattr(c, "chain_ids", ()) or ()]
        keep.update(chains)
        tops.add(chains[-1] if chains else "empty")
    removed: list[str] = []
    reclaimed = 0
    for sub, marker, wanted in (("layers", "info.json", keep), ("rootfs", ".complete", tops)):
        base = store.root / "imgcore" / sub
        if not base.is_dir():
            continue
        for p in sorted(base.iterdir()):
            if p.name.startswith(".") or p.name in wanted or not (p / marker).is_file():
                continue
            with _fs.locked(base / f".{p.name}.lock"):
                if not p.is_dir():
                    continue
                size = _tree_bytes(p)
                trash = base / f".tmp-rm-{p.name}-{secrets.token_hex(4)}"
                p.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
            removed.append(f"{sub}/{p.name}")
            reclaimed += size
    return removed, reclaimed


# ------------------------------------------------------------------------------------------------- df


@dataclass(frozen=True)
class LayerUsage:
    digest: str
    diff_id: str
    media_type: str
    size: int  # uncompressed
    stored: int  # bytes of the blob on disk (0 when not stored)
    images: tuple[str, ...]  # image IDs using it
    unpacked: int = 0  # bytes of its unpacked directories (imgcore/layers/<chain id>), when unpacked

    @property
    def shared(self) -> bool:
        return len(self.images) > 1


@dataclass(frozen=True)
class ImageUsage:
    image: Image
    size: int
    shared_size: int
    containers: int

    @property
    def unique_size(self) -> int:
        return self.size - self.shared_size


@dataclass(frozen=True)
class ContainerUsage:
    id: str
    name: str
    image: str
    size: int  # bytes of its writable layer (upper/) or private copy (rootfs/)
    driver: str
    created: str = ""


@dataclass(frozen=True)
class DiskUsage:
    images: tuple[ImageUsage, ...]
    layers: tuple[LayerUsage, ...]
    containers: tuple[ContainerUsage, ...]
    other_blobs: int = 0  # bytes of blobs no image reaches (what prune would sweep)
    baselines: int = 0  # bytes of the copy driver's flattened image copies (imgcore/rootfs/<top chain>)

    @property
    def images_size(self) -> int:
        """Disk the images need: every layer counted once."""
        return sum(layer.size for layer in self.layers)

    @property
    def images_size_without_sharing(self) -> int:
        return sum(i.size for i in self.images)

    @property
    def saved_by_sharing(self) -> int:
        """What shared layers save: the images' sizes summed minus every layer counted once."""
        return self.images_size_without_sharing - self.images_size

    @property
    def images_active(self) -> int:
        return sum(1 for i in self.images if i.containers)

    @property
    def images_reclaimable(self) -> int:
        active = {i.image.id for i in self.images if i.containers}
        return sum(layer.size for layer in self.layers if not active.intersection(layer.images))

    @property
    def containers_size(self) -> int:
        return sum(c.size for c in self.containers)

    @property
    def stored(self) -> int:
        """Bytes of the layer blobs on disk (compressed)."""
        return sum(layer.stored for layer in self.layers)


def _tree_bytes(path: Path) -> int:
    """Apparent size of the files under ``path``, each inode once, symlinks not followed."""
    total = 0
    seen: set[tuple[int, int]] = set()
    if not path.is_dir():
        return 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            try:
                st = (Path(dirpath) / name).lstat()
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
    return total


def _unpacked_bytes(store: Store, chain_id: str) -> int:
    info = store.root / "imgcore" / "layers" / Digest(chain_id).hex / "info.json"
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        data = _fs.read_json(info)
        return int(data.get("unpacked_bytes") or data.get("size") or 0)
    return 0


def disk_usage(store: Store) -> DiskUsage:
    """``docker system df -v``: images (size, shared, unique, containers), layers (uncompressed, stored, users),
    containers (writable layer)."""
    catalog = _catalog(store)
    containers = _containers(store)
    users: dict[str, set[str]] = {}
    meta: dict[str, Descriptor] = {}
    diff_of: dict[str, str] = {}
    unpacked: dict[str, dict[str, int]] = {}
    for img in catalog:
        diffs = img.config.diff_ids
        chains = chain_ids(diffs)
        for i, layer in enumerate(img.layers):
            users.setdefault(layer.digest, set()).add(img.id)
            meta.setdefault(layer.digest, layer)
            if i < len(diffs):
                diff_of.setdefault(layer.digest, diffs[i])
                unpacked.setdefault(layer.digest, {})[chains[i]] = _unpacked_bytes(store, chains[i])
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
    for img in catalog:
        size = sum(by_digest[x.digest].size for x in img.layers)
        shared = sum(by_digest[x.digest].size for x in img.layers if by_digest[x.digest].shared)
        n = sum(1 for c in containers if _container_uses(c, img))
        images.append(ImageUsage(img, size, shared, n))
    cusage = []
    for c in containers:
        path = Path(c.path)
        upper = path / "upper"
        size = _tree_bytes(upper if upper.is_dir() else path / "rootfs")
        cusage.append(
            ContainerUsage(str(c.id), str(c.name or ""), str(c.image), size, str(c.driver), str(c.created or ""))
        )
    keep = mark(store, containers)
    other = 0
    for d in store.list_blobs():
        if d not in keep:
            with contextlib.suppress(BlobNotFound):
                other += store.blob_size(d)
    baselines = 0
    rootfs_dir = store.root / "imgcore" / "rootfs"
    if rootfs_dir.is_dir():
        for p in rootfs_dir.iterdir():
            if not p.name.startswith(".") and (p / ".complete").is_file():
                baselines += _tree_bytes(p)
    return DiskUsage(tuple(images), layers, tuple(cusage), other, baselines)


# ------------------------------------------------------------------------------------------------- import


def _now_rfc3339() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        return _dt.datetime.fromtimestamp(int(epoch), _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _TarCheck:
    """Hashes the uncompressed stream (the diff_id), counts it, and checks that it starts like a tar archive."""

    def __init__(self, where: str) -> None:
        self.hasher = Hasher("sha256")
        self.size = 0
        self.head = b""
        self.where = where

    def update(self, chunk: bytes) -> None:
        if len(self.head) < 512:
            self.head += chunk[: 512 - len(self.head)]
        self.hasher.update(chunk)
        self.size += len(chunk)

    def finish(self) -> str:
        if self.size < 512:
            raise InvalidArchive(f"{self.where}: not a tar archive ({self.size} bytes, less than one header)")
        if self.head.strip(b"\0"):  # all zeros: an empty archive
            try:
                tarfile.TarInfo.frombuf(self.head, "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                raise InvalidArchive(f"{self.where}: not a tar archive: {e}") from None
        if self.size % 512:
            raise InvalidArchive(f"{self.where}: truncated tar archive ({self.size} bytes, not a multiple of 512)")
        return str(self.hasher.digest())


def import_image(
    store: Store,
    source: str | os.PathLike[str] | IO[bytes],
    reference: str | None = None,
    *,
    message: str | None = None,
    changes: Iterable[str] = (),
    source_name: str | None = None,
    platform: Platform | None = None,
) -> Image:
    """``docker import``: a root filesystem tarball (plain, gzip, zstd; bzip2 and xz too) becomes a one-layer image.

    gzip and zstd tarballs are stored as they are (their digest stays the file's); anything else is stored
    gzip-compressed (level 1, no name, mtime 0: the same tar always gives the same layer digest). The config gets
    the diff_id, the host platform, ``-c`` changes and a history entry whose comment is ``message`` or
    ``Imported from SOURCE``; ``SOURCE_DATE_EPOCH`` fixes its created time. Tagged as ``reference`` when given,
    otherwise kept as a dangling image.
    """
    target = parse(reference) if reference else None
    if target is not None and target.digest is not None:
        raise InvalidReference(f"invalid reference {reference!r}: an import target cannot have a digest")
    from imgcore.commit import apply_changes

    cfg_changes = apply_changes({}, list(changes))
    if isinstance(source, str | os.PathLike):
        name = source_name or str(source)
        f: IO[bytes] = Path(source).open("rb")  # noqa: SIM115 (closed in the finally below)
        close = True
    else:
        name = source_name or "-"
        f, close = source, False
    where = f"import {name}"
    try:
        head = f.read(CHUNK)
        chunks = _chain([head], iter(lambda: f.read(CHUNK), b""))
        kind = _sniff(head)
        check = _TarCheck(where)
        with writing(store):
            if kind in ("gzip", "zstd"):
                media_type = OCI_LAYER_GZIP if kind == "gzip" else OCI_LAYER_ZSTD
                ing = store.ingest(None, resume=False)
                try:

                    def tee() -> Iterator[bytes]:
                        for c in chunks:
                            ing.write(c)
                            yield c

                    for out in _decompressed(tee(), kind, where):
                        check.update(out)
                    diff_id = check.finish()
                    layer = ing.commit()
                finally:
                    ing.close()
            else:
                media_type = OCI_LAYER_GZIP
                comp = zlib.compressobj(1, zlib.DEFLATED, 31)
                ing = store.ingest(None, resume=False)
                try:
                    for out in _decompressed(chunks, kind, where):
                        check.update(out)
                        if z := comp.compress(out):
                            ing.write(z)
                    ing.write(comp.flush())
                    diff_id = check.finish()
                    layer = ing.commit()
                finally:
                    ing.close()
            layer = Descriptor(media_type, layer.digest, layer.size)
            record_layer_size(store, layer.digest, check.size)
            plat = platform or Platform.host()
            created = _now_rfc3339()
            comment = message if message else f"Imported from {name}"
            cfg: dict[str, Any] = {
                "architecture": plat.architecture,
                "os": plat.os,
                "created": created,
                "comment": comment,
                "config": cfg_changes,
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": created, "comment": comment}],
            }
            if plat.variant:
                cfg["variant"] = plat.variant
            config_raw = canonical_json(cfg)
            cdesc = store.put_blob(config_raw)
            manifest = Manifest.build(Descriptor(OCI_CONFIG, cdesc.digest, cdesc.size), [layer])
            mdesc = store.put_manifest(manifest.raw, OCI_MANIFEST)
            if target is not None:
                store.tag(target, mdesc)
                _record_tag_time(store, cdesc.digest)
            else:
                store.add_untagged(mdesc)
    finally:
        if close:
            f.close()
    return load_image(store, mdesc, (str(target),) if target else ())


def _chain(*iterables: Iterable[bytes]) -> Iterator[bytes]:
    for it in iterables:
        for c in it:
            if c:
                yield c


# ------------------------------------------------------------------------------------------------- export


_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")


def write_tree_tar(root: str | os.PathLike[str], out: BinaryIO) -> int:
    """Writes the tree under ``root`` as a deterministic PAX tar: entries in sorted path order, names relative
    (``etc/passwd``), numeric owners without user/group names, hardlinks kept as links, devices and FIFOs kept,
    sockets skipped, xattrs as ``SCHILY.xattr`` records (overlayfs' own left out). Symlinks are stored, never
    followed. Returns the number of entries."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(2, "no such directory", str(base))
    links: dict[tuple[int, int], str] = {}
    count = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:

        def add(path: Path, rel: str) -> None:
            nonlocal count
            st = os.lstat(path)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = info.gname = ""
            info.mtime = int(st.st_mtime)
            fileobj = None
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type, info.linkname = tarfile.LNKTYPE, links[key]
                else:
                    if st.st_nlink > 1:
                        links[key] = rel
                    info.type, info.size = tarfile.REGTYPE, st.st_size
                    fileobj = path.open("rb")
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, str(path.readlink())
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            else:
                return  # sockets cannot be archived
            pax: dict[str, str] = {}
            with contextlib.suppress(OSError):
                for name in sorted(os.listxattr(path, follow_symlinks=False)):
                    if name.startswith(_SKIP_XATTR_PREFIXES):
                        continue
                    value = os.getxattr(path, name, follow_symlinks=False)
                    pax[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
            info.pax_headers = pax
            try:
                tf.addfile(info, fileobj)
            finally:
                if fileobj is not None:
                    fileobj.close()
            count += 1

        def walk(directory: Path, prefix: str) -> None:
            with os.scandir(directory) as it:
                names = sorted(e.name for e in it)
            for name in names:
                path = directory / name
                rel = f"{prefix}{name}"
                add(path, rel)
                if path.is_dir() and not path.is_symlink():
                    walk(path, rel + "/")

        walk(base, "")
    return count


def export(store: Store, container: str, out: BinaryIO) -> int:
    """``docker export``: the container's root filesystem, flattened (the merged view), as a tar on ``out``.
    Returns the number of entries."""
    from imgcore.containers import Containers

    cs = Containers(store)
    c = cs.get(container)
    was_mounted = os.path.ismount(c.rootfs)
    rootfs = cs.mount(c)
    try:
        return write_tree_tar(rootfs, out)
    finally:
        if not was_mounted:
            cs.unmount(c)  # leave the container as we found it, as docker export does
