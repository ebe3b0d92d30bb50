"""save/load against skopeo's docker-archive and oci-archive transports and umoci."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from imgcore import sha256
from imgcore._progress import LinesOnly
from imgcore.errors import DigestMismatch, InvalidArchive
from imgcore.image import catalog
from imgcore.store import ContentStore
from imgcore.transfer import archive as archiving
from tests.validate import assert_valid_image

from .conftest import OciImage, require_tool, run

pytestmark = pytest.mark.integration


def _unpack_same(layout_ref: str, image: OciImage, tmp_path: Path) -> None:
    umoci = require_tool("umoci")
    run(umoci, "unpack", "--rootless", "--image", layout_ref, tmp_path / "b1")
    run(umoci, "unpack", "--rootless", "--image", f"{image.layout}:{image.tag}", tmp_path / "b2")
    diff = subprocess.run(["diff", "-r", "--no-dereference", tmp_path / "b1/rootfs", tmp_path / "b2/rootfs"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert diff.returncode == 0, diff.stdout + diff.stderr


@pytest.fixture
def loaded(oci_image: OciImage, tmp_path: Path) -> ContentStore:
    """A store holding the test image as example.com/test/app:v1 (loaded from the umoci layout directory)."""
    store = ContentStore(tmp_path / "store")
    skopeo = require_tool("skopeo")
    run(skopeo, "copy", "--quiet", f"oci:{oci_image.layout}:{oci_image.tag}",
        f"oci:{tmp_path / 'named'}:example.com/test/app:v1")  # fmt: skip
    res = archiving.load(tmp_path / "named", store=store)
    assert res.format == "oci"
    assert res.images == (("example.com/test/app:v1", res.images[0][1]),)
    assert res.images[0][1].digest == oci_image.manifest_digest
    assert_valid_image(store, "example.com/test/app:v1")
    return store


def test_save_docker_format_is_read_by_skopeo_and_loads_back(
    loaded: ContentStore, oci_image: OciImage, tmp_path: Path
) -> None:
    out = tmp_path / "img.tar"
    archiving.save(["example.com/test/app:v1"], out, store=loaded)
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= names
    assert manifest[0]["RepoTags"] == ["example.com/test/app:v1"]
    skopeo = require_tool("skopeo")
    run(skopeo, "copy", "--quiet", f"docker-archive:{out}", f"oci:{tmp_path / 'from-docker'}:x")
    _unpack_same(f"{tmp_path / 'from-docker'}:x", oci_image, tmp_path)
    # and back into an empty store, with the same manifest digest
    store2 = ContentStore(tmp_path / "store2")
    msg = io.StringIO()
    res = archiving.load(out, store=store2, progress=LinesOnly(msg))
    assert res.format == "docker"
    assert catalog.resolve(store2, "example.com/test/app:v1").digest == oci_image.manifest_digest
    assert msg.getvalue() == "Loaded image: example.com/test/app:v1\n"
    assert_valid_image(store2, "example.com/test/app:v1")
    assert not store2.fsck()


def test_save_oci_tar_is_read_by_skopeo(loaded: ContentStore, oci_image: OciImage, tmp_path: Path) -> None:
    out = tmp_path / "oci.tar"
    archiving.save(["example.com/test/app:v1"], out, store=loaded, format="oci")
    skopeo = require_tool("skopeo")
    run(skopeo, "copy", "--quiet", f"oci-archive:{out}:v1", f"oci:{tmp_path / 'o'}:x")
    _unpack_same(f"{tmp_path / 'o'}:x", oci_image, tmp_path)
    store2 = ContentStore(tmp_path / "s2")
    with out.open("rb") as f:  # a stream, as from stdin
        res = archiving.load(f, store=store2)
    assert res.images[0] == ("example.com/test/app:v1", res.images[0][1])


def test_load_skopeo_docker_archive(oci_image: OciImage, tmp_path: Path) -> None:
    """skopeo writes the classic docker-save layout (uncompressed layer tars, config by hex)."""
    skopeo = require_tool("skopeo")
    archive = tmp_path / "d.tar"
    run(skopeo, "copy", "--quiet", f"oci:{oci_image.layout}:{oci_image.tag}",
        f"docker-archive:{archive}:example.com/ns/classic:1")  # fmt: skip
    store = ContentStore(tmp_path / "store")
    res = archiving.load(archive, store=store)
    assert res.format in ("docker-classic", "docker")
    desc = catalog.resolve(store, "example.com/ns/classic:1").manifest_desc
    manifest = json.loads(store.get_blob(desc.digest))
    assert manifest["config"]["digest"] == oci_image.config_digest
    assert_valid_image(store, "example.com/ns/classic:1")
    # Round trip through a store-backed save and skopeo: same tree.
    out = tmp_path / "again.tar"
    archiving.save(["example.com/ns/classic:1"], out, store=store)
    run(skopeo, "copy", "--quiet", f"docker-archive:{out}", f"oci:{tmp_path / 'o'}:x")
    _unpack_same(f"{tmp_path / 'o'}:x", oci_image, tmp_path)


def _classic_archive(oci_image: OciImage, path: Path, *, corrupt: bool = False) -> None:
    """The docker < 25 layout: <id>/layer.tar (uncompressed), <id>/VERSION, <config hex>.json, manifest.json."""
    import gzip

    layout = oci_image.layout
    manifest = json.loads((layout / "blobs/sha256" / oci_image.manifest_digest.split(":")[1]).read_bytes())
    config_raw = (layout / "blobs/sha256" / oci_image.config_digest.split(":")[1]).read_bytes()
    with tarfile.open(path, "w") as tf:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        layer_names = []
        for i, layer in enumerate(manifest["layers"]):
            data = gzip.decompress((layout / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes())
            if corrupt and i == 1:
                data = data[:-1] + bytes([data[-1] ^ 1])
            lid = str(sha256(data + str(i).encode())).split(":")[1]
            add(f"{lid}/VERSION", b"1.0")
            add(f"{lid}/json", json.dumps({"id": lid}).encode())
            add(f"{lid}/layer.tar", data)
            layer_names.append(f"{lid}/layer.tar")
        add(f"{oci_image.config_digest.split(':')[1]}.json", config_raw)
        add("manifest.json", json.dumps([{"Config": f"{oci_image.config_digest.split(':')[1]}.json",
                                          "RepoTags": ["classic:old"], "Layers": layer_names}]).encode())  # fmt: skip


def test_load_classic_layout(oci_image: OciImage, tmp_path: Path) -> None:
    archive = tmp_path / "classic.tar"
    _classic_archive(oci_image, archive)
    store = ContentStore(tmp_path / "store")
    res = archiving.load(archive, store=store)
    assert res.format == "docker-classic"
    assert res.images[0][0] == "docker.io/library/classic:old"
    desc = catalog.resolve(store, "classic:old")
    m = json.loads(store.get_blob(desc.digest))
    assert m["config"]["digest"] == oci_image.config_digest
    assert not store.fsck()
    assert_valid_image(store, "classic:old")
    skopeo = require_tool("skopeo")
    run(skopeo, "copy", "--quiet", f"oci:{store.root}:docker.io/library/classic:old", f"oci:{tmp_path / 'o'}:x")
    _unpack_same(f"{tmp_path / 'o'}:x", oci_image, tmp_path)


def test_broken_archives_store_nothing(oci_image: OciImage, loaded: ContentStore, tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "empty")
    before = set(store.list_blobs())
    bad_classic = tmp_path / "bad-classic.tar"
    _classic_archive(oci_image, bad_classic, corrupt=True)
    with pytest.raises(DigestMismatch, match="diff_id"):
        archiving.load(bad_classic, store=store)
    assert set(store.list_blobs()) == before
    assert store.tags() == {}

    # A docker 25+ archive with one flipped byte in the last blob it carries.
    good = tmp_path / "good.tar"
    archiving.save(["example.com/test/app:v1"], good, store=loaded)
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            f = src.extractfile(m)
            data = f.read() if f else b""
            if m.name == f"blobs/sha256/{oci_image.layer_digests[0].split(':')[1]}":
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            dst.addfile(m, io.BytesIO(data) if f else None)
    with pytest.raises(DigestMismatch):
        archiving.load(bad, store=store)
    assert set(store.list_blobs()) == before

    truncated = tmp_path / "trunc.tar"
    truncated.write_bytes(good.read_bytes()[:30_000])
    with pytest.raises(InvalidArchive):
        archiving.load(truncated, store=store)
    assert set(store.list_blobs()) == before
    assert not list((store.root / "imgcore" / "tmp").iterdir())


def test_load_oci_archive_with_bare_tag_is_untagged(oci_image: OciImage, tmp_path: Path) -> None:
    """An OCI archive whose ref.name is only a tag (skopeo's oci-archive:) loads as an untagged image, like docker."""
    skopeo = require_tool("skopeo")
    archive = tmp_path / "bare.tar"
    run(skopeo, "copy", "--quiet", f"oci:{oci_image.layout}:{oci_image.tag}", f"oci-archive:{archive}:v1")
    store = ContentStore(tmp_path / "store")
    msg = io.StringIO()
    res = archiving.load(archive, store=store, progress=LinesOnly(msg))
    assert res.images[0][0] is None
    assert msg.getvalue() == f"Loaded image ID: {oci_image.config_digest}\n"
    assert [d.digest for d in store.index_entries()] == [oci_image.manifest_digest]
    assert store.tags() == {}
