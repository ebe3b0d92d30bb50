"""save never exports a corrupt blob; load refuses a docker-save manifest whose RepoTags is not a list."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

import imgcore
from imgcore.errors import DigestMismatch, InvalidArchive
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
    with pytest.raises(InvalidArchive, match="RepoTags: expected an array of strings"):
        archive.load(io.BytesIO(_classic("abc")), store=store)
    assert store.tags() == {}
    result = archive.load(io.BytesIO(_classic(["abc:1"])), store=store)
    assert [name for name, _ in result.images] == ["docker.io/library/abc:1"]


def test_load_bounds_members_and_refuses_sparse_ones(store, tmp_path, monkeypatch):
    from imgcore.errors import InvalidArchive, LimitExceeded

    monkeypatch.setattr(archive, "MAX_MEMBERS", 10)
    many = io.BytesIO()
    with tarfile.open(fileobj=many, mode="w") as tf:
        for i in range(11):
            tf.addfile(tarfile.TarInfo(f"junk{i}"), io.BytesIO(b""))
    with pytest.raises(LimitExceeded, match="more than 10 members"):
        archive.load(io.BytesIO(many.getvalue()), store=store)
    # a 1 GiB hole in a few KiB of archive must never be spooled (GNU tar writes the sparse member)
    hole = tmp_path / "blobs"
    hole.mkdir()
    with (hole / "big").open("wb") as f:
        f.truncate(1 << 30)
    out = tmp_path / "sparse.tar"
    import subprocess

    subprocess.run(["tar", "--sparse", "-cf", str(out), "-C", str(tmp_path), "blobs/big"], check=True)
    assert out.stat().st_size < 1 << 20
    with pytest.raises(InvalidArchive, match="sparse"):
        archive.load(out, store=store)
    assert store.list_blobs() == []
