"""imgcore pulls what skopeo pushed to a real docker-registry, with the same digests; faults are caught or survived."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from imgcore._progress import PlainProgress
from imgcore.errors import AuthError, DigestMismatch, NotFound
from imgcore.image import catalog
from imgcore.registry import Credentials, RegistryClient
from imgcore.store import ContentStore
from imgcore.transfer import pull as pulling
from imgcore.transfer import push as pushing
from tests.validate import assert_valid_image

from .conftest import FaultProxy, OciImage, Registry, build_oci_image, require_tool, run, skopeo_push

pytestmark = pytest.mark.integration


def _store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "store")


def test_pull_matches_skopeo_digests(pushed_image: tuple[OciImage, str], tmp_path: Path) -> None:
    image, ref = pushed_image
    store = _store(tmp_path)
    out = io.StringIO()
    result = pulling.pull(ref, store=store, progress=PlainProgress(out))
    assert result.digest == image.manifest_digest
    assert result.manifest.digest == image.manifest_digest
    for d in [*image.layer_digests, image.config_digest, image.manifest_digest]:
        assert store.has_blob(d), d
    assert catalog.resolve(store, ref).digest == image.manifest_digest
    assert not store.fsck()
    assert_valid_image(store, ref)
    lines = out.getvalue().splitlines()
    assert lines[0] == "v1: Pulling from test/app"
    for d in image.layer_digests:
        lid = d.split(":", 1)[1][:12]
        seq = [line.split(": ", 1)[1] for line in lines if line.startswith(lid + ":")]
        assert seq == ["Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete", "Pull complete"]
    assert lines[-2] == f"Digest: {image.manifest_digest}"
    assert lines[-1] == f"Status: Downloaded newer image for {ref}"

    # Second pull: nothing downloaded, everything "Already exists", image up to date.
    out2 = io.StringIO()
    again = pulling.pull(ref, store=store, progress=PlainProgress(out2))
    assert again.downloaded == 0
    assert again.status == f"Image is up to date for {ref}"
    assert sum("Already exists" in line for line in out2.getvalue().splitlines()) == len(image.layer_digests)


def test_pull_by_digest_and_store_is_an_oci_layout_skopeo_reads(
    pushed_image: tuple[OciImage, str], registry: Registry, tmp_path: Path
) -> None:
    image, _ = pushed_image
    store = _store(tmp_path)
    by_digest = f"{registry.host}/test/app@{image.manifest_digest}"
    result = pulling.pull(by_digest, store=store)
    assert result.digest == image.manifest_digest
    # umoci reads imgcore's store as an OCI layout and unpacks the image into the same tree as the original.
    umoci = require_tool("umoci")
    tag = "pulled"
    store.tag(f"{registry.host}/test/app:{tag}", result.manifest)
    layout_name = f"{registry.host}/test/app:{tag}"
    index = json.loads((store.root / "index.json").read_text())
    assert any(m["annotations"]["org.opencontainers.image.ref.name"] == layout_name for m in index["manifests"])
    # umoci needs a plain tag name: copy the ref to one with skopeo, which also validates every blob.
    skopeo = require_tool("skopeo")
    run(skopeo, "copy", "--quiet", f"oci:{store.root}:{layout_name}", f"oci:{tmp_path / 'copy'}:x")
    run(umoci, "unpack", "--rootless", "--image", f"{tmp_path / 'copy'}:x", tmp_path / "b1")
    run(umoci, "unpack", "--rootless", "--image", f"{image.layout}:{image.tag}", tmp_path / "b2")
    diff = subprocess.run(["diff", "-r", "--no-dereference", tmp_path / "b1/rootfs", tmp_path / "b2/rootfs"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_pull_multiplatform_index(registry: Registry, tmp_path: Path) -> None:
    """A multi-platform index pushed by skopeo --all resolves to the asked platform."""
    umoci = require_tool("umoci")
    img = build_oci_image(tmp_path / "mp", "amd", seed=1, big=1000)
    run(umoci, "config", "--image", f"{img.layout}:amd", "--tag", "arm", "--architecture", "arm64")
    layout = img.layout
    index = json.loads((layout / "index.json").read_text())
    descs = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    entries = []
    for tag, arch in (("amd", "amd64"), ("arm", "arm64")):
        d = dict(descs[tag])
        d.pop("annotations")
        d["platform"] = {"os": "linux", "architecture": arch, **({"variant": "v8"} if arch == "arm64" else {})}
        entries.append(d)
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": entries}).encode()  # fmt: skip
    from imgcore import sha256

    idx_digest = str(sha256(raw))
    (layout / "blobs" / "sha256" / idx_digest.split(":")[1]).write_bytes(raw)
    ann = {"org.opencontainers.image.ref.name": "multi"}
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx_digest,
                               "size": len(raw), "annotations": ann})  # fmt: skip
    (layout / "index.json").write_text(json.dumps(index))
    skopeo = require_tool("skopeo")
    run(skopeo, "copy", "--quiet", "--all", *registry.skopeo_dest_flags(), f"oci:{layout}:multi",
        f"docker://{registry.host}/test/multi:1")  # fmt: skip
    store = _store(tmp_path)
    arm = pulling.pull(f"{registry.host}/test/multi:1", store=store, platform="linux/arm64")
    assert arm.digest == idx_digest
    assert arm.manifest.digest == descs["arm"]["digest"]
    amd = pulling.pull(f"{registry.host}/test/multi:1", store=store, platform="linux/amd64")
    assert amd.manifest.digest == descs["amd"]["digest"]
    assert_valid_image(store, f"{registry.host}/test/multi:1")
    with pytest.raises(Exception, match="no manifest for platform linux/s390x"):
        pulling.pull(f"{registry.host}/test/multi:1", store=store, platform="linux/s390x")


def test_pull_unknown_tag_is_not_found(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"manifest unknown"):
        pulling.pull(f"{registry.host}/test/nothing-here:v9", store=_store(tmp_path))


def test_corrupted_blob_is_refused_and_nothing_stored(
    pushed_image: tuple[OciImage, str], fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    image, _ = pushed_image
    bad = image.layer_digests[0]
    fault_proxy.corrupt.add(bad)
    store = _store(tmp_path)
    with pytest.raises(DigestMismatch) as exc:
        pulling.pull(f"{fault_proxy.host}/test/app:v1", store=store)
    assert exc.value.expected == bad
    assert not store.has_blob(bad)
    assert not list((store.root / "imgcore" / "ingest").glob(f"*{bad.split(':')[1]}*"))
    assert store.tags() == {}


def test_cut_connection_resumes_with_range(
    pushed_image: tuple[OciImage, str], fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    image, _ = pushed_image
    big = max(image.layer_digests, key=lambda d: (image.layout / "blobs/sha256" / d.split(":")[1]).stat().st_size)
    fault_proxy.cut_after[big] = 100_000
    fault_proxy.cuts_left[big] = 2
    store = _store(tmp_path)
    result = pulling.pull(f"{fault_proxy.host}/test/app:v1", store=store)
    assert result.manifest.digest == image.manifest_digest
    assert store.has_blob(big)
    gets = [(p, r) for m, p, r in fault_proxy.requests if m == "GET" and p.endswith(big)]
    assert gets[0][1] is None
    assert gets[1][1] == "bytes=100000-"
    assert gets[2][1] == "bytes=200000-"
    assert not store.fsck()


def test_killed_pull_resumes_from_partial(
    pushed_image: tuple[OciImage, str], registry: Registry, tmp_path: Path
) -> None:
    """A partial left by a killed process is resumed with a Range request by the next run."""
    image, _ = pushed_image
    store = _store(tmp_path)
    big = image.layer_digests[0]
    blob = (image.layout / "blobs/sha256" / big.split(":")[1]).read_bytes()
    with store.ingest(big, len(blob)) as ing:
        ing.write(blob[:12345])  # then "killed": leave without commit
    proxy = FaultProxy(registry.host)
    try:
        pulling.pull(f"{proxy.host}/test/app:v1", store=store)
    finally:
        proxy.close()
    ranges = [r for m, p, r in proxy.requests if m == "GET" and p.endswith(big)]
    assert ranges == ["bytes=12345-"]
    assert store.has_blob(big)


def test_tls_and_basic_auth(oci_image: OciImage, tls_registry: Registry, tmp_path: Path) -> None:
    skopeo_push(oci_image, tls_registry, "secure/app:v1")
    ref = f"{tls_registry.host}/secure/app:v1"
    store = _store(tmp_path)
    good = RegistryClient(tls_registry.host, credentials=Credentials("alice", "s3cret-pw"),
                          ca_file=tls_registry.ca_file)  # fmt: skip
    result = pulling.pull(ref, store=store, client=good)
    assert result.digest == oci_image.manifest_digest
    assert good.base_url == f"https://{tls_registry.host}"

    bad = RegistryClient(tls_registry.host, credentials=Credentials("alice", "wrong-password-123"),
                         ca_file=tls_registry.ca_file)  # fmt: skip
    with pytest.raises(AuthError) as exc:
        pulling.pull(ref, store=_store(tmp_path / "2"), client=bad)
    assert "wrong-password-123" not in str(exc.value)
    assert exc.value.status == 401
    anon = RegistryClient(tls_registry.host, credentials=None, ca_file=tls_registry.ca_file)
    with pytest.raises(AuthError, match="requires authentication"):
        pulling.pull(ref, store=_store(tmp_path / "3"), client=anon)


def test_tls_verification_without_ca_fails_for_non_loopback_policy(tls_registry: Registry) -> None:
    """Without the CA the certificate is not trusted; only an insecure (here: loopback) host may skip verification."""
    import time

    from imgcore.errors import RegistryError

    strict = RegistryClient(tls_registry.host, credentials=None, retries=3, backoff=1.0)
    strict.insecure = False  # as for any non-loopback host
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match=r"TLS failed: .*--ca-file"):
        strict.ping()
    assert time.monotonic() - t0 < 1.0  # a certificate error is not retried
    loose = RegistryClient(tls_registry.host, credentials=Credentials("alice", "s3cret-pw"), retries=0)
    loose.ping()  # loopback: docker-like fallback to unverified TLS
    assert loose.base_url.startswith("https://")


def test_credentials_from_docker_config(
    oci_image: OciImage, tls_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    skopeo_push(oci_image, tls_registry, "secure/app:v1")
    docker = tmp_path / "docker"
    docker.mkdir()
    auth = base64.b64encode(b"alice:s3cret-pw").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {tls_registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    monkeypatch.setenv("IMGCORE_CONFIG", str(tmp_path / "imgcore-config"))
    result = pulling.pull(f"{tls_registry.host}/secure/app:v1", store=_store(tmp_path),
                               ca_file=tls_registry.ca_file)  # fmt: skip
    assert result.digest == oci_image.manifest_digest


def test_second_image_shares_base_layer(registry: Registry, oci_image: OciImage, tmp_path: Path) -> None:
    skopeo_push(oci_image, registry, "test/app:v1")
    store = _store(tmp_path)
    pulling.pull(f"{registry.host}/test/app:v1", store=store)
    # Same base layer (same bytes), a different top layer.
    layout = oci_image.layout
    umoci = require_tool("umoci")
    bundle = tmp_path / "bundle"
    run(umoci, "unpack", "--rootless", "--image", f"{layout}:{oci_image.tag}", bundle)
    (bundle / "rootfs" / "app" / "v2.txt").write_text("second image\n")
    run(umoci, "repack", "--image", f"{layout}:v2", bundle)
    img2 = OciImage(layout, "v2", "", [], "")
    skopeo_push(img2, registry, "test/app2:v2")
    out = io.StringIO()
    res = pulling.pull(f"{registry.host}/test/app2:v2", store=store, progress=PlainProgress(out))
    base = oci_image.layer_digests[0].split(":")[1][:12]
    assert f"{base}: Already exists" in out.getvalue().splitlines()
    assert res.downloaded < 100_000
    assert_valid_image(store, f"{registry.host}/test/app2:v2")


def test_sigkill_mid_pull_then_rerun_resumes(
    pushed_image: tuple[OciImage, str], registry: Registry, tmp_path: Path
) -> None:
    """`imgcore pull` killed with SIGKILL mid-blob; the next run asks only for the missing bytes."""
    import os
    import signal
    import sys
    import time

    image, _ = pushed_image
    big = image.layer_digests[0]
    proxy = FaultProxy(registry.host)
    proxy.slow[big] = 0.05
    env = {**os.environ, "IMGCORE_ROOT": str(tmp_path / "store"), "IMGCORE_CONFIG": str(tmp_path / "cfg")}
    partial = tmp_path / "store" / "imgcore" / "ingest" / f"sha256-{big.split(':')[1]}.partial"
    try:
        proc = subprocess.Popen([sys.executable, "-m", "imgcore", "pull", "-q", f"{proxy.host}/test/app:v1"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (partial.exists() and partial.stat().st_size >= 131072):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        have = partial.stat().st_size
        assert 0 < have < (image.layout / "blobs/sha256" / big.split(":")[1]).stat().st_size
        proxy.slow.clear()
        proxy.requests.clear()
        r = subprocess.run([sys.executable, "-m", "imgcore", "pull", "-q", f"{proxy.host}/test/app:v1"],
                           env=env, capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
    finally:
        proxy.close()
    ranges = [rng for m, p, rng in proxy.requests if m == "GET" and p.endswith(big)]
    assert len(ranges) == 1
    assert ranges[0] is not None
    assert int(ranges[0].removeprefix("bytes=").rstrip("-")) >= have
    store = ContentStore(tmp_path / "store")
    assert store.has_blob(big)
    assert not store.fsck()


def test_bearer_token_auth_pull_and_push(
    oci_image: OciImage, token_registry: tuple[Registry, object], tmp_path: Path
) -> None:
    """docker-registry with `auth: token`: skopeo pushes, imgcore pulls and pushes with bearer tokens."""
    reg, server = token_registry
    skopeo_push(oci_image, reg, "tok/app:v1")
    store = _store(tmp_path)
    client = RegistryClient(reg.host, credentials=Credentials("bob", "tok-pw"))
    res = pulling.pull(f"{reg.host}/tok/app:v1", store=store, client=client)
    assert res.digest == oci_image.manifest_digest
    assert_valid_image(store, f"{reg.host}/tok/app:v1")
    scopes = [q for q, had_auth in server.requests if had_auth]  # type: ignore[attr-defined]
    assert any("scope=repository%3Atok%2Fapp%3Apull" in q for q in scopes)
    assert all("service=imgcore-test" in q for q in scopes)
    pushed = pushing.push(f"{reg.host}/tok/copy:v1", source=f"{reg.host}/tok/app:v1", store=store, client=client)
    assert pushed.digest == oci_image.manifest_digest
    # mounting from tok/app asks for pull on the source and push on the target in one token
    assert any("tok%2Fapp%3Apull" in q and "tok%2Fcopy%3Apull%2Cpush" in q for q, _ in server.requests)  # type: ignore[attr-defined]

    anon = RegistryClient(reg.host, credentials=None)
    with pytest.raises(AuthError):
        pulling.pull(f"{reg.host}/tok/app:v1", store=_store(tmp_path / "anon"), client=anon)
    wrong = RegistryClient(reg.host, credentials=Credentials("bob", "nope-nope"))
    with pytest.raises(AuthError, match="credentials were refused") as exc:
        pulling.pull(f"{reg.host}/tok/app:v1", store=_store(tmp_path / "wrong"), client=wrong)
    assert "nope-nope" not in str(exc.value)


def test_jobs_one_queues_layers_as_waiting(pushed_image: tuple[OciImage, str], tmp_path: Path) -> None:
    image, ref = pushed_image
    out = io.StringIO()
    pulling.pull(ref, store=_store(tmp_path), jobs=1, progress=PlainProgress(out))
    second = image.layer_digests[1].split(":")[1][:12]
    seq = [line.split(": ", 1)[1] for line in out.getvalue().splitlines() if line.startswith(second + ":")]
    assert seq[:3] == ["Pulling fs layer", "Waiting", "Downloading"]
    assert seq[-1] == "Pull complete"


def test_many_cuts_with_progress_still_complete(
    pushed_image: tuple[OciImage, str], fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """More cuts than the retry budget, each after some progress: the pull gets there (only fruitless tries count)."""
    image, _ = pushed_image
    big = image.layer_digests[0]
    fault_proxy.cut_after[big] = 65_536
    fault_proxy.cuts_left[big] = 8
    client = RegistryClient(fault_proxy.host, credentials=None, retries=2, backoff=0.01)
    store = _store(tmp_path)
    pulling.pull(f"{fault_proxy.host}/test/app:v1", store=store, client=client)
    assert store.has_blob(big)
    gets = [r for m, p, r in fault_proxy.requests if m == "GET" and p.endswith(big)]
    assert len(gets) == 9
    assert gets[1:] == [f"bytes={65_536 * i}-" for i in range(1, 9)]
