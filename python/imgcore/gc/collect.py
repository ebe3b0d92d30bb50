"""Garbage collection: mark from tags, containers and leases, then sweep; and ``rmi`` with docker's rules.

It sits above the catalog and the containers (umoci's ``casext/gc.go``, containerd's GC above its stores): it
reads both to decide what is reachable and never takes part in writing images.

Invariants:
- nothing here deletes a blob or an unpacked layer that an ``index.json`` entry, a container or a live lease
  still reaches: the mark and the sweep run under the exclusive GC lock (:func:`imgcore.store.collecting`), and
  writers add what they rely on to their lease under the same lock held shared;
- an image deletion drops its index entries first, then sweeps what nothing else reaches;
- partial downloads and staging left by dead writers are reclaimed by ``prune``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imgcore import _fs
from imgcore._humanize import short_id
from imgcore.containers.manager import Container, Containers
from imgcore.errors import BlobNotFound, ImageConflict, ImageInUse, ImageNotFound, ImgcoreError, NotAnImage
from imgcore.image.catalog import artifacts, catalog, lookup, normalised_name, resolve_artifact
from imgcore.image.model import Artifact, Image, chain_ids
from imgcore.image.sizes import forget_layer_size
from imgcore.layers.cache import LayerCache, tree_bytes
from imgcore.models import ORIGINAL_MANIFEST, REF_NAME, Descriptor, Index, parse_manifest_or_index
from imgcore.reference import Reference, parse
from imgcore.store import ContentStore, collecting, leased

__all__ = ["DeleteRecord", "PruneReport", "mark", "prune", "remove_image", "rmi"]


@dataclass(frozen=True)
class DeleteRecord:
    """One line of ``rmi``/``prune`` output: ``("Untagged", "foo:latest")`` or ``("Deleted", "sha256:…")``."""

    action: str
    what: str

    def __str__(self) -> str:
        return f"{self.action}: {self.what}"


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed: records in docker's words, blob digests, bytes reclaimed, unpacked directories."""

    records: tuple[DeleteRecord, ...]
    deleted_blobs: tuple[str, ...]
    reclaimed: int  # bytes: blobs plus unpacked layer directories
    deleted_unpacked: tuple[str, ...] = ()  # imgcore/layers/<chain> and imgcore/rootfs/<chain> directories removed


def _container_uses(c: Container, image: Image) -> bool:
    return c.image_id == image.id or c.manifest_digest in (image.manifest_desc.digest, image.digest)


# ------------------------------------------------------------------------------------------------- gc


def _walk(store: ContentStore, digest: str, out: set[str]) -> None:
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


def mark(store: ContentStore, containers: Sequence[Container] | None = None) -> set[str]:
    """Every blob digest reachable from ``index.json``, from a container's image or held by a live lease: what
    GC must keep. Call it under :func:`imgcore.store.collecting`."""
    held = leased(store.paths)
    keep: set[str] = set()
    for d in store.index_entries():
        _walk(store, d.digest, keep)
        original = (d.annotations or {}).get(ORIGINAL_MANIFEST)
        if original:
            with contextlib.suppress(ValueError):
                _walk(store, original, keep)
    # Walked, not just added: a leased manifest keeps what it reaches (a ``tag`` leases only the manifest), and
    # a leased digest seeding ``keep`` first would stop the walk of an index entry at that manifest.
    for name in held:
        if "/" in name:
            keep.add(name)  # layers/<hex>, rootfs/<key>
        else:
            with contextlib.suppress(ValueError):
                _walk(store, name, keep)
    for c in Containers(store).list() if containers is None else containers:
        if c.manifest_digest:  # a broken container's record may have lost it (it keeps what it still names)
            _walk(store, c.manifest_digest, keep)
        if c.image_id:
            keep.add(c.image_id)
    return keep


def _image_blobs(store: ContentStore, img: Image) -> list[str]:
    out: set[str] = set()
    _walk(store, img.digest, out)
    out.add(img.manifest_desc.digest)
    if img.original is not None:
        _walk(store, img.original.digest, out)
    out.add(img.id)
    out.update(layer.digest for layer in img.layers)
    return sorted(out)


def _delete_images(store: ContentStore, images: Sequence[Image], containers: Sequence[Container]) -> list[str]:
    """Drops the images' index entries and sweeps their blobs that nothing else reaches (caller holds the GC
    lock). Returns the deleted blob digests."""
    blobs = [d for img in images for d in _image_blobs(store, img)]
    return _delete_roots(store, {img.digest for img in images}, blobs, containers)


def _delete_roots(
    store: ContentStore, digests: set[str], blobs: Sequence[str], containers: Sequence[Container]
) -> list[str]:
    store.update_index(lambda ms: [m for m in ms if m.get("digest") not in digests])
    keep = mark(store, containers)
    deleted = []
    for d in dict.fromkeys(blobs):
        if d not in keep and store.delete_blob(d):
            deleted.append(d)
            _forget_caches(store, d)
    return deleted


def _artifact_blobs(store: ContentStore, artifact: Artifact) -> list[str]:
    out: set[str] = set()
    _walk(store, artifact.digest, out)
    return sorted(out)


def _remove_artifact(store: ContentStore, text: str, containers: Sequence[Container]) -> list[DeleteRecord]:
    """``rmi`` of an OCI artifact: by tag, the tag goes and the artifact with its last tag; by digest, all of it."""
    artifact = resolve_artifact(store, text)
    records: list[DeleteRecord] = []
    refs = list(artifact.references)
    named = next((r for r in refs if normalised_name(text) == str(r)), None)
    if named is not None:
        _untag(store, named, records)
        if len(refs) > 1:
            return records
    else:
        for r in refs:
            _untag(store, r, records)
    deleted = _delete_roots(store, {artifact.digest}, _artifact_blobs(store, artifact), containers)
    records.append(DeleteRecord("Deleted", artifact.digest))
    records.extend(DeleteRecord("Deleted", d) for d in deleted if d != artifact.digest)
    return records


# ------------------------------------------------------------------------------------------------- rmi


def _untag(store: ContentStore, ref: Reference, records: list[DeleteRecord]) -> None:
    """Drops every index entry whose tag names ``ref`` (short names written by other tools included)."""
    name = str(ref.tagged() if ref.digest is None else ref)

    def keep(m: dict[str, Any]) -> bool:
        return normalised_name((m.get("annotations") or {}).get(REF_NAME)) != name

    store.update_index(lambda ms: [m for m in ms if keep(m)])
    records.append(DeleteRecord("Untagged", ref.familiar))


def remove_image(store: ContentStore, text: str, *, force: bool = False) -> list[DeleteRecord]:
    """``docker rmi [-f] IMAGE`` with docker's rules.

    By name: the tag goes; the image goes with its last tag. While a container uses the image its last tag
    stays unless ``force`` (:class:`ImageInUse`). By ID: an image with one tag is untagged and deleted; with
    several tags it needs ``force`` (:class:`ImageConflict`), as does an image a container uses. A deleted image
    that a container still uses keeps its blobs (the container needs them) until the container is removed and
    ``prune`` runs.
    """
    with collecting(store.paths):
        everything = catalog(store)
        containers = Containers(store).list()
        try:
            img, ref = lookup(store, text, everything)
        except NotAnImage:
            return _remove_artifact(store, text, containers)
        except ImageNotFound:
            broken = _broken_entries(store, text, everything)
            if not broken:
                raise
            return _remove_broken(store, broken)
        same = [i for i in everything if i.id == img.id] or [img]
        refs = sorted({r for i in same for r in i.references}, key=str)
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


def _broken_entries(store: ContentStore, text: str, images: Sequence[Image]) -> list[Descriptor]:
    """The index entries that ``text`` names (a tag, ``name@digest``, a digest or a prefix of its hex) among
    those that do not load as an image (a missing or corrupt manifest or config): ``images`` lists them with an
    error marker, and ``rmi`` must be able to remove them."""
    loaded = {img.digest for img in images}
    entries = [d for d in store.index_entries() if d.digest not in loaded]
    name: str | None = None
    digest: str | None = None
    with contextlib.suppress(ImgcoreError, ValueError):
        ref = parse(text)
        name, digest = (str(ref.tagged()) if ref.digest is None else None), ref.digest
    hexpart = text.removeprefix("sha256:")
    is_hex = bool(hexpart) and all(ch in "0123456789abcdef" for ch in hexpart)
    named = [d for d in entries if name and normalised_name((d.annotations or {}).get(REF_NAME)) == name]
    named += [d for d in entries if digest and d.digest == digest]
    if not named and is_hex:
        digests = {d.digest for d in entries if d.digest.partition(":")[2].startswith(hexpart)}
        if len(digests) > 1:
            raise ImageConflict(f"image ID prefix {hexpart!r} is ambiguous: it matches {len(digests)} images")
        named = [d for d in entries if d.digest in digests]
    return named


def _remove_broken(store: ContentStore, entries: Sequence[Descriptor]) -> list[DeleteRecord]:
    """Drops every index entry of the broken images ``entries`` name, then sweeps what only they reached."""
    digests = {d.digest for d in entries}
    records = [DeleteRecord("Untagged", str(parse(n).familiar)) for n in sorted({
        normalised_name((d.annotations or {}).get(REF_NAME)) or "" for d in store.index_entries()
        if d.digest in digests} - {""})]  # fmt: skip
    store.update_index(lambda ms: [m for m in ms if m.get("digest") not in digests])
    keep = mark(store)
    for digest in sorted(digests):
        reached: set[str] = set()
        _walk(store, digest, reached)
        records.append(DeleteRecord("Deleted", digest))
        for d in sorted(reached - keep):
            if store.delete_blob(d):
                _forget_caches(store, d)
    return records


# ------------------------------------------------------------------------------------------------- prune


def prune(store: ContentStore, *, all: bool = False) -> PruneReport:
    """``docker image prune [-a]``: removes dangling images (with ``all``, every image no container uses), then
    sweeps every blob that no ``index.json`` entry and no container reaches (orphans from interrupted writes,
    deleted images). A reachable blob is never deleted."""
    records: list[DeleteRecord] = []
    with collecting(store.paths):
        everything = catalog(store)
        containers = Containers(store).list()
        victims = [
            img for img in everything if (all or not img.tags) and not any(_container_uses(c, img) for c in containers)
        ]
        # OCI artifacts: dangling ones always, tagged ones with ``all`` (no container can use one)
        for a in artifacts(store):
            if all or not a.tags:
                records.extend(DeleteRecord("untagged", r.familiar) for r in a.references)
                records.append(DeleteRecord("deleted", a.digest))
                store.remove_from_index(a.digest)
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
        remaining = [img for img in everything if img.digest not in gone]
        unpacked, reclaimed = _sweep_unpacked(store, remaining, containers, keep)
        Containers(store).cleanup()  # half-made containers, layers and roots of interrupted commands
        reclaimed += _sweep_leftovers(store)
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
                _forget_caches(store, d)
        return PruneReport(tuple(records), tuple(deleted), reclaimed, tuple(unpacked))


def _forget_caches(store: ContentStore, digest: str) -> None:
    """Drops what was cached of a deleted blob: its uncompressed size and its analysis table."""
    forget_layer_size(store, digest)
    with contextlib.suppress(FileNotFoundError):
        store.paths.analysis_table(digest).unlink()


def _sweep_unpacked(
    store: ContentStore, images: Sequence[Image], containers: Sequence[Container], keep: set[str]
) -> tuple[list[str], int]:
    """Removes unpacked layers and copy-driver baselines that no remaining image, no container and no lease needs."""
    chains: set[str] = {k.partition("/")[2] for k in keep if k.startswith("layers/")}
    tops: set[str] = {k.partition("/")[2] for k in keep if k.startswith("rootfs/")}
    for ids in [chain_ids(img.config.diff_ids) for img in images] + [list(c.chain_ids) for c in containers]:
        hexes = [str(x).partition(":")[2] or str(x) for x in ids]
        chains.update(hexes)
        tops.add(hexes[-1] if hexes else "empty")
    return LayerCache(store).sweep(chains, tops)


_LEFTOVER_AGE = 3600.0


def _sweep_leftovers(store: ContentStore, max_age: float = _LEFTOVER_AGE) -> int:
    """Partial downloads and staging directories that no live lease holds and no writer touched for an hour
    (a killed pull or load); returns the bytes reclaimed. Resumable partials of a live pull are left alone."""
    reclaimed = 0
    keep = leased(store.paths)
    now = time.time()
    for base in (store.paths.ingest, store.paths.tmp):
        if not base.is_dir():
            continue
        for p in base.iterdir():
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            digest = p.name.removesuffix(".partial").replace("-", ":", 1)
            if digest in keep or now - st.st_mtime < max_age:
                continue
            if p.is_dir() and not p.is_symlink():
                reclaimed += tree_bytes(p)
                _fs.rmtree(p, ignore_errors=True)
            else:
                reclaimed += st.st_size
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
    return reclaimed
