"""Credentials go only where they belong (issue 10 item 3), against real docker-registries and a hostile host.

A reverse proxy in front of the registry turns blob downloads into 307 redirects to another loopback host (as
registries redirect to a CDN), and upload ``Location`` URLs into URLs on that host. That host records every
``Authorization`` header it receives: it must never see one, whether it asks for Basic credentials, asks for a
token from a realm of its own, or simply serves the bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imgcore.errors import AuthError
from imgcore.registry import Credentials, RegistryClient
from imgcore.store import ContentStore
from imgcore.transfer import pull as pulling
from imgcore.transfer import push as pushing

from .conftest import HostileServer, OciImage, RedirectProxy, Registry, skopeo_push

pytestmark = pytest.mark.integration


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


def _blobs(image: OciImage) -> dict[str, bytes]:
    return {d: (image.layout / "blobs" / "sha256" / d.split(":", 1)[1]).read_bytes()
            for d in [*image.layer_digests, image.config_digest]}  # fmt: skip


@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_basic_credentials_never_reach_a_redirect_target(
    mode: str, oci_image: OciImage, basic_registry: Registry, hostile: HostileServer, tmp_path: Path
) -> None:
    skopeo_push(oci_image, basic_registry, "cred/app:v1")
    hostile.mode = mode
    proxy = RedirectProxy(basic_registry.host, hostile)
    try:
        client = RegistryClient(proxy.host, credentials=Credentials("carol", "basic-pw-42"), retries=1, backoff=0.01)
        with pytest.raises(AuthError) as exc:
            pulling.pull(f"{proxy.host}/cred/app:v1", store=ContentStore(tmp_path / "s"), client=client)
    finally:
        proxy.close()
    assert hostile.seen, "the proxy did not redirect anything to the hostile host"
    assert hostile.authorizations() == []
    assert not any(path.startswith("/token") for _, path, _ in hostile.seen)  # its realm was never asked
    assert hostile.host in str(exc.value)
    assert "no credentials were sent" in str(exc.value)
    assert "basic-pw-42" not in str(exc.value)
    # the registry itself did get (and accept) the credentials: the manifest came through the proxy
    assert any("/manifests/" in p for _, p in proxy.seen)


def test_bearer_token_never_reaches_a_redirect_target(
    oci_image: OciImage, token_registry: tuple[Registry, object], hostile: HostileServer, tmp_path: Path
) -> None:
    reg, server = token_registry
    skopeo_push(oci_image, reg, "tok/cred:v1")
    hostile.mode = "bearer"
    proxy = RedirectProxy(reg.host, hostile)
    try:
        client = RegistryClient(proxy.host, credentials=Credentials("bob", "tok-pw"), retries=1, backoff=0.01)
        with pytest.raises(AuthError, match=hostile.host.replace(".", r"\.")):
            pulling.pull(f"{proxy.host}/tok/cred:v1", store=ContentStore(tmp_path / "s"), client=client)
    finally:
        proxy.close()
    assert hostile.seen
    assert hostile.authorizations() == []
    assert [p for _, p, _ in hostile.seen if p.startswith("/token")] == []
    assert any(had_auth for _, had_auth in server.requests)  # type: ignore[attr-defined]  # the real realm was used


def test_redirected_download_succeeds_without_credentials(
    oci_image: OciImage, basic_registry: Registry, hostile: HostileServer, tmp_path: Path
) -> None:
    skopeo_push(oci_image, basic_registry, "cred/app:v1")
    hostile.mode = "serve"
    hostile.blobs = _blobs(oci_image)
    proxy = RedirectProxy(basic_registry.host, hostile)
    try:
        client = RegistryClient(proxy.host, credentials=Credentials("carol", "basic-pw-42"))
        store = ContentStore(tmp_path / "s")
        result = pulling.pull(f"{proxy.host}/cred/app:v1", store=store, client=client)
    finally:
        proxy.close()
    assert result.digest == oci_image.manifest_digest
    assert not store.fsck()
    served = {p.split("/blob/", 1)[1] for _, p, _ in hostile.seen}
    assert served == set(hostile.blobs)  # every blob came from the redirect target...
    assert hostile.authorizations() == []  # ...and none with the registry's credentials


def test_upload_location_on_another_host_gets_no_authorization(
    oci_image: OciImage, basic_registry: Registry, hostile: HostileServer, tmp_path: Path
) -> None:
    skopeo_push(oci_image, basic_registry, "cred/app:v1")
    creds = Credentials("carol", "basic-pw-42")
    store = ContentStore(tmp_path / "s")
    pulling.pull(f"{basic_registry.host}/cred/app:v1", store=store,
                      client=RegistryClient(basic_registry.host, credentials=creds))  # fmt: skip
    hostile.mode = "basic"
    proxy = RedirectProxy(basic_registry.host, hostile)
    try:
        client = RegistryClient(proxy.host, credentials=creds, retries=1, backoff=0.01)
        with pytest.raises(AuthError) as exc:
            pushing.push(f"{proxy.host}/other/app:v1", source=f"{basic_registry.host}/cred/app:v1",
                              store=store, client=client)  # fmt: skip
    finally:
        proxy.close()
    uploads = [(m, p) for m, p, _ in hostile.seen if p.startswith("/upload/")]
    assert uploads, "no upload went to the rewritten Location"
    assert all(m in ("PUT", "PATCH") for m, _ in uploads)
    assert hostile.authorizations() == []
    assert hostile.host in str(exc.value)
    assert any(m == "POST" and "/blobs/uploads/" in p for m, p in proxy.seen)
