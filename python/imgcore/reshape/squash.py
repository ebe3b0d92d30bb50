"""``squash`` and ``flatten``: the layers above a kept base merged into one layer, written by the one layer writer.

How the layer is made: the image is flattened once into the layer cache's baseline (``LayerCache.ensure_rootfs``:
each layer's digest and diff_id verified while it is extracted, whiteouts, opaque directories, hardlinks, xattrs
and device nodes applied by the extractor), then ``_core.write_layer`` writes the merged tree as one sorted,
normalised layer:

- nothing kept (``flatten``, ``squash`` without ``--last``/``--from``, ``commit --squash``, as buildah's
  ``--squash`` squashes everything): every path of the merged tree, no whiteouts; always one layer, an empty
  tar for an empty tree;
- a kept base of ``keep`` layers: the change set is read off the union index (``_core.layer_index`` of the whole
  stack and of the base), not guessed from mtimes: every path the squashed layers provide (``A`` or ``C``), with
  its ancestors and whole hardlink groups, and a whiteout (``D``) for each base path the squashed layers removed
  whose parent is still a directory.

Invariants:
- an image tagged as an index is squashed for the platform it resolves to (the result is that platform's image:
  layers are per platform);
- the unpacked tree stays in the layer cache as the image's copy-driver baseline, so a second squash or flatten
  of the image skips the extraction; ``prune`` removes it once no container uses it;
- the layer applied onto the kept base gives exactly the image's merged tree (minus ``exclude``); squashing a
  rewrite (files written, then chmod-ed in another layer) gives the bytes a single step writing the final files
  would have given, since both go through the same writer from the same tree;
- history: the entries of the squashed layers are kept, marked ``empty_layer``, and one entry is added for the
  new layer, naming what was squashed (``created_by``) and the squashed diff_ids (``comment``);
- deterministic: the writer's bytes never depend on the thread count, and ``created`` is the source image's
  (to the second) unless ``SOURCE_DATE_EPOCH``/``source_date_epoch`` is set, so the same image gives the same
  digests; mtimes are clamped to that time too (BuildKit's rule), so a directory whose unpacked mtime is the
  extraction's clock cannot make two runs differ; the result is verified (every blob and diff_id re-hashed)
  before it is tagged.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from imgcore._core import Change, diff, layer_index, write_layer
from imgcore.errors import InvalidArgument
from imgcore.image.builder import Addition
from imgcore.image.catalog import lookup
from imgcore.image.model import Image
from imgcore.layers.cache import LayerCache
from imgcore.layers.exclude import exclude_changes, patterns
from imgcore.models import Descriptor
from imgcore.reference import Reference, parse
from imgcore.reshape.build import derived, rebuild, reshape_epoch
from imgcore.reshape.verify import finish, verify_layers
from imgcore.store import ContentStore, Lease

__all__ = [
    "SquashLayer",
    "flatten",
    "keep_count",
    "squash",
    "squash_layer",
    "squash_leased",
]

_COMPRESSIONS = ("gzip", "zstd", "none")


@dataclass(frozen=True)
class SquashLayer:
    """The merged layer :func:`squash_layer` wrote (``layer`` None when nothing is left above the base)."""

    layer: Descriptor | None
    diff_id: str | None
    uncompressed_size: int | None
    entries: int


def keep_count(store: ContentStore, image: Image, *, last: int | None = None, from_layer: str | None = None) -> int:
    """How many bottom layers a squash keeps: all but ``last``; those up to and including ``from_layer`` (a layer
    digest or diff_id, full or a unique prefix of 12+ hex digits, or an image whose layers are the bottom of
    ``image``'s); none by default (everything is squashed, as buildah's ``--squash``)."""
    n = len(image.manifest.layers)
    if last is not None and from_layer is not None:
        raise InvalidArgument("squash: give --last or --from, not both")
    if last is not None:
        if not 1 <= last <= n:
            raise InvalidArgument(f"squash --last {last}: image {image.short_id} has {n} layers")
        return n - last
    if from_layer is None:
        return 0
    text = from_layer.strip().removeprefix("sha256:")
    if len(text) >= 12 and all(c in "0123456789abcdef" for c in text):
        hits = {
            i + 1
            for i, (d, diff_id) in enumerate(zip(image.manifest.layers, image.diff_ids, strict=True))
            if d.digest.removeprefix("sha256:").startswith(text) or diff_id.removeprefix("sha256:").startswith(text)
        }
        if len(hits) == 1:
            return hits.pop()
        if len(hits) > 1:
            raise InvalidArgument(f"squash --from {from_layer}: the prefix names several layers of {image.short_id}")
    base, _ = lookup(store, from_layer)
    if tuple(base.diff_ids) != image.diff_ids[: len(base.diff_ids)]:
        raise InvalidArgument(
            f"squash --from {from_layer}: its layers are not the bottom layers of image {image.short_id}"
        )
    return len(base.diff_ids)


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


_Row = tuple[str, str, int, int, int, int, int, str, int]


def _changes_above(full_rows: Sequence[_Row], base_rows: Sequence[_Row], keep: int) -> list[Change]:
    """The change set of the image's merged tree (the union index ``full_rows``) against its bottom ``keep``
    layers (``base_rows``)."""
    full = {r[0]: r[1] for r in full_rows}
    base = {r[0]: r[1] for r in base_rows}
    wanted: dict[str, str] = {}
    for path, _kind, *_rest, provider in full_rows:
        if provider >= keep:
            wanted[path] = "C" if path in base else "A"
    # Hardlink groups whole: a member provided above the base pulls in its target and siblings (else the writer
    # would write it alone, as a copy, and applying the layer would break the link).
    groups: dict[str, list[str]] = {}
    for path, kind, *_rest, link, _provider in full_rows:
        if kind == "hardlink":
            groups.setdefault(link, []).append(path)
    for target, members in groups.items():
        if target in wanted or any(m in wanted for m in members):
            for p in (target, *members):
                if p in full:
                    wanted.setdefault(p, "C" if p in base else "A")
    for path in base:
        parent = _parent(path)
        if path not in full and (not parent or (full.get(parent) == "dir" and base.get(parent) == "dir")):
            wanted[path] = "D"
    for path in list(wanted):
        parent = _parent(path)
        while parent and parent not in wanted:
            wanted[parent] = "C" if parent in base else "A"
            parent = _parent(parent)
    return [Change(kind, "/" + path, kind == "C" and full.get(path) == "dir") for path, kind in wanted.items()]


def squash_layer(
    store: ContentStore,
    lease: Lease,
    image: Image,
    keep: int,
    *,
    exclude: Sequence[str] = (),
    compression: str = "gzip",
    source_date_epoch: int | None = None,
) -> SquashLayer:
    """Writes the merged layer of ``image``'s layers above its bottom ``keep`` into the store (held by ``lease``)."""
    if compression not in _COMPRESSIONS:
        raise InvalidArgument(f"squash: unknown compression {compression!r} (gzip, zstd or none)")
    globs = patterns(exclude)
    cache = LayerCache(store)
    with lease.guard():
        chains = cache.check(image)
        lease.add(image.manifest_desc.digest, image.id, *(d.digest for d in image.manifest.layers))
        lease.add(*(LayerCache.key(c) for c in chains), f"rootfs/{cache.baseline_key(image)}")
    blobs = [store.blob_path(d.digest) for d in image.manifest.layers]
    changes: list[Change] | None = None
    # The union indexes are read while the rootfs is extracted (each call releases the GIL); they are used only
    # after the extraction verified every layer's digest and diff_id.
    with ThreadPoolExecutor(max_workers=2) as pool:
        indexes = [pool.submit(layer_index, blobs), pool.submit(layer_index, blobs[:keep])] if keep else []
        rootfs = cache.ensure_rootfs(image)
        if indexes:
            changes = _changes_above(indexes[0].result(), indexes[1].result(), keep)
    empty = store.temp_path(".empty")
    out = store.temp_path(".layer")
    try:
        empty.mkdir()
        if globs:
            if changes is None:
                changes = diff(str(empty), str(rootfs))  # the whole tree, every path an A
            changes = exclude_changes(changes, globs)
        result = write_layer(
            str(empty),
            str(rootfs),
            str(out),
            compression=compression,
            source_date_epoch=_clamp(image, source_date_epoch),
            changes=changes,
        )
        if not result.changes and keep > 0:  # nothing above the base: an empty_layer entry, no layer
            return SquashLayer(None, None, None, 0)
        with lease.guard():
            stored = store.adopt_file(out, result.digest)
            lease.add(stored.digest)
        return SquashLayer(
            Descriptor(result.media_type, stored.digest, stored.size),
            result.diff_id,
            result.uncompressed_size,
            result.entries,
        )
    finally:
        out.unlink(missing_ok=True)
        shutil.rmtree(empty, ignore_errors=True)


def _clamp(image: Image, source_date_epoch: int | None) -> int | None:
    """The writer's mtime clamp: ``source_date_epoch``, else ``$SOURCE_DATE_EPOCH`` (None: the writer reads it),
    else the source image's ``created``. A directory that a layer only writes into (no entry of its own) has the
    extraction's clock as its mtime in the unpacked tree; clamped to the image's time it no longer depends on when
    the tree was unpacked, so the same image always gives the same layer."""
    if image.created is None and source_date_epoch is None:
        return None
    return reshape_epoch(image, source_date_epoch)


def _marked_history(history: Sequence[Any], keep: int) -> list[Any]:
    """The history with every entry of a layer above the bottom ``keep`` marked ``empty_layer`` (kept, in order)."""
    out: list[Any] = []
    seen = 0
    for h in history:
        entry = copy.deepcopy(h)
        if isinstance(entry, dict) and not entry.get("empty_layer"):
            if seen >= keep:
                entry["empty_layer"] = True
            seen += 1
        out.append(entry)
    return out


def squash_leased(
    store: ContentStore,
    lease: Lease,
    image: Image,
    keep: int,
    *,
    tag: Reference | None = None,
    exclude: Sequence[str] = (),
    compression: str = "gzip",
    source_date_epoch: int | None = None,
    created_by: str = "",
) -> Image:
    """:func:`squash` inside the caller's lease (``commit --squash`` runs it on the image it just built)."""
    n = len(image.manifest.layers)
    if not 0 <= keep <= n:
        raise InvalidArgument(f"squash: cannot keep {keep} of the {n} layers of image {image.short_id}")
    squashed_ids = list(image.diff_ids[keep:])
    kept = list(zip(image.manifest.layers[:keep], image.diff_ids[:keep], strict=True))
    with ThreadPoolExecutor(max_workers=1) as pool:  # the kept layers re-hashed while the new one is written
        checked = pool.submit(verify_layers, store, kept, f"squash {image.short_id}")
        merged = squash_layer(
            store, lease, image, keep, exclude=exclude, compression=compression, source_date_epoch=source_date_epoch
        )
        done = checked.result()
    data = copy.deepcopy(dict(image.config.data))
    data["rootfs"] = {"type": "layers", "diff_ids": list(image.diff_ids[:keep])}
    data["history"] = _marked_history(image.config.history, keep)
    base = derived(image, data, image.manifest.layers[:keep])
    what = created_by or (f"imgcore squash --last {n - keep}" if keep else "imgcore squash")
    if exclude:
        what += "".join(f" --exclude {g}" for g in exclude)
    addition = Addition(
        merged.layer,
        merged.diff_id,
        merged.uncompressed_size,
        created_by=what,
        comment=f"squashed {len(squashed_ids)} layers: {', '.join(squashed_ids)}" if squashed_ids else "",
    )
    new = rebuild(store, lease, image, base, [addition], source_date_epoch=source_date_epoch)
    return finish(store, lease, new.manifest_desc, new.id, tag, done)


def squash(
    store: ContentStore,
    image: Image,
    tag: str | None = None,
    *,
    last: int | None = None,
    from_layer: str | None = None,
    exclude: Sequence[str] = (),
    compression: str = "gzip",
    source_date_epoch: int | None = None,
) -> Image:
    """``imgcore squash IMAGE [--last N | --from LAYER] [--exclude GLOB] -t NEW``: the layers above the kept base
    merged into one (everything by default); returns the new image, tagged ``tag`` when given."""
    keep = keep_count(store, image, last=last, from_layer=from_layer)
    what = _spelled("squash", last, from_layer)
    return _leased(store, image, tag, keep, what, exclude, compression, source_date_epoch)


def _leased(
    store: ContentStore,
    image: Image,
    tag: str | None,
    keep: int,
    created_by: str,
    exclude: Sequence[str],
    compression: str,
    source_date_epoch: int | None,
) -> Image:
    ref = parse(tag) if tag else None
    with store.lease(created_by.split()[1]) as lease:
        return squash_leased(
            store,
            lease,
            image,
            keep,
            tag=ref,
            exclude=exclude,
            compression=compression,
            source_date_epoch=source_date_epoch,
            created_by=created_by,
        )


def _spelled(verb: str, last: int | None, from_layer: str | None) -> str:
    if last is not None:
        return f"imgcore {verb} --last {last}"
    if from_layer is not None:
        return f"imgcore {verb} --from {from_layer}"
    return f"imgcore {verb}"


def flatten(
    store: ContentStore,
    image: Image,
    tag: str | None = None,
    *,
    exclude: Sequence[str] = (),
    compression: str = "gzip",
    source_date_epoch: int | None = None,
) -> Image:
    """``imgcore flatten IMAGE -t NEW``: one layer equal to the image's merged tree; returns the new image."""
    return _leased(store, image, tag, 0, "imgcore flatten", exclude, compression, source_date_epoch)
