"""imgcore pushes; skopeo copies the result back and umoci unpacks it into the same tree as the original."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from imgcore._progress import PlainProgress
from imgcore.registry import Credentials, RegistryClient
from imgcore.store import ContentStore
from imgcore.transfer import pull as pulling
from imgcore.transfer import push as pushing

from .conftest import OciImage, Registry, require_tool, run

pytestmark = pytest.mark.integration


def _same_tree_as_original(image: OciImage, registry: Registry, ref_path: str, tmp_path: Path) -> None:
    skopeo = require_tool("skopeo")
    umoci = require_tool("umoci")
    back = tmp_path / "back"
    run(
        skopeo, "copy", "--quiet", *registry.skopeo_src_flags(), f"docker://{registry.host}/{ref_path}", f"oci:{back}:x"
    )
    run(umoci, "unpack", "--rootless", "--image", f"{back}:x", tmp_path / "b1")
    run(umoci, "unpack", "--rootless", "--image", f"{image.layout}:{image.tag}", tmp_path / "b2")
    diff = subprocess.run(["diff", "-r", "--no-dereference", tmp_path / "b1/rootfs", tmp_path / "b2/rootfs"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert diff.returncode == 0, diff.stdout + diff.stderr
    inspect = run(skopeo, "inspect", "--raw", *[f.replace("--src-", "--") for f in registry.skopeo_src_flags()],
                  f"docker://{registry.host}/{ref_path}")  # fmt: skip
    from imgcore import sha256

    assert str(sha256(inspect.stdout.encode())) == image.manifest_digest


def test_push_mounts_then_skips(pushed_image: tuple[OciImage, str], registry: Registry, tmp_path: Path) -> None:
    image, ref = pushed_image
    store = ContentStore(tmp_path / "store")
    pulling.pull(ref, store=store)
    out = io.StringIO()
    res = pushing.push(f"{registry.host}/other/copy:v1", source=ref, store=store, progress=PlainProgress(out))
    assert res.digest == image.manifest_digest
    lines = out.getvalue().splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/other/copy]"
    for d in image.layer_digests:
        assert f"{d.split(':')[1][:12]}: Mounted from test/app" in lines
    assert lines[-1] == f"v1: digest: {image.manifest_digest} size: {res.size}"
    assert res.uploaded == 0
    # Again: everything is there already.
    out2 = io.StringIO()
    pushing.push(f"{registry.host}/other/copy:v1", source=ref, store=store, progress=PlainProgress(out2))
    assert sum("Layer already exists" in line for line in out2.getvalue().splitlines()) == len(image.layer_digests)
    _same_tree_as_original(image, registry, "other/copy:v1", tmp_path)


@pytest.mark.parametrize("chunk_size", [None, 65_536])
def test_push_uploads_to_tls_registry(
    pushed_image: tuple[OciImage, str], registry: Registry, tls_registry: Registry, tmp_path: Path,
    chunk_size: int | None,
) -> None:  # fmt: skip
    image, ref = pushed_image
    store = ContentStore(tmp_path / "store")
    pulling.pull(ref, store=store)
    client = RegistryClient(tls_registry.host, credentials=Credentials("alice", "s3cret-pw"),
                            ca_file=tls_registry.ca_file)  # fmt: skip
    repo = f"up/{'chunked' if chunk_size else 'mono'}"
    out = io.StringIO()
    res = pushing.push(f"{tls_registry.host}/{repo}:v1", source=ref, store=store, client=client,
                            chunk_size=chunk_size, progress=PlainProgress(out))  # fmt: skip
    assert res.digest == image.manifest_digest
    for d in image.layer_digests:
        assert f"{d.split(':')[1][:12]}: Pushed" in out.getvalue().splitlines()
    assert res.uploaded >= sum(store.blob_size(d) for d in image.layer_digests)
    _same_tree_as_original(image, tls_registry, f"{repo}:v1", tmp_path)
