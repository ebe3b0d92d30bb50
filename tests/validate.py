"""``assert_valid_image``: go-containerregistry's ``validate.Image`` for an image in our store.

It re-derives everything from the stored bytes, independently of imgcore's own code paths: every blob's sha256
and size against its descriptor, the config's ``rootfs.diff_ids`` against the decompressed layers (stdlib gzip,
the ``zstd`` command), media types consistent within OCI or Docker, one non-empty history entry per layer, every
layer a readable tar, and the tag in ``index.json`` pointing at the manifest's exact bytes.

    from tests.validate import assert_valid_image
    assert_valid_image(store, "new_tomcat:1.0")      # a reference, an image ID, or name@digest
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from typing import Any

__all__ = ["assert_valid_image", "decompress_layer"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CONFIG_FOR = {
    OCI_MANIFEST: "application/vnd.oci.image.config.v1+json",
    DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json",
}
OCI_LAYERS = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}
DOCKER_LAYERS = {
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def decompress_layer(blob: bytes, media_type: str) -> bytes:
    """The uncompressed tar of a layer blob (by magic number, the media type only as a cross-check)."""
    if blob[:2] == b"\x1f\x8b":
        assert "gzip" in media_type, f"gzip blob with media type {media_type}"
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        assert "zstd" in media_type, f"zstd blob with media type {media_type}"
        zstd = shutil.which("zstd")
        assert zstd, "validating a zstd layer needs the zstd command"
        return subprocess.run([zstd, "-dcq"], input=blob, capture_output=True, check=True).stdout
    assert media_type.endswith("tar"), f"uncompressed blob with media type {media_type}"
    return blob


def _blob(store: Any, digest: str, size: int, what: str) -> bytes:
    path = store.blob_path(digest)
    assert path.is_file(), f"{what} {digest} is missing from the store"
    data = path.read_bytes()
    assert _sha(data) == digest, f"{what} {digest}: content hashes to {_sha(data)}"
    assert len(data) == size, f"{what} {digest}: descriptor says {size} bytes, blob has {len(data)}"
    return data


def _validate_manifest(store: Any, raw: bytes, media_type: str, where: str) -> dict[str, Any]:
    doc = json.loads(raw)
    assert doc.get("schemaVersion") == 2, f"{where}: schemaVersion {doc.get('schemaVersion')!r}"
    mt = doc.get("mediaType") or media_type
    assert mt in CONFIG_FOR, f"{where}: not an image manifest ({mt})"
    if media_type:
        assert mt == media_type, f"{where}: descriptor says {media_type}, document says {mt}"
    cdesc = doc["config"]
    assert cdesc["mediaType"] == CONFIG_FOR[mt], f"{where}: config media type {cdesc['mediaType']} in a {mt}"
    config = json.loads(_blob(store, cdesc["digest"], cdesc["size"], f"{where} config"))
    for key in ("architecture", "os", "rootfs"):
        assert key in config, f"{where}: config has no {key!r}"
    rootfs = config["rootfs"]
    assert rootfs.get("type") == "layers", f"{where}: rootfs.type {rootfs.get('type')!r}"
    diff_ids = rootfs["diff_ids"]
    layers = doc["layers"]
    assert len(diff_ids) == len(layers), f"{where}: {len(layers)} layers but {len(diff_ids)} diff_ids"
    allowed = OCI_LAYERS if mt == OCI_MANIFEST else DOCKER_LAYERS
    for i, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
        lw = f"{where} layer {i}"
        assert layer["mediaType"] in allowed, f"{lw}: media type {layer['mediaType']} in a {mt}"
        blob = _blob(store, layer["digest"], layer["size"], lw)
        tar = decompress_layer(blob, layer["mediaType"])
        assert _sha(tar) == diff_id, f"{lw}: uncompressed content hashes to {_sha(tar)}, config says {diff_id}"
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
            for member in tf:
                assert not member.name.startswith("/"), f"{lw}: absolute entry {member.name!r}"
    history = config.get("history")
    if history:
        non_empty = sum(1 for h in history if not h.get("empty_layer"))
        assert non_empty == len(layers), f"{where}: {non_empty} non-empty history entries for {len(layers)} layers"
    return doc


def assert_valid_image(store: Any, ref: str) -> None:
    """Asserts the image ``ref`` names (tag, ID or name@digest) is whole and self-consistent."""
    from imgcore.image.catalog import resolve

    img = resolve(store, ref)
    index = json.loads((store.root / "index.json").read_text())
    entries = [m for m in index["manifests"] if m["digest"] == img.digest]
    assert entries, f"{ref}: {img.digest} is not in index.json"
    for entry in entries:
        raw = _blob(store, entry["digest"], entry["size"], f"{ref} manifest")
        mt = json.loads(raw).get("mediaType") or entry.get("mediaType", "")
        assert entry.get("mediaType", mt) == mt, f"{ref}: index.json says {entry.get('mediaType')}, document {mt}"
        if mt in (OCI_INDEX, DOCKER_LIST):
            children = [m for m in json.loads(raw)["manifests"] if store.blob_path(m["digest"]).is_file()]
            assert children, f"{ref}: no manifest of the index is stored"
            for child in children:
                _validate_manifest(
                    store,
                    _blob(store, child["digest"], child["size"], "manifest"),
                    child["mediaType"],
                    f"{ref} {child['digest']}",
                )
        else:
            _validate_manifest(store, raw, mt, f"{ref} {entry['digest']}")
    assert img.id == _sha(store.blob_path(img.id).read_bytes()), f"{ref}: image ID is not the config's digest"
