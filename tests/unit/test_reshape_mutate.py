"""rebase, append and config (imgcore.reshape.mutate) on images in a fresh store; every result is validated with
``assert_valid_image`` and its tree checked by applying the layers."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from imgcore.cli import main
from imgcore.errors import BaseMismatch, BlobNotFound, InvalidArchive, InvalidArgument
from imgcore.image.catalog import resolve
from imgcore.models import OCI_INDEX, OCI_MANIFEST, Descriptor, ImageConfig, Index, Manifest, Platform, canonical_json
from imgcore.reshape.mutate import append_layers, rebase, reconfigure
from tests.images_helpers import layer_tar
from tests.reshape_helpers import applied, image_of_blobs, snap
from tests.validate import assert_valid_image


@pytest.fixture
def family(store):
    old = image_of_blobs(store, "debian:old", [layer_tar({"etc/os": b"11"}), layer_tar({"etc/extra": b"x"})])
    new = image_of_blobs(store, "debian:new", [layer_tar({"etc/os": b"12", "etc/more": b"m"})])
    app = image_of_blobs(store, "app:1", [layer_tar({"app/run": b"run"})], base=old)
    return old, new, app


def _tar(tmp_path, name, files):
    path = tmp_path / name
    with tarfile.open(path, "w") as tf:
        for n, data in files.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def test_rebase_swaps_the_base(store, family, tmp_path):
    old, new, app = family
    out = rebase(store, app, old, new, "app:rebased")
    assert_valid_image(store, "app:rebased")
    assert out.diff_ids == (*new.diff_ids, app.diff_ids[-1])
    assert [h["created_by"] for h in out.config.history] == ["layer 0", "layer 0"]
    tree = snap(applied(store, out, tmp_path / "t"))
    assert set(tree) == {"etc", "etc/os", "etc/more", "app", "app/run"}
    assert out.config.config == app.config.config
    # the same inputs give the same image
    assert rebase(store, app, old, new).id == out.id


def test_rebase_refuses_a_wrong_old_base(store, family):
    old, new, app = family
    with pytest.raises(BaseMismatch, match="is not its base: layer 0"):
        rebase(store, app, new, old, "nope:1")
    longer = image_of_blobs(store, None, [layer_tar({"z": b"z"})], base=app)
    with pytest.raises(BaseMismatch, match="it has 4 layers"):
        rebase(store, app, longer, new)
    assert "docker.io/library/nope:1" not in store.tags()


def test_append_adds_layers_with_history(store, family, tmp_path):
    _, _, app = family
    a = _tar(tmp_path, "one.tar", {"added/one": b"1"})
    b = _tar(tmp_path, "two.tar", {"added/two": b"2"})
    out = append_layers(store, app, [a, b], "app:appended")
    assert_valid_image(store, "app:appended")
    assert out.diff_ids[:-2] == app.diff_ids
    assert [h["created_by"] for h in out.config.history[-2:]] == ["imgcore append one.tar", "imgcore append two.tar"]
    assert {"added/one", "added/two", "app/run"} <= set(snap(applied(store, out, tmp_path / "t")))
    assert append_layers(store, app, [a, b]).id == out.id
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(InvalidArchive):
        append_layers(store, app, [bad])


def _multi(store, app):
    """app:1 as a two-platform index (the host's and a made-up arm64 twin with the same layers)."""
    data = dict(app.config.data)
    data["architecture"] = "arm64" if app.platform.architecture != "arm64" else "amd64"
    cfg = ImageConfig.from_bytes(canonical_json(data))
    store.put_blob(cfg.raw)
    m = Manifest.build(Descriptor(app.manifest.config.media_type, cfg.digest, len(cfg.raw)), list(app.manifest.layers))
    store.put_blob(m.raw)
    children = [
        Descriptor(OCI_MANIFEST, app.manifest_desc.digest, app.manifest_desc.size, platform=app.platform),
        Descriptor(OCI_MANIFEST, m.digest, len(m.raw), platform=Platform("linux", data["architecture"])),
    ]
    raw = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [c.to_json() for c in children]})
    desc = store.put_manifest(raw, OCI_INDEX)
    store.tag("multi:1", desc)
    return resolve(store, "multi:1")


def test_append_to_every_platform_of_an_index(store, family, tmp_path):
    _, _, app = family
    multi = _multi(store, app)
    assert multi.target is not None
    out = append_layers(store, multi, [_tar(tmp_path, "one.tar", {"added": b"1"})], "multi:2")
    assert_valid_image(store, "multi:2")
    index = Index.from_bytes(store.get_blob(out.digest))
    assert len(index.manifests) == 2
    archs = set()
    for child in index.manifests:
        manifest = Manifest.from_bytes(store.get_blob(child.digest))
        config = json.loads(store.get_blob(manifest.config.digest))
        assert config["rootfs"]["diff_ids"][:-1] == list(app.diff_ids)
        assert config["history"][-1]["created_by"] == "imgcore append one.tar"
        assert child.platform is not None
        assert config["architecture"] == child.platform.architecture
        archs.add(child.platform.architecture)
    assert len(archs) == 2
    assert out.platform == app.platform  # the host's platform is the one the tag resolves to


def test_append_to_an_index_missing_a_platform(store, family, tmp_path):
    _, _, app = family
    multi = _multi(store, app)
    index = Index.from_bytes(store.get_blob(multi.digest))
    missing = index.manifests[1].digest
    store.blob_path(missing).unlink()
    with pytest.raises(BlobNotFound, match="not in the store"):
        append_layers(store, multi, [_tar(tmp_path, "one.tar", {"a": b"1"})])


def test_config_changes_without_a_layer(store, family):
    _, _, app = family
    out = reconfigure(store, app, ["ENV A=B", "CMD echo hi", "LABEL x=y"], "app:cfg")
    assert_valid_image(store, "app:cfg")
    assert out.diff_ids == app.diff_ids
    assert out.config.config["Env"] == ["A=B"]
    assert out.config.config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    last = out.config.history[-1]
    assert last["empty_layer"] is True
    assert last["created_by"] == "imgcore config -c 'ENV A=B' -c 'CMD echo hi' -c 'LABEL x=y'"
    with pytest.raises(InvalidArgument, match="is not one of"):
        reconfigure(store, app, ["RUN rm -rf /"])
    with pytest.raises(InvalidArgument, match="at least one"):
        reconfigure(store, app, [])


def test_cli_rebase_append_config(store, family, tmp_path, capsys):
    root = ["--root", str(store.root)]
    assert main([*root, "rebase", "app:1", "--old-base", "debian:old", "--new-base", "debian:new", "-t", "c:r"]) == 0
    assert main([*root, "append", "app:1", str(_tar(tmp_path, "l.tar", {"f": b"f"})), "-t", "c:a"]) == 0
    assert main([*root, "config", "app:1", "-c", "WORKDIR /app", "-t", "c:c"]) == 0
    ids = capsys.readouterr().out.split()
    assert len(ids) == 3
    for ref, image_id in zip(("c:r", "c:a", "c:c"), ids, strict=True):
        assert_valid_image(store, ref)
        assert resolve(store, ref).id == image_id
    assert resolve(store, "c:c").config.config["WorkingDir"] == "/app"
    assert main([*root, "rebase", "app:1", "--old-base", "debian:new", "--new-base", "debian:old"]) == 1
    assert "is not its base" in capsys.readouterr().err


def test_front_door_methods(store, family, tmp_path):
    import imgcore

    front = imgcore.Store(store.root)
    flat = front.flatten("app:1", "api:flat")
    sq = front.squash("app:1", "api:sq", last=2, exclude=["etc/extra"])
    reb = front.rebase("app:1", "debian:old", "debian:new", "api:reb")
    app = front.append(reb, [_tar(tmp_path, "x.tar", {"x": b"x"})], "api:app")
    cfg = front.reconfigure(app, ["USER nobody"], "api:cfg")
    for ref, img in (("api:flat", flat), ("api:sq", sq), ("api:reb", reb), ("api:app", app), ("api:cfg", cfg)):
        assert_valid_image(store, ref)
        assert front.image(ref).id == img.id
    assert len(flat.manifest.layers) == 1
    assert len(sq.manifest.layers) == 2
    assert "etc/extra" not in snap(applied(store, sq, tmp_path / "sq"))
    assert cfg.config.config["User"] == "nobody"
    assert cfg.diff_ids == app.diff_ids == (*reb.diff_ids, app.diff_ids[-1])
    box = front.create("app:1", driver="copy")
    (box.rootfs / "junk").mkdir()
    (box.rootfs / "junk/x").write_bytes(b"x")
    (box.rootfs / "kept").write_bytes(b"k")
    one = box.commit("api:commit", squash=True, exclude=["junk"])
    assert_valid_image(store, "api:commit")
    assert len(one.manifest.layers) == 1
    tree = snap(applied(store, one, tmp_path / "c"))
    assert "kept" in tree
    assert "junk" not in tree
    assert "app/run" in tree
