"""The catalog: which images a store holds, the one resolver, and the read-side commands (images, history,
inspect) plus ``tag``.

A tag is an entry of the store's ``index.json`` (annotation ``org.opencontainers.image.ref.name`` = the full
normalised reference); an untagged entry is a dangling image (``<none> <none>``).

Invariants:
- :func:`resolve` is the only place that turns a user's text into an image (tag, ``name@digest``, full or short
  image ID, ``sha256:<id>``, a manifest or index digest); every command and the front door go through it;
- manifests and configs are verified against their digests when read;
- one unreadable image never breaks listing the others (it is left out of :func:`catalog` unless ``strict``);
- ``tag`` runs under a lease's guard, so a concurrent collection never sweeps the image it is tagging.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgcore import _fs
from imgcore._humanize import parse_time
from imgcore.errors import (
    BlobNotFound,
    ImageConflict,
    ImageNotFound,
    ImgcoreError,
    InvalidArgument,
    InvalidManifest,
    InvalidReference,
    NotAnImage,
)
from imgcore.image.model import Artifact, Image, chain_ids
from imgcore.image.sizes import layer_size
from imgcore.models import (
    DOCKER_MANIFEST,
    ORIGINAL_MANIFEST,
    REF_NAME,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    is_attestation,
    oci_form,
    parse_manifest_or_index,
)
from imgcore.reference import Reference, parse
from imgcore.store import ContentStore, Lease, without_name

__all__ = [
    "HistoryRow",
    "ImageRow",
    "ImageSummary",
    "artifacts",
    "catalog",
    "convert_docker_entries",
    "history",
    "image_size",
    "index_form",
    "inspect",
    "keep_untagged",
    "list_images",
    "load_image",
    "lookup",
    "normalised_name",
    "parse_filters",
    "record_repo_digest",
    "record_tag_time",
    "repo_digests",
    "resolve",
    "resolve_artifact",
    "summaries",
    "tag",
    "tag_manifest",
]

ZERO_TIME = "0001-01-01T00:00:00Z"
_HEX_ID = re.compile(r"(sha256:)?([0-9a-f]{1,64})")


@dataclass(frozen=True)
class ImageSummary:
    """What ``images`` shows of an image, without its documents: kept per index-entry digest in
    ``imgcore/summaries.json`` (the digest names immutable content, so an entry never goes stale)."""

    digest: str  # what the tag points at (manifest or index)
    manifest_digest: str
    id: str  # the config digest
    created_text: str | None
    labels: Mapping[str, str]
    size: int  # docker's SIZE: the layers' uncompressed bytes
    tags: tuple[str, ...] = ()
    original: str | None = None  # the docker manifest an OCI twin was made from (index.json's annotation)

    @property
    def distribution_digest(self) -> str:
        """The digest the image has in a registry: the original docker manifest's, else what the tag points at."""
        return self.original or self.digest

    error: str = ""  # why the image cannot be read (then ``id`` is the index entry's digest, ``size`` 0)

    @functools.cached_property
    def created(self) -> _dt.datetime | None:
        """The config's ``created`` time (None when absent or unreadable)."""
        return parse_time(self.created_text)

    @functools.cached_property
    def references(self) -> tuple[Reference, ...]:
        """The tags, parsed."""
        return tuple(parse(t) for t in self.tags)

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the ID."""
        return self.id.partition(":")[2][:12]


@dataclass(frozen=True)
class ImageRow:
    """One line of ``images``: a tag, or ``<none> <none>`` for a dangling image."""

    repository: str
    tag: str
    image: ImageSummary
    size: int
    repo_digest: str | None = None  # the digest this repository was pulled or pushed as

    @property
    def digest(self) -> str:
        """``images --digests``: what the row's repository was pulled or pushed as (the index of a
        multi-platform pull), else the image's own distribution digest."""
        return self.repo_digest or self.image.distribution_digest

    @property
    def dangling(self) -> bool:
        """Whether the image has no tag (listed as ``<none> <none>``)."""
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


# ------------------------------------------------------------------------------------------------- loading


def _manifest_for(store: ContentStore, desc: Descriptor) -> tuple[Descriptor, Manifest]:
    raw = store.get_blob(desc.digest, verify=True)
    doc = parse_manifest_or_index(raw, desc.media_type or None)
    if isinstance(doc, Manifest):
        return Descriptor(doc.media_type, desc.digest, len(raw)), doc
    child = _pick_child(store, doc, desc.digest)
    raw = store.get_blob(child.digest, verify=True)
    return child.with_annotations(None), Manifest.from_bytes(raw, child.media_type or None)


def _pick_child(store: ContentStore, index: Index, where: str) -> Descriptor:
    with contextlib.suppress(InvalidManifest, ValueError, LookupError):
        chosen = index.for_platform(Platform.host())
        if store.has_blob(chosen.digest):
            return chosen
    for d in index.manifests:
        if is_attestation(d):
            continue
        if store.has_blob(d.digest) and "index" not in d.media_type and "list" not in d.media_type:
            return d
    raise BlobNotFound(f"image index {where}: none of its {len(index.manifests)} manifests is in the store")


def load_image(store: ContentStore, desc: Descriptor, tags: Sequence[str] = ()) -> Image:
    """The image a manifest (or index) descriptor points at; manifest and config are verified on read. An
    ``index.json`` entry's ``io.imgcore.original-manifest`` annotation names the docker manifest it was made from
    (:func:`index_form`); that one is the image's ``original`` when it is stored."""
    mdesc, manifest = _manifest_for(store, desc)
    if manifest.is_artifact:
        raise NotAnImage(_artifact_message(desc.digest, manifest))
    config = ImageConfig.from_bytes(store.get_blob(manifest.config.digest, verify=True))
    target = desc.with_annotations(None) if desc.digest != mdesc.digest else None
    original = None
    odigest = (desc.annotations or {}).get(ORIGINAL_MANIFEST)
    if odigest:
        with contextlib.suppress(BlobNotFound, ValueError):
            original = Descriptor(DOCKER_MANIFEST, odigest, store.blob_size(odigest))
    return Image(mdesc, manifest, config, tuple(tags), target, store, original)


def _artifact_message(name: str, manifest: Manifest) -> str:
    # containers/image's NonImageArtifactError (what podman and skopeo say), which names the config's media type
    return f'{name}: unsupported image-specific operation on artifact with type "{manifest.config.media_type}"'


def artifacts(store: ContentStore) -> list[Artifact]:
    """Every OCI artifact ``index.json`` records (one per distinct digest, tags gathered), in index order."""
    descs, tags = _index_groups(store)
    out = []
    for digest, desc in descs.items():
        with contextlib.suppress(BlobNotFound, ValueError):
            raw = store.get_blob(digest, verify=True)
            doc = parse_manifest_or_index(raw, desc.media_type or None)
            if isinstance(doc, Manifest) and doc.is_artifact:
                mdesc = Descriptor(doc.media_type, digest, len(raw))
                out.append(Artifact(mdesc, doc, tuple(sorted(tags[digest]))))
    return out


def _named_artifact(store: ContentStore, text: str) -> Artifact | None:
    """The artifact ``text`` names (a tag, ``name@digest`` or its digest), if it names one."""
    ref: Reference | None = None
    if _HEX_ID.fullmatch(text) is None:
        with contextlib.suppress(InvalidReference):
            ref = parse(text)
    for a in artifacts(store):
        if ref is not None and (str(ref) in a.tags or ref.digest == a.digest):
            return a
        if text in (a.digest, a.digest.partition(":")[2]):
            return a
    return None


def index_form(store: ContentStore, lease: Lease, desc: Descriptor) -> tuple[Descriptor, dict[str, str]]:
    """What ``index.json`` records for the stored manifest ``desc``, and the annotations that go with it.

    skopeo, umoci, podman and buildah read an OCI layout's entries only when they point at OCI manifests, so a
    docker schema 2 manifest is recorded through its OCI twin (:func:`imgcore.models.oci_form`: the same config
    and layer blobs, OCI media types), stored here and leased, with ``io.imgcore.original-manifest`` naming the
    docker manifest (kept alive by GC, sent by ``push``). Anything else is recorded as it is."""
    if desc.media_type != DOCKER_MANIFEST:
        return desc.with_annotations(None), {}
    twin = oci_form(Manifest.from_bytes(store.get_blob(desc.digest, verify=True), DOCKER_MANIFEST))
    lease.hold(twin.digest)
    tdesc = store.put_manifest(twin.raw, twin.media_type)
    return tdesc, {ORIGINAL_MANIFEST: desc.digest}


def _config_digest(store: ContentStore, entry: dict[str, Any]) -> str | None:
    with contextlib.suppress(BlobNotFound, ValueError, TypeError, KeyError):
        return _manifest_for(store, Descriptor.from_json(entry))[1].config.digest
    return None


def _drop_untagged_copies(store: ContentStore, image_id: str, digest: str) -> None:
    """Untagged entries of the same image (same config) under another manifest digest go: docker has one image
    per ID, so loading one image from two archives (say, docker-save's and an OCI one) leaves one row."""

    def update(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME) or m.get("digest") == digest
                or _config_digest(store, m) != image_id]  # fmt: skip

    store.update_index(update)


def convert_docker_entries(store: ContentStore) -> list[tuple[str, str, str]]:
    """Records every ``index.json`` entry that points straight at a docker schema 2 manifest (stores written
    before :func:`index_form`) through its OCI twin, as new entries are; returns (name or ``<none>``, docker
    manifest digest, twin digest) for each. ``fsck --repair`` runs it."""
    done: list[tuple[str, str, str]] = []
    with store.lease("convert") as lease:
        twins: dict[str, tuple[Descriptor, dict[str, str]]] = {}
        for d in store.index_entries():
            if d.media_type == DOCKER_MANIFEST and d.digest not in twins and store.has_blob(d.digest):
                lease.hold(d.digest)
                twins[d.digest] = index_form(store, lease, d)

        def update(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for m in manifests:
                if m.get("mediaType") == DOCKER_MANIFEST and m.get("digest") in twins:
                    twin, extra = twins[m["digest"]]
                    annotations = {**(m.get("annotations") or {}), **extra}
                    done.append((annotations.get(REF_NAME, "<none>"), m["digest"], twin.digest))
                    m = twin.with_annotations(annotations).to_json()
                out.append(m)
            return out

        with lease.guard():
            store.update_index(update)
    return done


def keep_untagged(store: ContentStore, lease: Lease, desc: Descriptor) -> Descriptor:
    """Keeps the stored manifest ``desc`` in ``index.json`` without a tag (through :func:`index_form`); returns
    the entry's descriptor."""
    entry, annotations = index_form(store, lease, desc)
    entry = entry.with_annotations(annotations or None)
    image_id = _config_digest(store, entry.to_json())
    with lease.guard():
        for d in store.index_entries():  # the image is already there (under another manifest): no second row
            if image_id is not None and _config_digest(store, d.to_json()) == image_id:
                return d
        store.add_untagged(entry)
    return entry


def normalised_name(name: str | None) -> str | None:
    """A tag annotation as a full reference: other tools (skopeo, umoci) write short ones like ``copied``."""
    if not name:
        return None
    try:
        return str(parse(name))
    except InvalidReference:
        return None


def _index_groups(store: ContentStore) -> tuple[dict[str, Descriptor], dict[str, list[str]]]:
    """``index.json`` grouped by digest, in index order: one descriptor each (one with a media type where an
    entry has it), and the full normalised tags pointing at it."""
    descs: dict[str, Descriptor] = {}
    tags: dict[str, list[str]] = {}
    for d in store.index_entries():
        if d.digest not in descs:
            descs[d.digest] = d
            tags[d.digest] = []
        name = normalised_name((d.annotations or {}).get(REF_NAME))
        if name:
            tags[d.digest].append(name)
            if not descs[d.digest].media_type and d.media_type:
                descs[d.digest] = d
    return descs, tags


def catalog(store: ContentStore, *, strict: bool = False) -> list[Image]:
    """One :class:`Image` per distinct digest in ``index.json``, its tags gathered; unreadable entries skipped
    unless ``strict``."""
    descs, tags = _index_groups(store)
    out = []
    for digest in descs:
        try:
            out.append(load_image(store, descs[digest], sorted(tags[digest])))
        except (ImgcoreError, ValueError, OSError):  # missing, corrupt (DigestMismatch) or invalid documents
            if strict:
                raise
    return out


# ------------------------------------------------------------------------------------------------- resolve


def lookup(store: ContentStore, text: str, images: list[Image] | None = None) -> tuple[Image, Reference | None]:
    """Resolves ``text`` as docker does: a tag first, then an image ID (full or a unique prefix, with or without
    ``sha256:``), or ``name@digest``. Returns the image and the reference when ``text`` named one; text that
    names an OCI artifact raises :class:`~imgcore.errors.NotAnImage` (podman's message)."""
    try:
        return _lookup(store, text, images)
    except ImageNotFound:
        artifact = _named_artifact(store, text.strip())
        if artifact is None:
            raise
        raise NotAnImage(_artifact_message(text.strip(), artifact.manifest)) from None


def _lookup(store: ContentStore, text: str, images: list[Image] | None) -> tuple[Image, Reference | None]:
    if not isinstance(text, str) or not text.strip():
        raise InvalidReference("invalid reference: empty")
    text = text.strip()
    hexmatch = _HEX_ID.fullmatch(text)
    id_only = hexmatch is not None and (hexmatch.group(1) is not None or len(hexmatch.group(2)) == 64)
    images = catalog(store) if images is None else images
    ref: Reference | None = None
    if not id_only:
        try:
            ref = parse(text)
        except InvalidReference:
            if hexmatch is None:
                raise
    if ref is not None:
        if ref.digest is not None:
            name = f"{ref.familiar_repository}@{ref.digest}"
            pulled_as = {iid for iid, names in repo_digests(store).items() if name in names}
            for img in images:
                if ref.digest in img.digests or img.id in pulled_as:
                    return img, ref
            if store.has_blob(ref.digest):
                with contextlib.suppress(ValueError, BlobNotFound):
                    return load_image(store, Descriptor("", ref.digest, store.blob_size(ref.digest))), ref
            raise ImageNotFound(f"No such image: {ref.familiar}")
        name = str(ref)
        for img in images:
            if name in img.tags:
                return img, ref
        if hexmatch is None:
            raise ImageNotFound(f"No such image: {ref.familiar}")
    assert hexmatch is not None
    prefix = hexmatch.group(2)
    ids = sorted({img.id for img in images if img.id.partition(":")[2].startswith(prefix)})
    if len(ids) > 1:
        raise ImageConflict(f"image ID prefix {prefix!r} is ambiguous: it matches {len(ids)} images")
    if ids:
        matches = [img for img in images if img.id == ids[0]]
        return sorted(matches, key=lambda i: not i.tags)[0], None
    if len(prefix) == 64:
        for img in images:
            if f"sha256:{prefix}" in img.digests:
                return img, None
    raise ImageNotFound(f"No such image: {text}")


def resolve(store: ContentStore, text: str) -> Image:
    """The image ``text`` names: ``repo[:tag]``, ``repo@sha256:…``, a full or short image ID (config digest),
    ``sha256:<id>``.

    Raises:
        InvalidReference: ``text`` is neither a valid reference nor a hex ID.
        ImageNotFound: nothing matches.
        NotAnImage: ``text`` names an OCI artifact.
        ImageConflict: a short ID matches several images.
    """
    return lookup(store, text)[0]


def resolve_artifact(store: ContentStore, text: str) -> Artifact:
    """The OCI artifact ``text`` names (a tag, ``name@digest``, its digest); ``ImageNotFound`` otherwise."""
    found = _named_artifact(store, text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ImageNotFound(f"No such artifact: {text}")
    return found


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


_SUMMARY_VERSION = 1


def _summary_of(store: ContentStore, img: Image) -> ImageSummary:
    labels = {str(k): str(v) for k, v in _labels(img).items()}
    return ImageSummary(img.digest, img.manifest_desc.digest, img.id, img.config.created, labels,
                        image_size(store, img), img.tags)  # fmt: skip


def _cached_summary(entry: object, digest: str) -> ImageSummary | None:
    """A cache entry, checked field by field (the cache is a store file: a bad one is recomputed, never trusted)."""
    if not isinstance(entry, dict):
        return None
    mdigest, iid, created, labels, size = (entry.get(k) for k in ("manifest", "id", "created", "labels", "size"))
    if not (isinstance(mdigest, str) and isinstance(iid, str) and isinstance(size, int) and size >= 0):
        return None
    if created is not None and not isinstance(created, str):
        return None
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        return None
    return ImageSummary(digest, mdigest, iid, created, labels, size)


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def summaries(store: ContentStore) -> list[ImageSummary]:
    """One summary per distinct digest in ``index.json`` (tags gathered), from the summary cache where it has
    them; the rest are read (verified and validated) once and added to the cache."""
    path = store.paths.summaries
    cache: dict[str, object] = {}
    with contextlib.suppress(OSError, ValueError):
        data = _fs.read_json(path)
        if isinstance(data, dict) and data.get("version") == _SUMMARY_VERSION and isinstance(data.get("images"), dict):
            cache = dict(data["images"])
    descs, tags = _index_groups(store)
    order = list(descs)
    out: list[ImageSummary] = []
    added = False
    for digest in order:
        summary = _cached_summary(cache.get(digest), digest)
        if summary is None:
            try:
                img = load_image(store, descs[digest])
            except NotAnImage:
                continue  # an OCI artifact: `artifacts` lists it, not `images`
            except (ImgcoreError, ValueError, OSError) as e:
                # listed with an error marker (never cached: a repaired store lists it properly), not hidden
                out.append(ImageSummary(digest, digest, digest, None, {}, 0, tuple(sorted(tags[digest])),
                                        error=_one_line(str(e))))  # fmt: skip
                continue
            summary = _summary_of(store, img)
            cache[digest] = {"manifest": summary.manifest_digest, "id": summary.id, "created": summary.created_text,
                             "labels": dict(summary.labels), "size": summary.size}  # fmt: skip
            added = True
        original = (descs[digest].annotations or {}).get(ORIGINAL_MANIFEST)
        out.append(dataclasses.replace(summary, tags=tuple(sorted(tags[digest])), original=original))
    if added:
        with contextlib.suppress(OSError):
            live = {d: cache[d] for d in order if d in cache}
            _fs.atomic_write(path, json.dumps({"version": _SUMMARY_VERSION, "images": live}).encode())
    return out


def list_images(store: ContentStore, filters: Iterable[str] = (), *, reference: str | None = None) -> list[ImageRow]:
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
    images = summaries(store)
    known = repo_digests(store)
    created_limits: list[tuple[str, float]] = []
    for key in ("before", "since"):
        for value in spec.get(key, []):
            when = lookup(store, value)[0].created
            created_limits.append((key, when.timestamp() if when else 0.0))
    rows: list[ImageRow] = []
    for img in images:
        if "dangling" in spec:
            want = spec["dangling"][-1].lower() in ("true", "1")
            if want != (not img.tags):
                continue
        ts = img.created.timestamp() if img.created else 0.0
        if any((k == "before" and ts >= t) or (k == "since" and ts <= t) for k, t in created_limits):
            continue
        labels = img.labels
        if not all(_label_match(labels, want) for want in spec.get("label", [])):
            continue
        refs = list(img.references)
        if patterns:
            refs = [r for r in refs if any(_familiar_match(p, r) for p in patterns)]
            if not refs:
                continue
        size = img.size
        if not refs:
            rows.append(ImageRow("<none>", "<none>", img, size))
        pulled = dict(x.split("@", 1) for x in known.get(img.id, []) if "@" in x)
        for r in sorted(refs, key=lambda r: (r.familiar_repository, r.tag or "")):
            repo = r.familiar_repository
            rows.append(ImageRow(repo, r.tag or "<none>", img, size, pulled.get(repo)))
    rows.sort(key=lambda row: -(row.image.created.timestamp() if row.image.created else 0.0))
    return rows


def _label_match(labels: Mapping[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


# ------------------------------------------------------------------------------------------------- history


def history(store: ContentStore, text: str) -> list[HistoryRow]:
    """``docker history``: the config's history entries, newest first, each non-empty one with its layer's
    uncompressed size. Layers the history does not describe get rows of their own, so no layer is hidden."""
    img = resolve(store, text)
    entries = img.config.history
    layers = list(img.manifest.layers)
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


def _update_table(path: Path, key: str, update: Callable[[Any], Any]) -> None:
    """``table[key] = update(table.get(key))`` in a JSON table beside the layout, rewritten atomically under its
    lock, so concurrent writers never lose each other's entries; an unreadable table is started afresh rather
    than failing the command that writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _fs.locked(path.with_suffix(".lock")):
        data: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = _fs.read_json(path)
            if isinstance(loaded, dict):
                data = loaded
        data[key] = update(data.get(key))
        _fs.atomic_write_json(path, data)


def _read_table(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = _fs.read_json(path)
        if isinstance(data, dict):
            return data
    return {}


def record_tag_time(store: ContentStore, image_id: str) -> None:
    """Notes now as the time ``image_id`` was last tagged (``inspect``'s ``Metadata.LastTagTime``)."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _update_table(store.paths.tag_times, image_id, lambda _: now)


def _tag_time(store: ContentStore, image_id: str) -> str:
    value = _read_table(store.paths.tag_times).get(image_id)
    return value if isinstance(value, str) else ZERO_TIME


def record_repo_digest(store: ContentStore, image_id: str, repository: str, digest: str) -> None:
    """Notes that ``image_id`` is ``repository@digest`` in a registry (pulled or pushed as that: docker's
    ``RepoDigests``); one digest per repository, the latest."""
    name = parse(repository).familiar_repository

    def update(old: Any) -> list[str]:
        kept = [x for x in old if isinstance(x, str) and x.split("@", 1)[0] != name] if isinstance(old, list) else []
        return [*kept, f"{name}@{digest}"]

    _update_table(store.paths.repo_digests, image_id, update)


def repo_digests(store: ContentStore) -> dict[str, list[str]]:
    """Image ID -> the ``repo@digest`` names it was pulled or pushed as (familiar repositories)."""
    table = _read_table(store.paths.repo_digests)
    return {k: [x for x in v if isinstance(x, str)] for k, v in table.items() if isinstance(v, list)}


def _graph_driver(store: ContentStore, img: Image) -> dict[str, Any]:
    """docker's ``GraphDriver`` for an image, in the containerd snapshotter's name: the layer cache's directory
    of each layer in overlay form (``imgcore/layers/<chain id>/diff``), top first as overlay lists them."""
    dirs = [str(store.paths.layers / c.partition(":")[2] / "diff") for c in chain_ids(img.config.diff_ids)]
    if not dirs:
        return {"Data": None, "Name": "overlayfs"}
    data = {"UpperDir": dirs[-1]}
    if len(dirs) > 1:
        data["LowerDir"] = ":".join(reversed(dirs[:-1]))
    return {"Data": data, "Name": "overlayfs"}


def inspect(store: ContentStore, text: str) -> dict[str, Any]:
    """``docker image inspect`` for one image, with docker's keys."""
    img = resolve(store, text)
    data = img.config.data
    rootfs = data.get("rootfs") or {}
    out: dict[str, Any] = {
        "Id": img.id,
        "RepoTags": img.repo_tags,
        "RepoDigests": list(repo_digests(store).get(img.id, [])),  # only what was pulled or pushed, as docker
        "Parent": "",
        "Comment": str(data.get("comment") or ""),
        "Created": img.config.created or ZERO_TIME,
        "DockerVersion": str(data.get("docker_version") or ""),
        "Author": str(data.get("author") or ""),
        "Config": img.config.config,  # {} rather than null for an imported image, as docker shows it
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
            "GraphDriver": _graph_driver(store, img),
            "RootFS": {"Type": str(rootfs.get("type") or "layers"), "Layers": list(img.config.diff_ids)},
            "Metadata": {"LastTagTime": _tag_time(store, img.id)},
            "Descriptor": img.target_desc.to_json(),
        }
    )
    return out


# ------------------------------------------------------------------------------------------------- tag


def tag_manifest(
    store: ContentStore,
    lease: Lease,
    ref: Reference,
    desc: Descriptor,
    image_id: str,
    annotations: Mapping[str, str] | None = None,
) -> Descriptor:
    """Points tag ``ref`` at ``desc`` (a manifest or index the caller stored and leased), in a guarded section.

    A docker schema 2 manifest is recorded through its OCI twin (:func:`index_form`); ``annotations`` (an
    image's ``io.imgcore.original-manifest`` when re-tagging a twin) go on the entry. A tag another tool wrote in
    its short spelling (``copied`` for ``docker.io/library/copied:latest``) is the same tag, so it is replaced
    too. The last tag time is recorded for ``inspect``. Returns the entry's descriptor (with ``annotations``,
    without the name), what :func:`load_image` takes.
    """
    name = str(ref)
    desc, extra = index_form(store, lease, desc)
    extra = {**(annotations or {}), **extra}

    def drop_short_spellings(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for m in manifests:
            raw = (m.get("annotations") or {}).get(REF_NAME)
            if raw and raw != name and normalised_name(raw) == name:
                m = without_name(m)
            out.append(m)
        return out

    with lease.guard():
        if not store.has_blob(desc.digest):
            raise BlobNotFound(f"tag {ref.familiar}: manifest {desc.digest} is not in the store", digest=desc.digest)
        store.update_index(drop_short_spellings)
        store.tag(ref, desc.with_annotations(None), extra)
        _drop_untagged_copies(store, image_id, desc.digest)
    record_tag_time(store, image_id)
    return desc.with_annotations(extra or None)


def tag(store: ContentStore, source: str, target: str) -> Image:
    """``docker tag SOURCE TARGET``: ``target`` (``latest`` when it has no tag) now points at ``source``'s image."""
    dst = parse(target)
    if dst.digest is not None:
        raise InvalidReference(f"invalid tag {target!r}: refusing to create a tag with a digest reference")
    with store.lease("tag") as lease:
        with lease.guard():
            img = resolve(store, source)
            lease.add(*img.digests)
        original = {ORIGINAL_MANIFEST: img.original.digest} if img.original is not None else None
        tag_manifest(store, lease, dst, img.target_desc, img.id, original)
    return resolve(store, str(dst))


def image_size(store: ContentStore, image: Image) -> int:
    """docker's SIZE: the sum of the layers' uncompressed sizes."""
    return sum(layer_size(store, layer) for layer in image.manifest.layers)
