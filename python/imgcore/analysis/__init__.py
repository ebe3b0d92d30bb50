"""Image analysis: how well an image uses its layers (``imgcore analyze``), beyond dive.

:func:`analyze` reads each layer's file table once (``_core.layer_tables``: Rust, layers in parallel, numpy
columns without copying), caches it by layer digest in the store, and returns an :class:`Analysis`: dive's own
efficiency and wasted bytes (:mod:`imgcore.analysis.dive`, equal to dive 0.13's), content-true figures
(:mod:`imgcore.analysis.figures`: every hidden copy once, duplicates by content, metadata-only rewrites with
their byte cost, compressed and uncompressed sizes per layer), what-if savings and comparisons.

Invariants: an analysis never writes anything but its cache files; a second analysis of the same layers reads
no layer blob; everything is computed from the tables (bounded by rows, never by layer bytes); the per-path
figures (``wasted``, ``rewrites``, ``dive.inefficient``) stay numpy columns behind read-only sequences that make
an item only when it is read, and no path is decoded unless it is shown (``names`` decodes every string table
and is kept for callers that want that, not used by the reports).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgcore.analysis import figures
from imgcore.analysis.dive import DiveFigures, dive_figures
from imgcore.analysis.figures import VISIBLE, Merge, Rewrite, Rewrites, Wasted, WastedPaths
from imgcore.analysis.tables import (
    ADDED,
    DELETED,
    FILE,
    KIND_NAMES,
    METADATA,
    MODIFIED,
    OPAQUE,
    OPAQUE_KIND,
    SAME,
    WHITEOUT,
    LayerTable,
    Reader,
    load_tables,
)
from imgcore.image.model import Image
from imgcore.store import ContentStore

__all__ = [
    "Analysis",
    "Comparison",
    "DiveFigures",
    "LayerSummary",
    "Rewrite",
    "Rewrites",
    "StoreFiles",
    "Wasted",
    "WastedPaths",
    "analyze",
    "find_digest",
    "store_files",
]

CHANGE_NAMES = {0: "", ADDED: "added", MODIFIED: "modified", DELETED: "deleted", OPAQUE: "opaque",
                METADATA: "metadata", SAME: "same"}  # fmt: skip


@dataclass(frozen=True)
class LayerSummary:
    """One layer's figures."""

    index: int
    digest: str
    diff_id: str
    command: str
    compression: str
    compressed_bytes: int
    bytes: int  # the uncompressed tar stream
    entries: int
    files: int
    file_bytes: int  # sum of the file sizes the layer stores
    added: int
    modified: int
    deleted: int
    metadata_only: int
    metadata_bytes: int
    wasted_bytes: int  # bytes of this layer's files that the final image does not show
    dive_size: int  # dive's layer size (sum of header sizes)


@dataclass(frozen=True)
class Comparison:
    """What differs between two images' final trees (``analyze A --against B``: B is the baseline)."""

    added: tuple[tuple[str, int], ...]  # (path, size) in A only
    removed: tuple[tuple[str, int], ...]  # in B only
    changed: tuple[tuple[str, int, int, str], ...]  # (path, size in B, size in A, what: content/type/metadata)
    shared_layers: tuple[str, ...]  # diff_ids both stacks start with
    common_layers: tuple[str, ...]  # diff_ids both images hold anywhere

    @property
    def added_bytes(self) -> int:
        """Bytes of the files only this image has."""
        return sum(s for _, s in self.added)

    @property
    def removed_bytes(self) -> int:
        """Bytes of the files only the baseline has."""
        return sum(s for _, s in self.removed)


class Analysis:
    """The analysis of one image: tables, per-layer summaries, dive's figures and content-true ones."""

    def __init__(self, image: Image, tables: Sequence[LayerTable], image_pass: figures.Pass | None = None) -> None:
        self.image = image
        self.tables = tuple(tables)
        self.merge: Merge = figures.merge(self.tables, *(() if image_pass is None else (image_pass,)))

    @functools.cached_property
    def names(self) -> tuple[list[bytes], ...]:
        """Each layer's string table, decoded (``names[layer][table.path[row]]`` is a row's path): every path as
        a ``bytes`` object, kept; the reports never ask for it (they read the strings they show)."""
        return tuple(t.names() for t in self.tables)

    @property
    def reference(self) -> str:
        """The image's first tag, else its ID."""
        return self.image.tags[0] if self.image.tags else self.image.id

    @functools.cached_property
    def dive(self) -> DiveFigures:
        """dive 0.13's efficiency, wasted bytes, user wasted percent and sizes."""
        m = self.merge
        return dive_figures(self.tables, m.dive_minimum, m.dive_discovered, m.dive_inefficient)

    @functools.cached_property
    def diff_ids(self) -> tuple[str, ...]:
        """Each layer's diff_id as the config lists it (``""`` where it lists none)."""
        ids = self.image.diff_ids
        return tuple(ids[i] if i < len(ids) else "" for i in range(len(self.tables)))

    @functools.cached_property
    def commands(self) -> tuple[str, ...]:
        """The history's ``created_by`` of each layer (``""`` where history has none)."""
        cmds = [h.created_by for h in self.image.history if not h.empty_layer]
        return tuple(cmds[i] if i < len(cmds) else "" for i in range(len(self.tables)))

    @functools.cached_property
    def layers(self) -> tuple[LayerSummary, ...]:
        """Per-layer summaries, bottom first."""
        out = []
        for i, t in enumerate(self.tables):
            ch = self.merge.changes[i]
            files = t.kind == FILE
            meta = files & ((ch == METADATA) | (ch == SAME))
            hidden = files & (self.merge.shadowed_by[i] != VISIBLE)
            out.append(
                LayerSummary(
                    i, t.digest, self.diff_ids[i], self.commands[i], t.compression, t.compressed_bytes,
                    t.uncompressed_bytes, len(t), int(files.sum()), int(t.size[files].sum()), int((ch == ADDED).sum()),
                    int((ch == MODIFIED).sum()), int((ch == DELETED).sum()), int(meta.sum()),
                    int(t.size[meta].sum()), int(t.size[hidden].sum()), int(t.size.sum()),
                )
            )  # fmt: skip
        return tuple(out)

    @functools.cached_property
    def wasted(self) -> WastedPaths:
        """Paths with hidden file copies, most wasted first (each copy but the kept one): a sequence of
        :class:`Wasted` made as they are read."""
        return figures.wasted_paths(self.tables, self.merge)

    @property
    def wasted_bytes(self) -> int:
        """Content-true waste: bytes of every stored file copy the final image does not show."""
        return sum(layer.wasted_bytes for layer in self.layers)

    @functools.cached_property
    def duplicates(self) -> tuple[int, int]:
        """``(bytes, groups)``: shown files whose content another shown file already has (every copy but one)."""
        total, groups, _ = figures.duplicate_content(self.tables, self.merge)
        return total, groups

    @functools.cached_property
    def rewrites(self) -> Rewrites:
        """Metadata-only rewrites (chmod, chown, touch copies) with their byte cost, largest first: a sequence
        of :class:`Rewrite` made as they are read."""
        return figures.rewrites(self.tables, self.merge)

    @property
    def image_bytes(self) -> int:
        """Sum of the file sizes all layers store."""
        return sum(layer.file_bytes for layer in self.layers)

    @property
    def efficiency(self) -> float:
        """Content-true efficiency: the share of stored file bytes that are neither hidden nor duplicates."""
        total = self.image_bytes
        return 1.0 if not total else (total - self.wasted_bytes - self.duplicates[0]) / total

    def squash_savings(self, n: int) -> int:
        """Bytes not stored if the top ``n`` layers were squashed into one (nothing is written)."""
        return figures.squash_savings(self.tables, self.merge, n)

    def drop_savings(self, pattern: str) -> tuple[int, int]:
        """``(bytes, files)`` saved if every path matching the glob were never written (nothing is written)."""
        return figures.drop_savings(self.tables, figures.LayerNames(self.tables), pattern)

    def fold_savings(self) -> int:
        """Bytes saved by folding each metadata-only rewrite into the layer that wrote the file."""
        return int(self.rewrites.sizes.sum())

    def final_files(self) -> dict[str, tuple[str, int, bytes, int, int, int, int]]:
        """The final tree: path -> ``(kind, size, sha256 or link, mode, uid, gid, layer)``."""
        out = {}
        names = [t.names() for t in self.tables]  # for this call only
        for p, (li, r) in figures.final_view(self.tables, names, self.merge).items():
            t = self.tables[li]
            k = int(t.kind[r])
            ident = t.sha256[r].tobytes() if k == FILE else (names[li][t.link[r]] if t.link[r] >= 0 else b"")
            out["/" + p.decode(errors="surrogateescape")] = (
                KIND_NAMES[k], int(t.size[r]), ident, int(t.mode[r]), int(t.uid[r]), int(t.gid[r]), li,
            )  # fmt: skip
        return out

    def compare(self, baseline: Analysis) -> Comparison:
        """What this image adds, removes and changes against ``baseline``, and the layers they share."""
        mine, base = self.final_files(), baseline.final_files()
        added = tuple(sorted((p, v[1]) for p, v in mine.items() if p not in base))
        removed = tuple(sorted((p, v[1]) for p, v in base.items() if p not in mine))
        changed = []
        for p in sorted(mine.keys() & base.keys()):
            a, b = mine[p], base[p]
            if a[0] != b[0]:
                changed.append((p, b[1], a[1], "type"))
            elif a[2] != b[2] or a[1] != b[1]:
                changed.append((p, b[1], a[1], "content"))
            elif a[3:6] != b[3:6]:
                changed.append((p, b[1], a[1], "metadata"))
        shared = []
        for x, y in zip(self.diff_ids, baseline.diff_ids, strict=False):
            if x != y:
                break
            shared.append(x)
        common = sorted(set(self.diff_ids) & set(baseline.diff_ids))
        return Comparison(added, removed, tuple(changed), tuple(shared), tuple(common))

    def tree_at(self, index: int) -> list[tuple[str, str, int, int, str]]:
        """The merged tree as of layer ``index`` (dive's layer view), path-sorted: ``(path, kind, size, layer,
        mark)``; ``mark`` is ``waste`` for a file a later layer hides, else what layer ``index`` did to the path
        (``added``, ``modified``, ``deleted``, ``metadata``, ``same``, ``""`` for an entry of a lower layer)."""
        out: dict[str, tuple[str, str, int, int, str]] = {}
        for li in range(index + 1):
            t, nm = self.tables[li], self.names[li]
            sh, ch = self.merge.shadowed_by[li], self.merge.changes[li]
            alive = (sh == VISIBLE) | (sh > index)
            if li == index:
                alive |= t.kind == WHITEOUT  # removals of this layer are shown, marked
            rows = np.flatnonzero(alive & (t.kind != OPAQUE_KIND))
            for p, k, size, c, s in zip(t.path[rows].tolist(), t.kind[rows].tolist(), t.size[rows].tolist(),
                                        ch[rows].tolist(), sh[rows].tolist(), strict=True):  # fmt: skip
                path = "/" + nm[p].decode(errors="surrogateescape")
                mark = CHANGE_NAMES.get(c, "") if li == index else ""
                if k == FILE and s != VISIBLE:
                    mark = "waste"  # whatever this layer did, a later one hides the copy
                out[path] = (path, KIND_NAMES[k], size, li, mark)
        return [out[p] for p in sorted(out)]

    def layer_files(self, index: int) -> list[dict[str, Any]]:
        """The full file list of one layer, in archive order (the ``--json`` ``fileList`` arrays)."""
        return list(self.iter_layer_files(index))

    def iter_layer_files(self, index: int) -> Iterator[dict[str, Any]]:
        """:meth:`layer_files` one entry at a time (memory for one entry, not the layer's list)."""
        t = self.tables[index]
        nm = t.names()
        ch, sh = self.merge.changes[index], self.merge.shadowed_by[index]
        rows = zip(t.path.tolist(), t.kind.tolist(), t.size.tolist(), t.mode.tolist(), t.uid.tolist(),
                   t.gid.tolist(), t.mtime.tolist(), t.link.tolist(), t.xattrs.tolist(), ch.tolist(), sh.tolist(),
                   strict=True)  # fmt: skip
        hexes = t.sha256.tobytes().hex()
        for r, (p, k, size, mode, uid, gid, mtime, link, xa, c, s) in enumerate(rows):
            e: dict[str, Any] = {
                "path": "/" + nm[p].decode(errors="surrogateescape"),
                "kind": KIND_NAMES[k],
                "change": CHANGE_NAMES.get(c, ""),
                "size": size,
                "mode": mode,
                "uid": uid,
                "gid": gid,
                "mtime": mtime,
            }
            if k == FILE:
                e["sha256"] = "sha256:" + hexes[64 * r : 64 * r + 64]
            if link >= 0:
                e["link"] = nm[link].decode(errors="surrogateescape")
            if xa:
                e["xattrs"] = xa
            if s != VISIBLE:
                e["hidden_by"] = s
            yield e


def analyze(
    image: Image, *, reader: Reader | None = None, image_pass: figures.Pass | None = None, cache: bool = True
) -> Analysis:
    """Analyses ``image`` (tables from the store's cache, else read once from its layer blobs).

    Args:
        image: an image read from a store (``Store.image(ref)``).
        reader: ``_core.layer_tables`` (default) or the pure twin's ``imgcore.pure.analysis.layer_tables``.
        image_pass: ``_core.image_pass`` (default) or the pure twin's ``imgcore.pure.analysis.image_pass``.
        cache: read and write the per-layer table cache (``imgcore/analysis/``).

    Raises:
        imgcore.errors.BlobNotFound: a layer blob is not in the store.
        imgcore.errors.DigestMismatch: a stored layer blob does not hash to its digest.
        imgcore.errors.InvalidArchive: a layer is not a readable tar.
    """
    store = _store_of(image)
    digests = [layer.digest for layer in image.layers]
    kw: dict[str, Any] = {"cache": cache}
    if reader is not None:
        kw["reader"] = reader
    return Analysis(image, load_tables(store, digests, **kw), image_pass)


def _store_of(image: Image) -> ContentStore:
    if image.store is None:
        raise ValueError(f"image {image.id}: not read from a store, it cannot be analysed")
    return image.store


@dataclass(frozen=True)
class StoreFiles:
    """Content duplicated between images of a store (``df --files``)."""

    images: int
    layers: int
    duplicated_bytes: int  # every stored copy of a content but one, across distinct layers
    #: (sha256, size, copies, images holding it), most duplicated bytes first
    top: tuple[tuple[str, int, int, tuple[str, ...]], ...]


def _image_layers(images: Iterable[Image]) -> tuple[dict[str, list[str]], list[Image]]:
    owners: dict[str, list[str]] = {}
    imgs = list(images)
    for im in imgs:
        name = im.tags[0] if im.tags else im.short_id
        for layer in im.layers:
            owners.setdefault(layer.digest, [])
            if name not in owners[layer.digest]:
                owners[layer.digest].append(name)
    return owners, imgs


def store_files(store: ContentStore, images: Iterable[Image], *, top: int = 20) -> StoreFiles:
    """Files of equal content stored in more than one distinct layer blob, over ``images``."""
    owners, imgs = _image_layers(images)
    digests = [d for d in owners if store.has_blob(d)]
    tables = load_tables(store, digests)
    where: dict[bytes, tuple[int, set[str], set[str]]] = {}
    for d, t in zip(digests, tables, strict=True):
        mask = (t.kind == FILE) & (t.size > 0)
        raw = np.ascontiguousarray(t.sha256[mask]).tobytes()
        for i, size in enumerate(t.size[mask].tolist()):
            key = raw[32 * i : 32 * i + 32]
            e = where.get(key)
            if e is None:
                where[key] = (size, {d}, set(owners[d]))
            else:
                e[1].add(d)
                e[2].update(owners[d])
    rows = []
    total = 0
    for key, (size, layers, names) in where.items():
        if len(layers) > 1:
            total += size * (len(layers) - 1)
            rows.append(("sha256:" + key.hex(), size, len(layers), tuple(sorted(names))))
    rows.sort(key=lambda r: (-(r[1] * (r[2] - 1)), r[0]))
    return StoreFiles(len(imgs), len(digests), total, tuple(rows[:top]))


def find_digest(store: ContentStore, images: Iterable[Image], digest: str) -> list[tuple[str, str, int, str]]:
    """Where a file of content ``digest`` (``sha256:...``) is: ``(image, path, layer index, layer digest)``."""
    want = bytes.fromhex(digest.removeprefix("sha256:"))
    if len(want) != 32:
        raise ValueError(f"find {digest!r}: not a sha256 digest")
    needle = np.frombuffer(want, dtype=np.uint8)
    out = []
    for im in images:
        name = im.tags[0] if im.tags else im.short_id
        layers = [layer.digest for layer in im.layers]
        tables = load_tables(store, [d for d in layers if store.has_blob(d)])
        for li, t in enumerate(tables):
            hits = np.flatnonzero(np.all(t.sha256 == needle, axis=1) & (t.kind == FILE))
            if len(hits):
                nm = t.names()
                for r in hits.tolist():
                    out.append((name, "/" + nm[t.path[r]].decode(errors="surrogateescape"), li, t.digest))
    return out
