"""Archives: ``save`` (docker 25+'s archive, OCI tar, OCI directory) and ``load`` (those plus the classic
``<id>/layer.tar`` docker-save layout).

Invariants:
- ``load`` spools the archive into ``imgcore/tmp/``, verifies every digest, size and diff_id (each layer decoded
  by the one decompression path, ``_core.inspect_blob``), and only then stores anything: a broken archive stores
  nothing; a lease holds the new blobs until the tags are written;
- member names are confined (no absolute paths, no ``..``), and links are followed inside the archive only;
- ``save`` finds images with the one resolver (a tag, ``name@digest`` or an image ID) and writes to a temporary
  file renamed into place, so a failed save never leaves a half archive under the requested name.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imgcore import _fs
from imgcore._core import inspect_blob, sha256_file
from imgcore._progress import NullProgress, Progress, short_id
from imgcore.errors import DigestMismatch, ImgcoreError, InvalidArchive, InvalidManifest, LimitExceeded, SizeMismatch
from imgcore.image.builder import manifest_for
from imgcore.image.catalog import keep_untagged, lookup, tag_manifest
from imgcore.models import (
    DOCKER_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    is_attestation,
    parse_manifest_or_index,
    parse_save_manifest,
)
from imgcore.reference import Reference
from imgcore.reference import parse as parse_reference
from imgcore.store import ContentStore

__all__ = ["LoadResult", "load", "save"]

_LAYER_TYPES = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
_META = ("index.json", "oci-layout", "manifest.json", "repositories")
MAX_MEMBERS = 200_000
"""Most members an archive may have (docker's saves have a few per layer)."""
MAX_JSON = 20 << 20
"""Largest JSON document read from an archive (containerd's cap, CVE-2023-25153)."""

_DOCKER_NAME = "io.containerd.image.name"


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load` stored: ``(name or None, manifest descriptor)`` per image."""

    images: tuple[tuple[str | None, Descriptor], ...]
    format: str


def _check_stored(store: ContentStore, digest: str) -> None:
    """A corrupt blob is never exported: it is re-hashed before it is written."""
    actual = sha256_file(store.blob_path(digest))
    if actual != digest:
        raise DigestMismatch(f"save: blob {digest} in the store is corrupt (hashes to {actual})",
                             expected=digest, actual=actual)  # fmt: skip


def _image_blobs(store: ContentStore, desc: Descriptor) -> tuple[Manifest, list[Descriptor]]:
    raw = store.get_blob(desc.digest)
    doc = parse_manifest_or_index(raw, desc.media_type or None)
    if isinstance(doc, Index):
        child = doc.for_platform(Platform.host())
        return _image_blobs(store, child)
    return doc, [manifest_descriptor(doc), doc.config, *doc.layers]


def manifest_descriptor(m: Manifest) -> Descriptor:
    return Descriptor(m.media_type, m.digest, len(m.raw))


def save(
    refs: Iterable[str | Reference],
    output: str | os.PathLike[str] | BinaryIO,
    *,
    store: ContentStore,
    format: str = "docker",
    progress: Progress | None = None,
) -> list[str]:
    """Write images to an archive, as ``docker save`` does. Returns the names written.

    Formats: ``docker`` (docker 25+'s layout: an OCI layout plus the classic ``manifest.json`` and
    ``repositories``, readable by every docker version and by skopeo's ``docker-archive:``), ``oci`` (an OCI image
    layout as a tar) and ``oci-dir`` (an OCI image layout directory, ``output`` being the directory).
    """
    progress = progress if progress is not None else NullProgress()
    if format not in ("docker", "oci", "oci-dir"):
        raise ImgcoreError(f"save: unknown format {format!r} (docker, oci, oci-dir)")
    images: list[tuple[Reference | None, Manifest, list[Descriptor]]] = []
    for ref in refs:
        text = str(ref)
        img, named = lookup(store, text)
        r = named if named is not None and named.digest is None else None
        # docker's archive keeps a docker-typed image's own manifest (its digest); an OCI one gets the OCI twin.
        source = img.original if format == "docker" and img.original is not None else img.target_desc
        manifest, blobs = _image_blobs(store, source)
        images.append((r, manifest, blobs))

    index_entries = []
    docker_manifest = []
    repositories: dict[str, dict[str, str]] = {}
    blobs_by_digest: dict[str, Descriptor] = {}
    for r, manifest, blobs in images:
        for b in blobs:
            blobs_by_digest.setdefault(b.digest, b)
        annotations = {_DOCKER_NAME: str(r), "org.opencontainers.image.ref.name": r.tag or "latest"} if r else None
        index_entries.append(manifest_descriptor(manifest).with_annotations(annotations).to_json())
        docker_manifest.append(
            {
                "Config": f"blobs/sha256/{manifest.config.digest.split(':', 1)[1]}",
                "RepoTags": [r.familiar] if r and r.tag else [],
                "Layers": [f"blobs/sha256/{layer.digest.split(':', 1)[1]}" for layer in manifest.layers],
            }
        )
        if r and r.tag and manifest.layers:
            repositories.setdefault(r.familiar_repository, {})[r.tag] = manifest.layers[-1].digest.split(":", 1)[1]
    meta: dict[str, bytes] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index_entries}
        ).encode(),
    }
    if format == "docker":
        meta["manifest.json"] = json.dumps(docker_manifest).encode()
        if repositories:
            meta["repositories"] = json.dumps(repositories).encode()

    if format == "oci-dir":
        if not isinstance(output, str | os.PathLike):
            raise ImgcoreError("save: the oci-dir format needs a directory path")
        out_dir = Path(output)
        (out_dir / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        for digest in blobs_by_digest:
            dest = out_dir / "blobs" / "sha256" / digest.split(":", 1)[1]
            if not dest.exists():
                shutil.copyfile(store.blob_path(digest), dest)
        for name, data in meta.items():
            (out_dir / name).write_bytes(data)
        return [str(r) for r, _, _ in images if r]

    def add(tf: tarfile.TarFile, name: str, size: int, fileobj: BinaryIO, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, 0
        tf.addfile(info, fileobj)

    opened: BinaryIO | None = None
    if isinstance(output, str | os.PathLike):
        target = Path(output)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        opened = tmp.open("wb")
        fileobj: BinaryIO = opened
    else:
        fileobj = output
    try:
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for dirname in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(dirname)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                tf.addfile(info)
            for digest in blobs_by_digest:
                size = store.blob_size(digest)
                progress.layer(short_id(digest), "Saving", 0, size)
                _check_stored(store, digest)
                with store.open_blob(digest) as f:
                    add(tf, f"blobs/sha256/{digest.split(':', 1)[1]}", size, f)
                progress.layer(short_id(digest), "Saved", size, size)
            for name, data in meta.items():
                add(tf, name, len(data), io.BytesIO(data))
        if opened is not None:
            opened.flush()
            os.fsync(opened.fileno())
            opened.close()
            opened = None
            tmp.replace(target)
    finally:
        if opened is not None:
            opened.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return [str(r) for r, _, _ in images if r]


class _Staged:
    """An archive's regular files, spooled into a private directory inside the store (same filesystem)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, Path] = {}
        self.links: dict[str, str] = {}

    def path(self, name: str, where: str) -> Path:
        name = _clean_name(name, where)
        for _ in range(16):
            if name in self.files:
                return self.files[name]
            if name in self.links:
                name = self.links[name]
                continue
            break
        raise InvalidArchive(f"{where}: the archive has no file {name!r}")

    def has(self, name: str) -> bool:
        try:
            self.path(name, "")
        except InvalidArchive:
            return False
        return True


def _clean_name(name: str, where: str) -> str:
    norm = posixpath.normpath(name.lstrip("/")) if name else ""
    if name.startswith("/") or norm.startswith("../") or norm == ".." or not norm or norm == ".":
        raise InvalidArchive(f"{where}: unsafe or empty name {name!r} in archive")
    return norm


def _wanted(name: str) -> bool:
    """Whether a member can be part of an image in a docker or OCI archive (only those are spooled: an archive
    cannot make load write more than it could ever use)."""
    return (
        name in _META or name.startswith("blobs/") or name.endswith(("/layer.tar", ".json", ".tar", ".tar.gz", ".tgz"))
    )


def _stage_tar(src: str | os.PathLike[str] | BinaryIO, staging: Path) -> _Staged:
    """Spools the archive's regular files into ``staging``, streaming (one pass, members not kept in memory)."""
    staged = _Staged(staging)
    where = f"load {src}" if isinstance(src, str | os.PathLike) else "load"
    n = 0
    try:
        opened = Path(src).open("rb") if isinstance(src, str | os.PathLike) else None  # noqa: SIM115
        stream: BinaryIO = opened if opened is not None else src  # type: ignore[assignment]  # a path was opened
        tf = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115
        with tf, opened if opened is not None else contextlib.nullcontext():
            for count, member in enumerate(tf, 1):
                tf.members = []  # type: ignore[attr-defined]  # streaming: nothing to look back at, memory stays small
                if count > MAX_MEMBERS:
                    raise LimitExceeded(f"{where}: more than {MAX_MEMBERS} members; not an image archive")
                if member.issparse():
                    raise InvalidArchive(
                        f"{where}: {member.name!r} is a sparse member; docker and OCI archives have none"
                    )
                if member.isdir():
                    continue
                name = _clean_name(member.name, where)
                if name in _META and member.size > MAX_JSON:
                    raise InvalidArchive(f"{where}: {name} is {member.size} bytes, more than {MAX_JSON}")
                if member.issym() or member.islnk():
                    target = member.linkname
                    if member.issym():
                        target = posixpath.join(posixpath.dirname(name), target)
                    staged.links[name] = _clean_name(target, where)
                    continue
                if not member.isfile() or not _wanted(name):
                    continue
                n += 1
                dest = staging / f"f{n}"
                reader = tf.extractfile(member)
                if reader is None:
                    continue
                with dest.open("wb") as out:
                    while chunk := reader.read(1 << 20):
                        out.write(chunk)
                staged.files[name] = dest
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError) or getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise  # a missing archive or a full disk is not a malformed archive
        raise InvalidArchive(f"{where}: not a readable tar archive: {e}") from None
    return staged


def _stage_dir(src: Path) -> _Staged:
    staged = _Staged(src)
    stack = [src]  # iterative: a hostile directory's depth cannot exhaust the stack (rglob recurses on 3.11)
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file(follow_symlinks=False):
                    staged.files[Path(e.path).relative_to(src).as_posix()] = Path(e.path)
    return staged


def _sha256_path(path: Path) -> str:
    return sha256_file(path)


def _verified_blob(staged: _Staged, desc: Descriptor, where: str) -> Path:
    """The staged file for ``desc`` (``blobs/<alg>/<hex>``), checked for size and digest."""
    alg, _, hexpart = desc.digest.partition(":")
    path = staged.path(f"blobs/{alg}/{hexpart}", f"{where}: blob {desc.digest}")
    size = path.stat().st_size
    if size != desc.size:
        raise SizeMismatch(
            f"{where}: blob {desc.digest}: {size} bytes, descriptor says {desc.size}", expected=desc.size, actual=size
        )
    actual = _sha256_path(path)
    if actual != desc.digest:
        raise DigestMismatch(f"{where}: blob {desc.digest} hashes to {actual}", expected=desc.digest, actual=actual)
    return path


def _diff_id(path: Path, where: str) -> tuple[str, str, str]:
    """(digest, diff_id, OCI layer media type) of a layer file, decoded once by the Rust decoder."""
    try:
        digest, diff_id, compression, _, _ = inspect_blob(path)
    except InvalidArchive as e:
        raise InvalidArchive(f"{where}: {e}") from None
    return digest, diff_id, _LAYER_TYPES[compression]


def _check_diff_ids(staged: _Staged, manifest: Manifest, where: str) -> None:
    """The config's ``rootfs.diff_ids`` match the layers, one for one (verify, then trust)."""
    cfg_path = staged.path(f"blobs/sha256/{manifest.config.digest.split(':', 1)[1]}", where)
    config = ImageConfig.from_bytes(cfg_path.read_bytes())
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidManifest(
            f"{where}: image {config.digest}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"
        )
    for layer, want in zip(manifest.layers, config.diff_ids, strict=True):
        path = staged.path(f"blobs/sha256/{layer.digest.split(':', 1)[1]}", where)
        _, got, _ = _diff_id(path, f"{where}: layer {layer.digest}")
        if got != want:
            raise DigestMismatch(
                f"{where}: layer {layer.digest} has diff_id {got}, the config says {want}", expected=want, actual=got
            )


def _is_config(d: Descriptor) -> bool:
    return d.media_type == DOCKER_CONFIG or "config" in d.media_type


def _names_from(text: str | None) -> Reference | None:
    if not text:
        return None
    try:
        r = parse_reference(text)
    except ImgcoreError:
        return None
    return r


_Plan = list[tuple[Reference | None, list[tuple[Descriptor, Path]], Descriptor]]


def _read_capped(staged: _Staged, name: str, where: str) -> bytes:
    """An archive's JSON member, at most :data:`MAX_JSON` bytes."""
    path = staged.path(name, where)
    if path.stat().st_size > MAX_JSON:
        raise InvalidArchive(f"{where}: {name} is larger than {MAX_JSON} bytes")
    return path.read_bytes()


def _plan_oci(staged: _Staged, where: str) -> _Plan:
    """Verify an OCI layout (or docker 25+ archive) and list what to store: (name, blobs, manifest descriptor)."""
    entries = Index.from_bytes(_read_capped(staged, "index.json", where), where=f"{where}: index.json").manifests
    repo_tags: dict[str, list[str]] = {}
    if staged.has("manifest.json"):
        for item in parse_save_manifest(_read_capped(staged, "manifest.json", where), f"{where}: manifest.json"):
            if item.config_digest:
                repo_tags.setdefault(item.config_digest, []).extend(item.repo_tags)
    plan: _Plan = []
    for entry in entries:
        blobs: list[tuple[Descriptor, Path]] = []
        mpath = _verified_blob(staged, entry, where)
        raw = mpath.read_bytes()
        doc = parse_manifest_or_index(raw, entry.media_type or None)
        blobs.append((Descriptor(doc.media_type, entry.digest, entry.size), mpath))
        manifest_desc = blobs[0][0]
        if isinstance(doc, Index):
            children = [c for c in doc.manifests if not is_attestation(c)
                        and staged.has(f"blobs/sha256/{c.digest.split(':', 1)[1]}")]  # fmt: skip
            if not children:
                raise InvalidArchive(f"{where}: index {entry.digest} has none of its manifests in the archive")
            chosen = next((c for c in children if c.platform and Platform.host().matches(c.platform)), children[0])
            cpath = _verified_blob(staged, chosen, where)
            doc = Manifest.from_bytes(cpath.read_bytes(), chosen.media_type or None)
            manifest_desc = Descriptor(doc.media_type, chosen.digest, chosen.size)
            blobs.append((manifest_desc, cpath))
        for d in (doc.config, *doc.layers):
            blobs.append((d, _verified_blob(staged, d, where)))
        _check_diff_ids(staged, doc, where)
        names = list(repo_tags.get(doc.config.digest, []))
        ann = entry.annotations or {}
        if not names and ann.get(_DOCKER_NAME):
            names.append(ann[_DOCKER_NAME])
        ref_name = ann.get("org.opencontainers.image.ref.name", "")
        if not names and ("/" in ref_name or ":" in ref_name):
            names.append(ref_name)  # a name (``bb:1.0`` is docker.io/library/bb:1.0, as ctr reads it), not a tag
        refs: list[Reference | None] = [r for r in (_names_from(n) for n in names) if r is not None] or [None]
        for r in refs:
            plan.append((r, blobs, manifest_desc))
    return _unique(plan)


def _unique(plan: _Plan) -> _Plan:
    """One step per (name, manifest): docker 25's index.json has an entry per tag, and each entry's config
    lists every tag in manifest.json, so a naive plan would load (and print) each name once per entry."""
    seen: set[tuple[str | None, str]] = set()
    out: _Plan = []
    for r, blobs, mdesc in plan:
        key = (str(r) if r is not None else None, mdesc.digest)
        if key not in seen and not (r is None and any(k[1] == mdesc.digest for k in seen)):
            seen.add(key)
            out.append((r, blobs, mdesc))
    return out


def _plan_classic(staged: _Staged, where: str) -> _Plan:
    """Verify a classic docker-save archive (manifest.json, <id>/layer.tar) and build OCI manifests for it."""
    items = parse_save_manifest(_read_capped(staged, "manifest.json", where), f"{where}: manifest.json")
    plan: _Plan = []
    for i, item in enumerate(items):
        w = f"{where}: manifest.json[{i}]"
        cfg_name, layer_names, tags = item.config, list(item.layers), list(item.repo_tags)
        cpath = staged.path(cfg_name, w)
        cfg_digest = _sha256_path(cpath)
        expected_hex = cfg_name.rsplit("/", 1)[-1].removesuffix(".json")
        if len(expected_hex) == 64 and f"sha256:{expected_hex}" != cfg_digest:
            raise DigestMismatch(f"{w}: config {cfg_name} hashes to {cfg_digest}",
                                 expected=f"sha256:{expected_hex}", actual=cfg_digest)  # fmt: skip
        config = ImageConfig.from_bytes(_read_capped(staged, cfg_name, w), where=f"{w}: config {cfg_name}")
        if len(config.diff_ids) != len(layer_names):
            n_ids = len(config.diff_ids)
            raise InvalidManifest(f"{w}: {len(layer_names)} layers but the config lists {n_ids} diff_ids")
        blobs: list[tuple[Descriptor, Path]] = [(Descriptor("", cfg_digest, cpath.stat().st_size), cpath)]
        layers = []
        for name, want in zip(layer_names, config.diff_ids, strict=True):
            lpath = staged.path(name, w)
            digest, diff_id, media_type = _diff_id(lpath, f"{w}: layer {name}")
            if diff_id != want:
                raise DigestMismatch(f"{w}: layer {name} has diff_id {diff_id}, the config says {want}",
                                     expected=want, actual=diff_id)  # fmt: skip
            d = Descriptor(media_type, digest, lpath.stat().st_size)
            layers.append(d)
            blobs.append((d, lpath))
        manifest = manifest_for(config, layers)
        blobs[0] = (manifest.config, cpath)
        mdesc = manifest_descriptor(manifest)
        mpath = staged.root / f"manifest-{i}"
        mpath.write_bytes(manifest.raw)
        blobs.insert(0, (mdesc, mpath))
        refs: list[Reference | None] = [r for r in (_names_from(t) for t in (tags or [])) if r is not None]
        refs = refs or [None]
        for r in refs:
            plan.append((r, blobs, mdesc))
    return plan


@_fs.disk_full_is_an_error("load")
def load(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    store: ContentStore,
    progress: Progress | None = None,
) -> LoadResult:
    """Load images from a docker-save archive (classic or docker 25+), an OCI layout tar or an OCI layout directory.

    Every blob is verified (digests, sizes, diff_ids) before anything is stored: a broken archive stores nothing.
    """
    progress = progress if progress is not None else NullProgress()
    where = f"load {os.fspath(source)}" if isinstance(source, str | os.PathLike) else "load"
    tmp_root = store.paths.tmp
    tmp_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="load-", dir=tmp_root))
    try:
        if isinstance(source, str | os.PathLike) and Path(source).is_dir():
            staged = _stage_dir(Path(source))
        else:
            staged = _stage_tar(source, staging)
        if staged.has("index.json") and staged.has("oci-layout"):
            plan, fmt = _plan_oci(staged, where), "docker" if staged.has("manifest.json") else "oci"
        elif staged.has("manifest.json"):
            plan, fmt = _plan_classic(staged, where), "docker-classic"
        else:
            raise InvalidArchive(f"{where}: neither an OCI layout (index.json) nor a docker archive (manifest.json)")
        if not plan:
            raise InvalidArchive(f"{where}: the archive has no images")
        # Everything checked out: now store, under a lease until the last tag.
        stored: set[str] = set()
        out: list[tuple[str | None, Descriptor]] = []
        with store.lease("load") as lease:
            for r, blobs, mdesc in plan:
                with lease.guard():
                    lease.add(*(d.digest for d, _ in blobs))
                for d, path in blobs:
                    if d.digest not in stored and not store.has_blob(d.digest):
                        progress.layer(short_id(d.digest), "Loading layer", 0, d.size)
                        store.put_blob(path, digest=d.digest, size=d.size)
                        progress.layer(short_id(d.digest), "Loaded", d.size, d.size)
                    stored.add(d.digest)
                config_digest = next(d.digest for d, _ in blobs if d is not mdesc and _is_config(d))
                if r is not None:
                    tag_manifest(store, lease, r, mdesc, config_digest)
                    progress.line(f"Loaded image: {r.familiar}")
                else:
                    keep_untagged(store, lease, mdesc)
                    progress.line(f"Loaded image ID: {config_digest}")
                out.append((str(r) if r is not None else None, mdesc))
        return LoadResult(tuple(out), fmt)
    finally:
        _fs.rmtree(staging, ignore_errors=True)
