"""Helpers of the registry-side tests: the ``imgcore`` command, ``skopeo inspect``, a two-platform index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgcore import sha256

from .conftest import Registry, _layout_manifest, build_oci_image, require_tool, run

NO_CREDENTIALS = {**os.environ, "DOCKER_CONFIG": "/nonexistent", "IMGCORE_CONFIG": "/nonexistent"}


def imgcore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "imgcore", *args], capture_output=True, check=False, timeout=120,
                          env=env or NO_CREDENTIALS)  # fmt: skip


def skopeo_inspect(registry: Registry, ref: str, *extra: str) -> str:
    skopeo = require_tool("skopeo")
    flags = [f.replace("--src-", "--") for f in registry.skopeo_src_flags()]
    return run(skopeo, "inspect", *flags, *extra, f"docker://{registry.host}/{ref}").stdout


@dataclass
class MultiArch:
    layout: Path
    tag: str
    index_digest: str
    manifests: dict[str, str]  # platform -> manifest digest
    configs: dict[str, str]  # platform -> config digest


def build_multiarch(directory: Path) -> MultiArch:
    """An OCI index of two umoci-built images, linux/amd64 and linux/arm64 (different content each)."""
    amd = build_oci_image(directory, "amd", seed=1, big=200_000)
    arm = build_oci_image(directory, "arm", seed=2, big=200_000)
    layout = amd.layout
    entries = []
    for img, arch in ((amd, "amd64"), (arm, "arm64")):
        digest, _ = _layout_manifest(layout, img.tag)
        size = (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).stat().st_size
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
                        "platform": {"architecture": arch, "os": "linux"}})  # fmt: skip
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": entries}).encode()  # fmt: skip
    digest = str(sha256(raw))
    (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(raw)
    index = json.loads((layout / "index.json").read_text())
    name = {"org.opencontainers.image.ref.name": "multi"}
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                               "size": len(raw), "annotations": name})  # fmt: skip
    (layout / "index.json").write_text(json.dumps(index))
    return MultiArch(layout, "multi", digest, {"linux/amd64": amd.manifest_digest, "linux/arm64": arm.manifest_digest},
                     {"linux/amd64": amd.config_digest, "linux/arm64": arm.config_digest})  # fmt: skip


@pytest.fixture(scope="session")
def multiarch(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> MultiArch:
    """The two-platform index pushed by skopeo (``--all``) to the plain registry as ``multi/app:multi``."""
    m = build_multiarch(tmp_path_factory.mktemp("multi"))
    skopeo = require_tool("skopeo")
    run(skopeo, "copy", "--quiet", "--all", *registry.skopeo_dest_flags(), f"oci:{m.layout}:{m.tag}",
        f"docker://{registry.host}/multi/app:multi")  # fmt: skip
    return m
