"""Registry-side commands against the real docker-registry, with skopeo as the peer: manifest, config, digest,
tags (``Link`` pages), catalog, delete (on a registry that allows deletes and on one that refuses them)."""

from __future__ import annotations

import json
import subprocess

import pytest

from imgcore import sha256
from imgcore.errors import NotFound, UnsupportedOperation
from imgcore.registry import Credentials
from imgcore.transfer import copy as copying
from imgcore.transfer import remote

from .conftest import OciImage, RecordingProxy, Registry, TokenServer, require_tool, skopeo_push
from .remote_support import MultiArch, imgcore, multiarch, skopeo_inspect

pytestmark = pytest.mark.integration
__all__ = ["multiarch"]  # the fixture, from remote_support


def test_manifest_config_digest_read_what_skopeo_reads(pushed_image: tuple[OciImage, str], registry: Registry) -> None:
    image, ref = pushed_image
    raw = skopeo_inspect(registry, "test/app:v1", "--raw").encode()
    got = imgcore("manifest", ref)
    assert got.returncode == 0, got.stderr
    assert got.stdout == raw
    assert str(sha256(got.stdout)) == image.manifest_digest

    config = imgcore("config", ref)
    assert config.returncode == 0, config.stderr
    assert config.stdout == skopeo_inspect(registry, "test/app:v1", "--config", "--raw").encode()
    assert str(sha256(config.stdout)) == image.config_digest

    digest = imgcore("digest", ref)
    assert digest.stdout.decode() == image.manifest_digest + "\n"
    assert json.loads(skopeo_inspect(registry, "test/app:v1"))["Digest"] == image.manifest_digest
    pinned = imgcore("digest", f"{registry.host}/test/app@{image.manifest_digest}")
    assert pinned.stdout.decode() == image.manifest_digest + "\n"

    with remote.Clients() as clients:
        wrong = "sha256:" + "0" * 64
        with pytest.raises(NotFound):
            remote.digest(f"{registry.host}/test/app@{wrong}", clients)
        with pytest.raises(NotFound):
            remote.manifest(f"{registry.host}/test/app:no-such-tag", clients)
    missing = imgcore("digest", f"{registry.host}/test/app:no-such-tag")
    assert missing.returncode == 1
    assert b"no such manifest" in missing.stderr


def test_index_resolves_to_the_asked_platform(multiarch: MultiArch, registry: Registry) -> None:
    ref = f"{registry.host}/multi/app:multi"
    assert imgcore("digest", ref).stdout.decode().strip() == multiarch.index_digest
    assert str(sha256(imgcore("manifest", ref).stdout)) == multiarch.index_digest
    arm = imgcore("digest", ref, "--platform", "linux/arm64")
    assert arm.stdout.decode().strip() == multiarch.manifests["linux/arm64"]
    manifest = imgcore("manifest", ref, "--platform", "linux/arm64").stdout
    assert str(sha256(manifest)) == multiarch.manifests["linux/arm64"]
    config = imgcore("config", ref, "--platform", "linux/arm64")
    assert str(sha256(config.stdout)) == multiarch.configs["linux/arm64"]
    amd = imgcore("config", ref, "--platform", "linux/amd64")
    assert str(sha256(amd.stdout)) == multiarch.configs["linux/amd64"]
    bad = imgcore("config", ref, "--platform", "linux/s390x")
    assert bad.returncode == 1
    assert b"no manifest for platform linux/s390x" in bad.stderr


def _tagged_repo(registry: Registry, repo: str, tags: list[str], clients: remote.Clients, source: str) -> None:
    """``repo`` with every tag in ``tags`` naming the image at ``source`` (copied once, then tagged)."""
    copying.copy(source, f"{registry.host}/{repo}:{tags[0]}", clients=clients)
    c = clients.get(registry.host)
    m = c.get_manifest(repo, tags[0])
    for t in tags[1:]:
        c.put_manifest(repo, t, m.raw, m.media_type)


def test_tags_follow_link_pages(pushed_image: tuple[OciImage, str], registry: Registry) -> None:
    _, ref = pushed_image
    tags = [f"t{i:02d}" for i in range(7)]
    with remote.Clients() as clients:
        _tagged_repo(registry, "paged/app", tags, clients, ref)
        # distribution 2.8 ignores n= for tags: one page with everything
        assert sorted(remote.list_tags(f"{registry.host}/paged/app", clients, page_size=2)) == tags
    proxy = RecordingProxy(registry.host, paginate_tags=True)
    try:
        with remote.Clients() as clients:
            got = remote.list_tags(f"{proxy.host}/paged/app", clients, page_size=2)
        assert got == tags
        pages = [p for m, p in proxy.requests() if m == "GET" and "/tags/list" in p]
        assert pages[0] == "/v2/paged/app/tags/list?n=2"
        assert len(pages) == 4  # 2 + 2 + 2 + 1
        assert pages[1] == "/v2/paged/app/tags/list?n=2&last=t01"
        out = imgcore("tags", f"{proxy.host}/paged/app", "-n", "3")
        assert out.stdout.decode().split() == tags
    finally:
        proxy.close()
    bad = imgcore("tags", f"{registry.host}/paged/app:t01")
    assert bad.returncode == 1
    assert b"without a tag" in bad.stderr


def test_catalog_pages(pushed_image: tuple[OciImage, str], registry: Registry) -> None:
    _, ref = pushed_image
    with remote.Clients() as clients:
        for name in ("cat/a", "cat/b", "cat/c"):
            copying.copy(ref, f"{registry.host}/{name}:v1", clients=clients)
    proxy = RecordingProxy(registry.host)
    try:
        out = imgcore("catalog", proxy.host, "-n", "1")
        assert out.returncode == 0, out.stderr
        repos = out.stdout.decode().split()
        assert {"cat/a", "cat/b", "cat/c", "test/app"} <= set(repos)
        assert repos == sorted(repos)
        pages = [p for m, p in proxy.requests() if m == "GET" and p.startswith("/v2/_catalog")]
        assert pages[0] == "/v2/_catalog?n=1"
        assert len(pages) >= len(repos)  # one name a page (the registry paginates its catalog)
        whole = imgcore("catalog", registry.host)
        assert whole.stdout.decode().split() == repos
    finally:
        proxy.close()


def test_delete_where_enabled(pushed_image: tuple[OciImage, str], registry: Registry) -> None:
    image, ref = pushed_image
    with remote.Clients() as clients:
        copying.copy(ref, f"{registry.host}/del/app:v1", clients=clients)
    out = imgcore("delete", f"{registry.host}/del/app:v1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == f"Deleted: {registry.host}/del/app@{image.manifest_digest}\n"
    with remote.Clients() as clients:
        with pytest.raises(NotFound):
            remote.digest(f"{registry.host}/del/app:v1", clients)
        # the source repository keeps its own copy: a registry deletes per repository
        assert remote.digest(ref, clients) == image.manifest_digest
    skopeo = require_tool("skopeo")
    gone = subprocess.run([skopeo, "inspect", "--tls-verify=false", f"docker://{registry.host}/del/app:v1"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert gone.returncode != 0
    again = imgcore("delete", f"{registry.host}/del/app@{image.manifest_digest}")
    assert again.returncode == 1
    assert b"no such manifest" in again.stderr


def test_delete_refused_where_disabled(oci_image: OciImage, nodelete_registry: Registry) -> None:
    skopeo_push(oci_image, nodelete_registry, "keep/app:v1")
    ref = f"{nodelete_registry.host}/keep/app:v1"
    with remote.Clients() as clients:
        with pytest.raises(UnsupportedOperation) as info:
            remote.delete(ref, clients)
        assert info.value.status == 405
        assert info.value.code == "UNSUPPORTED"
        assert "storage: delete: enabled: true" in str(info.value)
        assert remote.digest(ref, clients) == oci_image.manifest_digest  # still there
    out = imgcore("delete", ref)
    assert out.returncode == 1
    assert out.stderr.decode().startswith(f"Error: delete manifest {nodelete_registry.host}/keep/app@")
    assert b"does not allow deletes" in out.stderr


def test_delete_with_a_bearer_token_asks_for_the_delete_scope(
    oci_image: OciImage, token_registry: tuple[Registry, TokenServer]
) -> None:
    reg, server = token_registry
    skopeo_push(oci_image, reg, "tok/del:v1")
    with remote.Clients(credentials={reg.host: Credentials("bob", "tok-pw")}) as clients:
        assert remote.delete(f"{reg.host}/tok/del:v1", clients) == oci_image.manifest_digest
        with pytest.raises(NotFound):
            remote.digest(f"{reg.host}/tok/del:v1", clients)
    assert any("repository%3Atok%2Fdel%3Adelete" in q for q, _ in server.requests)
