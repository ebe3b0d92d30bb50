"""Docker-typed images (schema 2, most of Docker Hub) are readable by every tool as ``oci:<root>:<ref>``.

The store records a docker schema 2 manifest through its OCI twin (same config and layer blobs, OCI media types)
and keeps the original's digest on the ``index.json`` entry (``io.imgcore.original-manifest``): skopeo and umoci
read the twin, ``push`` and ``images --digests`` use the original. The image is pushed to the loopback registry
by skopeo with ``--format v2s2``. Needs skopeo, umoci and docker-registry (fails under CI=true when missing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcore.gc import collect
from imgcore.image import catalog
from imgcore.models import DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, ORIGINAL_MANIFEST, REF_NAME
from imgcore.registry.client import RegistryClient
from imgcore.store import ContentStore
from imgcore.transfer import archive, pull, push
from tests.integration.conftest import OciImage, Registry, require_tool, run, skopeo_push
from tests.validate import assert_valid_image

pytestmark = pytest.mark.integration


def imgcore_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgcore", "--root", str(root), *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def v2s2(oci_image: OciImage, registry: Registry) -> tuple[str, str]:
    """The test image pushed by skopeo as docker schema 2; returns (reference, registry manifest digest)."""
    skopeo_push(oci_image, registry, "docker/app:v2", "--format", "v2s2")
    client = RegistryClient(registry.host)
    resp = client.get_manifest("docker/app", "v2")
    assert json.loads(resp.raw)["mediaType"] == DOCKER_MANIFEST
    return f"{registry.host}/docker/app:v2", resp.digest


def _entry(store: ContentStore, ref: str) -> dict[str, object]:
    index = json.loads((store.root / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if (m.get("annotations") or {}).get(REF_NAME) == ref]
    return entry  # type: ignore[no-any-return]


def test_a_pulled_schema2_image_is_recorded_through_its_oci_twin(tmp_path, v2s2, registry):
    ref, digest = v2s2
    store = ContentStore(tmp_path / "store")
    result = pull.pull(ref, store=store)
    assert result.digest == digest
    entry = _entry(store, ref)
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["annotations"][ORIGINAL_MANIFEST] == digest  # type: ignore[index]
    twin = json.loads(store.get_blob(str(entry["digest"])))
    original = json.loads(store.get_blob(digest))
    assert twin["config"]["mediaType"] == OCI_CONFIG
    assert {layer["mediaType"] for layer in twin["layers"]} == {OCI_LAYER_GZIP}
    assert [x["digest"] for x in twin["layers"]] == [x["digest"] for x in original["layers"]]
    assert twin["config"]["digest"] == original["config"]["digest"]
    assert_valid_image(store, ref)
    img = catalog.resolve(store, ref)
    assert img.original is not None
    assert img.original.digest == digest
    assert catalog.resolve(store, f"{ref.rsplit(':', 1)[0]}@{digest}").id == img.id  # the registry digest names it

    # every tool reads it as oci:<root>:<ref>
    skopeo, umoci = require_tool("skopeo"), require_tool("umoci")
    inspected = json.loads(run(skopeo, "inspect", f"oci:{store.root}:{ref}").stdout)
    assert inspected["Layers"] == [x["digest"] for x in original["layers"]]
    run(skopeo, "copy", "--quiet", f"oci:{store.root}:{ref}", f"dir:{tmp_path / 'dir'}")
    assert json.loads((tmp_path / "dir" / "manifest.json").read_text())["mediaType"] == OCI_MANIFEST
    run(umoci, "unpack", "--rootless", "--image", f"{store.root}:{ref}", tmp_path / "bundle")
    assert (tmp_path / "bundle" / "rootfs" / "app" / "main.txt").is_file()

    # images --digests and --format json show the registry's digest
    out = imgcore_cli(store.root, "images", "--digests")
    assert out.returncode == 0, out.stderr
    assert digest in out.stdout
    js = imgcore_cli(store.root, "images", "--format", "json")
    assert json.loads(js.stdout.splitlines()[0])["Digest"] == digest

    # prune keeps both documents; a second pull is up to date
    collect.prune(store)
    assert store.has_blob(digest)
    assert store.has_blob(str(entry["digest"]))
    assert pull.pull(ref, store=store).status.startswith("Image is up to date")

    # a re-tag keeps the original, rmi of the last tag removes both
    catalog.tag(store, ref, "copy:1")
    assert catalog.resolve(store, "copy:1").original == img.original
    collect.remove_image(store, ref)
    collect.remove_image(store, "copy:1")
    assert not store.has_blob(digest)
    assert not store.has_blob(str(entry["digest"]))


def test_push_sends_the_original_bytes_and_keeps_the_digest(tmp_path, v2s2, registry):
    ref, digest = v2s2
    store = ContentStore(tmp_path / "store")
    pull.pull(ref, store=store)
    target = f"{registry.host}/docker/copy:v2"
    catalog.tag(store, ref, target)
    result = push.push(target, store=store)
    assert result.digest == digest
    resp = RegistryClient(registry.host).get_manifest("docker/copy", "v2")
    assert resp.digest == digest
    assert resp.raw == store.get_blob(digest)


def test_save_and_load_keep_the_docker_manifest_and_the_twin(tmp_path, v2s2):
    ref, digest = v2s2
    store = ContentStore(tmp_path / "store")
    pull.pull(ref, store=store)
    tar = tmp_path / "img.tar"
    archive.save([ref], tar, store=store)
    other = ContentStore(tmp_path / "other")
    archive.load(tar, store=other)
    entry = _entry(other, ref)
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["annotations"][ORIGINAL_MANIFEST] == digest  # type: ignore[index]
    assert_valid_image(other, ref)
    skopeo = require_tool("skopeo")
    run(skopeo, "inspect", f"oci:{other.root}:{ref}")
    oci_tar = tmp_path / "oci.tar"
    archive.save([ref], oci_tar, store=store, format="oci")  # an OCI archive carries the OCI twin
    run(skopeo, "inspect", f"oci-archive:{oci_tar}:{ref.rsplit(':', 1)[1]}")


def test_fsck_repair_converts_an_older_stores_docker_entries(tmp_path, v2s2):
    ref, digest = v2s2
    store = ContentStore(tmp_path / "store")
    pull.pull(ref, store=store)
    # as a store written before the twins: the tag points straight at the docker manifest
    store.update_index(lambda ms: [{"mediaType": DOCKER_MANIFEST, "digest": digest, "size": store.blob_size(digest),
                                    "annotations": {REF_NAME: ref}}])  # fmt: skip
    skopeo = require_tool("skopeo")
    refused = subprocess.run([skopeo, "inspect", f"oci:{store.root}:{ref}"], capture_output=True, text=True)
    assert refused.returncode != 0  # what the issue reproduced: "no descriptor found for reference"
    out = imgcore_cli(store.root, "fsck", "--repair")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"CONVERTED index.json: {ref}: docker manifest {digest}" in out.stdout
    entry = _entry(store, ref)
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["annotations"][ORIGINAL_MANIFEST] == digest  # type: ignore[index]
    run(skopeo, "inspect", f"oci:{store.root}:{ref}")
    assert catalog.resolve(store, ref).distribution_digest == digest
    assert "CONVERTED" not in imgcore_cli(store.root, "fsck", "--repair").stdout  # once
