"""save never exports a corrupt blob; load refuses a docker-save manifest whose RepoTags is not a list."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

import imgcore
from imgcore.errors import DigestMismatch, InvalidManifest
from imgcore.transfer import archive
from tests.images_helpers import layer_tar, make_image


def test_save_refuses_a_corrupt_blob(store, tmp_path):
    img = make_image(store, "app:1", {"etc/x": b"x"})
    blob = store.blob_path(img.manifest.layers[0].digest)
    blob.chmod(0o644)
    blob.write_bytes(b"corrupted")
    out = tmp_path / "out.tar"
    with pytest.raises(DigestMismatch, match="corrupt"):
        archive.save(["app:1"], out, store=store)
    assert not out.exists()  # nothing half-written under the requested name


def _classic(repo_tags: object) -> bytes:
    layer = layer_tar({"etc/x": b"x"})
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [imgcore.sha256(layer)]}}
    ).encode()
    cfg_name = imgcore.sha256(config).split(":")[1] + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": repo_tags, "Layers": ["l/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in ((cfg_name, config), ("l/layer.tar", layer), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_load_refuses_repo_tags_that_are_not_a_list(store):
    with pytest.raises(InvalidManifest, match="RepoTags: expected a list of strings, got str"):
        archive.load(io.BytesIO(_classic("abc")), store=store)
    assert store.tags() == {}
    result = archive.load(io.BytesIO(_classic(["abc:1"])), store=store)
    assert [name for name, _ in result.images] == ["docker.io/library/abc:1"]
