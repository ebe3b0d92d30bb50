"""Foreign layers (descriptors with ``urls``): the registry lacks the blob, pull fetches it from the URL with its
digest and size checked and without the registry's credentials, an allow-list restricts the URLs, and push
leaves the layer out (the manifest keeps its descriptor), as docker does.

The registry is docker-registry on loopback with htpasswd auth and ``validation.manifests.urls.allow`` (it refuses
manifests with URLs otherwise); the foreign blob is served by a loopback HTTP server that records every
``Authorization`` header it gets. The image is ``tests/vectors/make_odd_images.py``'s ``foreign``, pushed by
skopeo (which skips foreign layers). Needs skopeo and docker-registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgcore.errors import DigestMismatch, NotFound, RegistryError, SizeMismatch
from imgcore.image import catalog
from imgcore.models import DOCKER_FOREIGN_LAYER, OCI_LAYER_NONDIST_GZIP
from imgcore.registry import Credentials, RegistryClient
from imgcore.store import ContentStore
from imgcore.transfer import pull, push
from tests.integration.conftest import HostileServer, Registry, require_tool, run, start_registry
from tests.validate import assert_valid_image
from tests.vectors import make_odd_images as odd

pytestmark = pytest.mark.integration

USER, PASSWORD = "carol", "foreign-pw"
URL_VALIDATION = ("validation:", "  manifests:", "    urls:", "      allow:", "        - ^https?://")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, HostileServer, odd.Made, str]]:
    server = HostileServer("serve")
    tmp = tmp_path_factory.mktemp("foreign")
    reg = start_registry(tmp / "registry", user=USER, password=PASSWORD, extra=URL_VALIDATION)
    made = odd.foreign(tmp / "corpus", f"{server.url}/blob/")
    digest = made.facts["foreign_digest"]
    server.blobs[digest] = (made.facts["foreign_blobs"] / digest[7:]).read_bytes()
    src = odd.skopeo_dir(made.layout, made.refs["v1"], tmp / "dir")
    ref = f"{reg.host}/odd/foreign:v1"
    run(require_tool("skopeo"), "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", f"{USER}:{PASSWORD}",
        f"dir:{src}", f"docker://{ref}")  # fmt: skip
    yield reg, server, made, ref
    reg.stop()
    server.close()


def _client(reg: Registry) -> RegistryClient:
    return RegistryClient(reg.host, credentials=Credentials(USER, PASSWORD))


def test_the_registry_lacks_the_foreign_blob(setup):
    reg, _, made, _ = setup
    assert _client(reg).blob_size("odd/foreign", made.facts["foreign_digest"]) is None
    with pytest.raises(NotFound):
        _client(reg).get_blob("odd/foreign", made.facts["foreign_digest"])


def test_pull_fetches_foreign_layers_from_their_urls_without_credentials(tmp_path, setup, podman_vfs):
    reg, server, made, ref = setup
    server.seen.clear()
    store = ContentStore(tmp_path / "store")
    result = pull.pull(ref, store=store, client=_client(reg))
    digest = made.facts["foreign_digest"]
    assert store.has_blob(digest)
    assert [(m, p) for m, p, _ in server.seen] == [("GET", f"/blob/{digest}")]
    assert server.authorizations() == []  # the registry's credentials never went to the URL's host
    assert result.digest == made.refs["v1"]["digest"]
    assert_valid_image(store, ref)
    img = catalog.resolve(store, ref)
    assert img.manifest.layers[0].media_type == OCI_LAYER_NONDIST_GZIP  # the OCI twin's type for it
    assert img.manifest.layers[0].urls == (f"{server.url}/blob/{digest}",)
    assert img.original is not None
    orig = json.loads(store.get_blob(img.original.digest))
    assert orig["layers"][0]["mediaType"] == DOCKER_FOREIGN_LAYER

    # the other tools read it from the store, foreign layer included
    skopeo, umoci = require_tool("skopeo"), require_tool("umoci")
    info = json.loads(run(skopeo, "inspect", f"oci:{store.root}:{ref}").stdout)
    assert info["Layers"][0] == digest
    run(umoci, "unpack", "--rootless", "--image", f"{store.root}:{ref}", tmp_path / "bundle")
    assert (tmp_path / "bundle" / "rootfs" / "etc" / "os-release").read_text() == "NAME=foreign-base\n"
    assert (tmp_path / "bundle" / "rootfs" / "app" / "hello.txt").is_file()
    assert run(*podman_vfs, "pull", "-q", podman_vfs.oci(store.root, ref)).stdout.strip() == img.id.partition(":")[2]

    # push leaves the foreign layer out and keeps the manifest (and its digest) as it was
    pushed = push.push(f"{reg.host}/odd/again:v1", source=ref, store=store, client=_client(reg))
    assert dict(pushed.layers)[digest] == "Skipped foreign layer"
    assert pushed.digest == made.refs["v1"]["digest"]
    assert _client(reg).blob_size("odd/again", digest) is None


def test_the_allow_list_and_the_checks(tmp_path, setup, monkeypatch):
    reg, server, made, ref = setup
    digest = made.facts["foreign_digest"]
    store = ContentStore(tmp_path / "store")
    with pytest.raises(RegistryError, match=r"foreign layer and it has no URL allowed by 'https://mirror\\.example/"):
        pull.pull(ref, store=store, client=_client(reg), foreign_urls=r"https://mirror\.example/.*")
    monkeypatch.setenv(pull.FOREIGN_URLS_ENV, r"http://nowhere\.invalid/.*")
    with pytest.raises(RegistryError, match="no URL allowed"):
        pull.pull(ref, store=store, client=_client(reg))
    assert store.tags() == {}
    good = server.blobs[digest]
    try:
        server.blobs[digest] = bytes([good[0] ^ 1]) + good[1:]
        with pytest.raises(DigestMismatch):
            pull.pull(ref, store=store, client=_client(reg), foreign_urls=r"http://127\.0\.0\.1:\d+/blob/.*")
        server.blobs[digest] = good + b"x" * 100_000  # bounded: cut at the descriptor's size
        with pytest.raises(SizeMismatch):
            pull.pull(ref, store=store, client=_client(reg), foreign_urls=r"http://127\.0\.0\.1:\d+/blob/.*")
    finally:
        server.blobs[digest] = good
    assert not store.has_blob(digest)
    assert store.tags() == {}


def test_cli_allow_foreign_url(tmp_path, setup):
    reg, _, _, ref = setup
    env = {**os.environ, "IMGCORE_CONFIG": str(tmp_path / "cfg")}
    env.pop(pull.FOREIGN_URLS_ENV, None)
    cli = [sys.executable, "-m", "imgcore", "--root", str(tmp_path / "store")]
    login = subprocess.run([*cli, "login", "-u", USER, "--password-stdin", reg.host], input=PASSWORD + "\n",
                           capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert login.returncode == 0, login.stderr
    refused = subprocess.run([*cli, "pull", "--allow-foreign-url", r"https://.*", ref],
                             capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert refused.returncode == 1
    assert "no URL allowed by 'https://.*'" in refused.stderr
    ok = subprocess.run([*cli, "pull", "--allow-foreign-url", r"http://127\.0\.0\.1:[0-9]+/blob/.*", ref],
                        capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "Downloaded newer image" in ok.stdout
    assert Path(tmp_path / "store" / "index.json").is_file()
