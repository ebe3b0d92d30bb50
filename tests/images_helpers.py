"""Builds small, real images directly through the Store API, for any test that needs one.

    from tests.images_helpers import make_image
    base = make_image(store, "tomcat:latest", {"usr/local/tomcat/webapps.dist/ROOT/index.html": b"<h1>hi</h1>",
                                               "usr/local/tomcat/webapps/": None})
    child = make_image(store, "new_tomcat:1.0", {"usr/local/tomcat/webapps/ROOT/index.html": b"..."}, parent=base)

Layers are deterministic gzip'd PAX tars (sorted entries, parent directories included, mtime 0 unless given,
root-owned); the same call always gives the same digests (pass ``created`` to fix the config's time too).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import io
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

from imgcore.image.catalog import load_image, resolve
from imgcore.image.model import Image
from imgcore.image.sizes import record_layer_size
from imgcore.models import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    canonical_json,
)
from imgcore.reference import parse
from imgcore.store import ContentStore

__all__ = ["layer_tar", "make_image", "rfc3339"]


def rfc3339(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def layer_tar(files: Mapping[str, bytes | None], *, mtime: int = 0, mode: int = 0o644) -> bytes:
    """A tar of ``files`` (path -> content; ``None`` or a trailing ``/`` makes a directory; a value of
    ``b"->target"`` with a path ending in ``@`` makes a symlink ``path -> target``). Parent directories are
    added; entries are sorted."""
    entries: dict[str, tuple[str, bytes | None]] = {}
    for raw_path, data in files.items():
        path = raw_path.strip("/")
        kind = "dir" if data is None or raw_path.endswith("/") else "file"
        if raw_path.endswith("@"):
            path, kind = path[:-1], "symlink"
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), ("dir", None))
        entries[path] = (kind, data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(entries):
            kind, data = entries[path]
            info = tarfile.TarInfo(path)
            info.mtime = mtime
            info.uname = info.gname = ""
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif kind == "symlink":
                assert data is not None
                assert data.startswith(b"->")
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, data[2:].decode(), 0o777
                tf.addfile(info)
            else:
                assert data is not None
                info.size, info.mode = len(data), mode
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_image(
    store: ContentStore,
    ref: str | None,
    files: Mapping[str, bytes | None],
    parent: Image | str | None = None,
    *,
    created: _dt.datetime | str | None = None,
    config: Mapping[str, Any] | None = None,
    comment: str = "",
    created_by: str | None = None,
    author: str | None = None,
    compression: str = "gzip",
    docker: bool = False,
    empty_layer: bool = False,
    extra_history: Sequence[Mapping[str, Any]] = (),
    tar: bytes | None = None,
) -> Image:
    """Stores a one-layer image (or ``parent``'s layers plus one) and tags it ``ref`` (dangling when None).

    ``compression`` is "gzip" or "none"; ``docker`` writes Docker schema-2 media types instead of OCI ones;
    ``empty_layer`` adds only a history entry (no layer), as a metadata-only commit does; ``extra_history``
    entries (each with ``empty_layer`` true) are appended before the new entry. ``tar`` is the new layer's
    uncompressed tar as it is (whiteouts, odd entries), instead of one built from ``files``.
    """
    if isinstance(parent, str):
        parent = resolve(store, parent)
    when = created if created is not None else _dt.datetime.now(_dt.UTC)
    created_text = when if isinstance(when, str) else rfc3339(when)
    layers: list[Descriptor] = list(parent.manifest.layers) if parent else []
    diff_ids: list[str] = list(parent.config.diff_ids) if parent else []
    history: list[dict[str, Any]] = [dict(h) for h in parent.config.history] if parent else []
    history.extend(dict(h) for h in extra_history)
    if not empty_layer:
        if tar is None:
            tar = layer_tar(files)
        import imgcore

        diff_ids.append(imgcore.sha256(tar))
        if compression == "gzip":
            blob = gzip.compress(tar, compresslevel=6, mtime=0)
            media = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
        elif compression == "none":
            blob, media = tar, OCI_LAYER
        else:
            raise ValueError(f"compression {compression!r}")
        d = store.put_blob(blob)
        record_layer_size(store, d.digest, len(tar))
        layers.append(Descriptor(media, d.digest, d.size))
    entry: dict[str, Any] = {"created": created_text, "created_by": created_by or f"make_image {ref or '<none>'}"}
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    if empty_layer:
        entry["empty_layer"] = True
    history.append(entry)
    plat = Platform.host()
    cfg: dict[str, Any] = {
        "architecture": plat.architecture,
        "os": plat.os,
        "created": created_text,
        "config": dict(config if config is not None else (parent.config.config if parent else {})),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    if author:
        cfg["author"] = author
    if comment:
        cfg["comment"] = comment
    raw = canonical_json(cfg)
    cdesc = store.put_blob(raw)
    manifest = Manifest.build(
        Descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, cdesc.digest, cdesc.size),
        layers,
        media_type=DOCKER_MANIFEST if docker else OCI_MANIFEST,
    )
    mdesc = store.put_manifest(manifest.raw, manifest.media_type)
    if ref is not None:
        store.tag(ref, mdesc)
        return load_image(store, mdesc, (str(parse(ref)),))
    store.add_untagged(mdesc)
    return load_image(store, mdesc)
