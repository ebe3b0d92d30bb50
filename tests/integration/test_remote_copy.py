"""``copy`` registry to registry against the real docker-registry, skopeo reading what it wrote: digests kept,
blobs streamed and verified, skipped, mounted, ``--all-tags``, platforms of an index, credentials kept apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imgcore as imgcore_api
from imgcore import sha256
from imgcore.errors import DigestMismatch
from imgcore.registry import Credentials
from imgcore.transfer import copy as copying
from imgcore.transfer import remote

from ..conftest import LONG
from .conftest import FaultProxy, OciImage, RecordingProxy, Registry, TokenServer, skopeo_push
from .remote_support import MultiArch, imgcore, multiarch, skopeo_inspect

pytestmark = pytest.mark.integration
__all__ = ["multiarch"]  # the fixture, from remote_support


def image_size(image: OciImage, digest: str) -> int:
    return (image.layout / "blobs" / "sha256" / digest.split(":", 1)[1]).stat().st_size


def _skopeo_sees(registry: Registry, ref: str, image: OciImage) -> None:
    """skopeo reads ``ref`` back with the original's manifest digest, layers and config."""
    info = json.loads(skopeo_inspect(registry, ref))
    assert info["Digest"] == image.manifest_digest
    assert info["Layers"] == image.layer_digests
    raw = skopeo_inspect(registry, ref, "--raw").encode()
    assert str(sha256(raw)) == image.manifest_digest
    config = skopeo_inspect(registry, ref, "--config", "--raw").encode()
    assert str(sha256(config)) == image.config_digest


@pytest.mark.parametrize("chunk_size", [None, 65_536])
def test_copy_between_registries_streams_and_keeps_digests(
    pushed_image: tuple[OciImage, str], registry: Registry, tls_registry: Registry, chunk_size: int | None
) -> None:
    image, ref = pushed_image
    dest = f"copied/{'chunked' if chunk_size else 'mono'}:v1"
    creds = {tls_registry.host: Credentials("alice", "s3cret-pw")}
    with remote.Clients(credentials=creds, ca_file=tls_registry.ca_file) as clients:
        [res] = copying.copy(ref, f"{tls_registry.host}/{dest}", clients=clients, chunk_size=chunk_size)
        assert res.digest == image.manifest_digest
        assert {b.digest: b.status for b in res.blobs} == dict.fromkeys(
            [image.config_digest, *image.layer_digests], "copied"
        )
        assert res.copied_bytes == sum(b.size for b in res.blobs)
        _skopeo_sees(tls_registry, dest, image)
        # again: the destination has the manifest, so nothing is walked or moved
        [again] = copying.copy(ref, f"{tls_registry.host}/{dest}", clients=clients, chunk_size=chunk_size)
        assert again.digest == image.manifest_digest
        assert again.blobs == ()


def test_copy_in_one_registry_mounts_and_skips(pushed_image: tuple[OciImage, str], registry: Registry) -> None:
    image, _ = pushed_image
    proxy = RecordingProxy(registry.host)
    try:
        src = f"{proxy.host}/test/app:v1"
        out = imgcore("copy", src, f"{proxy.host}/mounted/app:v2")
        assert out.returncode == 0, out.stderr
        assert out.stdout.decode() == f"{proxy.host}/mounted/app:v2@{image.manifest_digest}\n"
        lines = out.stderr.decode().splitlines()
        for d in image.layer_digests:
            assert f"{d.split(':')[1][:12]}: Mounted from test/app" in lines
        mounts = [p for m, p in proxy.requests() if m == "POST" and "mount=" in p]
        assert len(mounts) == 3  # config and both layers
        assert all(p.startswith("/v2/mounted/app/blobs/uploads/?mount=sha256%3A") and "from=test%2Fapp" in p
                   for p in mounts)  # fmt: skip
        assert not [p for m, p in proxy.requests() if m in ("PUT", "PATCH") and "/blobs/" in p]
        assert not [p for m, p in proxy.requests() if m == "GET" and "/blobs/" in p]  # no byte went through us
        _skopeo_sees(registry, "mounted/app:v2", image)

        # Once more into the same repository: the registry answers each mount 201 at once, nothing else moves.
        proxy.clear()
        with remote.Clients() as clients:
            [res] = copying.copy(src, f"{proxy.host}/mounted/app:v3", clients=clients)
        assert res.blobs == ()  # the destination had the manifest: its blobs were not even asked about
        assert [m for m, _ in proxy.requests()] == ["GET", "GET", "HEAD", "PUT"]  # /v2/, manifest, HEAD, PUT
    finally:
        proxy.close()


def test_copy_skips_blobs_the_other_registry_has(
    pushed_image: tuple[OciImage, str], registry: Registry, nodelete_registry: Registry
) -> None:
    image, ref = pushed_image
    proxy = RecordingProxy(nodelete_registry.host)
    try:
        with remote.Clients() as clients:
            first = image.layer_digests[0]
            data = (image.layout / "blobs" / "sha256" / first.split(":", 1)[1]).read_bytes()
            clients.get(proxy.host).upload_blob("partial/app", first, len(data), data)
            proxy.clear()
            [res] = copying.copy(ref, f"{proxy.host}/partial/app:v1", clients=clients)
        status = {b.digest: b.status for b in res.blobs}
        assert status == {first: "exists", image.layer_digests[1]: "copied", image.config_digest: "copied"}
        assert [p for m, p in proxy.requests() if m == "HEAD" and first in p] == [f"/v2/partial/app/blobs/{first}"]
        uploads = [p for m, p in proxy.requests() if m == "PUT" and "/blobs/uploads/" in p]
        assert len(uploads) == 2
        assert not [p for p in uploads if first.split(":", 1)[1] in p]
        _skopeo_sees(nodelete_registry, "partial/app:v1", image)
    finally:
        proxy.close()


def test_copy_aborts_the_upload_when_the_source_is_corrupt(
    pushed_image: tuple[OciImage, str], fault_proxy: FaultProxy, tls_registry: Registry
) -> None:
    image, _ = pushed_image
    bad = image.layer_digests[0]
    fault_proxy.corrupt.add(bad)
    creds = {tls_registry.host: Credentials("alice", "s3cret-pw")}
    with remote.Clients(credentials=creds, ca_file=tls_registry.ca_file) as clients:
        with pytest.raises(DigestMismatch) as info:
            copying.copy(f"{fault_proxy.host}/test/app:v1", f"{tls_registry.host}/corrupt/app:v1", clients=clients)
        assert info.value.expected == bad
        assert "upload aborted" in str(info.value)
        dst = clients.get(tls_registry.host)
        assert dst.blob_size("corrupt/app", bad) is None  # never completed
        assert dst.head_manifest("corrupt/app", "v1") is None  # no manifest naming a missing blob


def test_copy_all_tags_and_platforms(multiarch: MultiArch, pushed_image: tuple[OciImage, str],
                                     registry: Registry, basic_registry: Registry) -> None:  # fmt: skip
    _, ref = pushed_image
    creds = {basic_registry.host: Credentials("carol", "basic-pw-42")}
    with remote.Clients(credentials=creds) as clients:
        src = clients.get(registry.host)
        m = src.get_manifest("multi/app", "multi")
        src.put_manifest("multi/app", "also", m.raw, m.media_type)
        copying.copy(ref, f"{registry.host}/multi/app:single", clients=clients)
        tags = sorted(remote.list_tags(f"{registry.host}/multi/app", clients))
        assert tags == ["also", "multi", "single"]

        results = copying.copy(f"{registry.host}/multi/app", f"{basic_registry.host}/mirror/app", clients=clients,
                               all_tags=True)  # fmt: skip
        assert sorted(r.destination.rsplit(":", 1)[1] for r in results) == tags
        dst = clients.get(basic_registry.host)
        assert sorted(dst.list_tags("mirror/app")) == tags
        for t in tags:
            assert remote.digest(f"{basic_registry.host}/mirror/app:{t}", clients) == remote.digest(
                f"{registry.host}/multi/app:{t}", clients
            )
        assert results[0].digest == multiarch.index_digest or results[1].digest == multiarch.index_digest
        for digest in multiarch.manifests.values():  # every platform's manifest went with the index
            assert dst.head_manifest("mirror/app", digest) is not None
        raw = skopeo_inspect(basic_registry, "mirror/app:multi", "--raw").encode()
        assert str(sha256(raw)) == multiarch.index_digest
        arm = skopeo_inspect(basic_registry, "mirror/app:multi", "--override-arch", "arm64", "--config", "--raw")
        assert str(sha256(arm.encode())) == multiarch.configs["linux/arm64"]

        # One platform: the tag names that platform's manifest and the other is not copied.
        out = imgcore("copy", "--platform", "linux/arm64", f"{registry.host}/multi/app:multi",
                      f"{registry.host}/arm-only/app:v1")  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert remote.digest(f"{registry.host}/arm-only/app:v1", clients) == multiarch.manifests["linux/arm64"]
        assert src.head_manifest("arm-only/app", multiarch.manifests["linux/amd64"]) is None
        assert src.head_manifest("arm-only/app", multiarch.index_digest) is None
        both = imgcore("copy", "--platform", "linux/arm64", "--all-platforms", f"{registry.host}/multi/app:multi",
                       f"{registry.host}/arm-only/app:v2")  # fmt: skip
        assert both.returncode == 1
        assert b"exclude each other" in both.stderr
        tagged = imgcore("copy", "--all-tags", f"{registry.host}/multi/app:multi", f"{registry.host}/x/y")
        assert tagged.returncode == 1
        assert b"without a tag" in tagged.stderr


def test_credentials_stay_with_their_registry(
    oci_image: OciImage, registry: Registry, basic_registry: Registry, token_registry: tuple[Registry, TokenServer]
) -> None:
    tok, server = token_registry
    skopeo_push(oci_image, basic_registry, "secret/app:v1")
    skopeo_push(oci_image, tok, "tokcopy/app:v1")
    plain = RecordingProxy(registry.host)
    asked_before = len(server.requests)
    creds = {basic_registry.host: Credentials("carol", "basic-pw-42"), tok.host: Credentials("bob", "tok-pw")}
    try:
        with remote.Clients(credentials=creds) as clients:
            copying.copy(f"{basic_registry.host}/secret/app:v1", f"{plain.host}/from-basic/app:v1", clients=clients)
            copying.copy(f"{tok.host}/tokcopy/app:v1", f"{plain.host}/from-token/app:v1", clients=clients)
            copying.copy(f"{plain.host}/from-basic/app:v1", f"{basic_registry.host}/back/app:v1", clients=clients)
            copying.copy(f"{plain.host}/from-token/app:v1", f"{tok.host}/back/app:v1", clients=clients)
            for where in (f"{basic_registry.host}/back/app:v1", f"{tok.host}/back/app:v1"):
                assert remote.digest(where, clients) == oci_image.manifest_digest
        assert plain.seen  # every request to the plain registry went through the proxy
        assert [p for _, p, h in plain.seen if any(k.lower() == "authorization" for k in h)] == []
        uploads = [p for m, p, _ in plain.seen if m == "PUT" and "/blobs/uploads/" in p]
        assert len(uploads) >= 6  # both images' blobs streamed into the plain registry through the proxy
        mine = server.requests[asked_before:]
        assert mine
        assert all(auth for _, auth in mine)  # every token asked for with bob's credentials
    finally:
        plain.close()
    _skopeo_sees(basic_registry, "back/app:v1", oci_image)


def test_copy_by_digest_and_to_a_digest(pushed_image: tuple[OciImage, str], registry: Registry, tmp_path: Path) -> None:
    image, _ = pushed_image
    with remote.Clients() as clients:
        src = f"{registry.host}/test/app@{image.manifest_digest}"
        [res] = copying.copy(src, f"{registry.host}/bydigest/app@{image.manifest_digest}", clients=clients)
        assert res.destination == f"{registry.host}/bydigest/app@{image.manifest_digest}"
        assert clients.get(registry.host).head_manifest("bydigest/app", image.manifest_digest) is not None
        assert clients.get(registry.host).head_manifest("bydigest/app", "latest") is None  # no tag was written
        wrong = "sha256:" + "1" * 64
        with pytest.raises(ValueError, match="the source is"):
            copying.copy(src, f"{registry.host}/bydigest/app@{wrong}", clients=clients)


def test_copy_starts_a_blob_again_when_the_source_drops(
    pushed_image: tuple[OciImage, str], fault_proxy: FaultProxy, nodelete_registry: Registry
) -> None:
    image, _ = pushed_image
    big = image.layer_digests[0]
    fault_proxy.cut_after[big] = 100_000
    fault_proxy.cuts_left[big] = 2
    dst = RecordingProxy(nodelete_registry.host)
    try:
        with remote.Clients() as clients:
            clients.get(fault_proxy.host).backoff = 0.01
            [res] = copying.copy(f"{fault_proxy.host}/test/app:v1", f"{dst.host}/dropped/app:v1", clients=clients)
        assert res.digest == image.manifest_digest
        assert [m for m, p, _ in fault_proxy.requests if m == "GET" and p.endswith(big)] == ["GET"] * 3
        # two abandoned sessions were cancelled, the third completed
        cancelled = [p for m, p in dst.requests() if m == "DELETE" and "/blobs/uploads/" in p]
        assert len(cancelled) == 2
        # three PUTs began; the two whose source dropped never completed (their bodies stopped short)
        assert len([p for m, p in dst.requests() if m == "PUT" and big.split(":", 1)[1] in p]) == 3
        assert clients.get(dst.host).blob_size("dropped/app", big) == image_size(image, big)
        _skopeo_sees(nodelete_registry, "dropped/app:v1", image)
    finally:
        dst.close()


def test_front_door_registry(pushed_image: tuple[OciImage, str], registry: Registry, basic_registry: Registry) -> None:
    image, ref = pushed_image
    with imgcore_api.Registry(credentials={basic_registry.host: Credentials("carol", "basic-pw-42")}) as reg:
        [res] = reg.copy(ref, f"{basic_registry.host}/door/app:v1")
        assert isinstance(res, copying.CopyResult)
        assert res.digest == image.manifest_digest
        assert reg.digest(f"{basic_registry.host}/door/app:v1") == image.manifest_digest
        assert str(sha256(reg.manifest(f"{basic_registry.host}/door/app:v1"))) == image.manifest_digest
        assert str(sha256(reg.config(f"{basic_registry.host}/door/app:v1"))) == image.config_digest
        assert reg.tags(f"{basic_registry.host}/door/app") == ["v1"]
        assert "door/app" in reg.catalog(basic_registry.host)
        synced = reg.sync(f"{basic_registry.host}/door/app", f"{registry.host}/door-mirror/app")
        assert [r.digest for r in synced.copied] == [image.manifest_digest]
        assert reg.sync(f"{basic_registry.host}/door/app", f"{registry.host}/door-mirror/app").unchanged == ("v1",)
        assert reg.delete(f"{registry.host}/door-mirror/app:v1") == image.manifest_digest
    again = imgcore_api.copy(ref, f"{registry.host}/door-mirror/app:v2")
    assert again[0].digest == image.manifest_digest
    other = imgcore_api.sync(f"{registry.host}/door-mirror/app", f"{registry.host}/door-other/app")
    assert [r.destination for r in other.copied] == [f"{registry.host}/door-other/app:v2"]


def test_copy_mounts_with_a_bearer_token(oci_image: OciImage, token_registry: tuple[Registry, TokenServer]) -> None:
    reg, server = token_registry
    skopeo_push(oci_image, reg, "tokmount/src:v1")
    asked_before = len(server.requests)
    with remote.Clients(credentials={reg.host: Credentials("bob", "tok-pw")}) as clients:
        [res] = copying.copy(f"{reg.host}/tokmount/src:v1", f"{reg.host}/tokmount/dst:v1", clients=clients)
        assert {b.status for b in res.blobs} == {"mounted"}
        assert remote.digest(f"{reg.host}/tokmount/dst:v1", clients) == oci_image.manifest_digest
    # one token for the mounts: push on the destination and pull on the source, asked for together
    scopes = [q for q, _ in server.requests[asked_before:]]
    assert any("repository%3Atokmount%2Fdst%3Apull%2Cpush" in q and "repository%3Atokmount%2Fsrc%3Apull" in q
               for q in scopes)  # fmt: skip


def test_copy_all_tags_of_one_index_under_many_tags(multiarch: MultiArch, registry: Registry,
                                                    nodelete_registry: Registry) -> None:  # fmt: skip
    """Tags copied four at a time that name one index: docker-registry rewrites a manifest's link on every PUT,
    so overlapping PUTs of the index's children made the index PUT fail (DIGEST_INVALID) about one time in 5."""
    with remote.Clients() as clients:
        src = clients.get(registry.host)
        idx = src.get_manifest("multi/app", "multi")
        tags = [f"i{i:02d}" for i in range(12)]
        copying.copy(f"{registry.host}/multi/app:multi", f"{registry.host}/manyidx/app:{tags[0]}", clients=clients)
        for t in tags[1:]:
            src.put_manifest("manyidx/app", t, idx.raw, idx.media_type)
        for round_ in range(30 if LONG else 6):
            results = copying.copy(f"{registry.host}/manyidx/app", f"{nodelete_registry.host}/many{round_}/app",
                                   clients=clients, all_tags=True)  # fmt: skip
            assert sorted(r.digest for r in results) == [multiarch.index_digest] * len(tags)
