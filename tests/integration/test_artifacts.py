"""OCI artifacts (an ``artifactType`` with the empty config; a helm-style config) pulled from the loopback
registry: stored and tagged as artifacts, left out of ``images``, listed by ``artifacts``, refused by the image
commands with podman's message, removed by ``rmi`` and ``prune -a``. The corpus comes from
``tests/vectors/make_odd_images.py``, pushed by skopeo. Needs skopeo and docker-registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcore.errors import NotAnImage
from imgcore.gc import collect
from imgcore.image import catalog
from imgcore.store import ContentStore
from imgcore.transfer import pull, push
from tests.integration.conftest import Registry, require_tool, run
from tests.vectors import make_odd_images as odd

pytestmark = pytest.mark.integration


def imgcore_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgcore", "--root", str(root), *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> tuple[odd.Made, str, str]:
    made = odd.artifact(tmp_path_factory.mktemp("odd"))
    skopeo = require_tool("skopeo")
    sbom, chart = f"{registry.host}/odd/sbom:v1", f"{registry.host}/odd/chart:v1"
    for ref, dest in (("sbom", sbom), ("chart", chart)):
        run(skopeo, "copy", "--quiet", *registry.skopeo_dest_flags(), f"oci:{made.layout}:{ref}", f"docker://{dest}")
    return made, sbom, chart


def test_pull_stores_artifacts_and_images_leaves_them_out(tmp_path, pushed):
    made, sbom, chart = pushed
    root = tmp_path / "store"
    out = imgcore_cli(root, "pull", sbom)
    assert out.returncode == 0, out.stderr
    assert "Downloaded newer image" not in out.stdout
    assert f"Pulled [registry] {sbom}" in out.stdout  # oras's words
    assert f"Digest: {made.refs['sbom']['digest']}" in out.stdout
    assert imgcore_cli(root, "pull", chart).returncode == 0
    images = imgcore_cli(root, "images", "-q")
    assert images.returncode == 0
    assert images.stdout == ""
    listed = imgcore_cli(root, "artifacts", "--format", "json", "--no-trunc")
    rows = {(o["Repository"], o["Tag"]): o for o in map(json.loads, listed.stdout.splitlines())}
    repo = sbom.rsplit(":", 1)[0]
    assert rows[(repo, "v1")]["ArtifactType"] == odd.SBOM_TYPE
    assert rows[(repo, "v1")]["Digest"] == made.refs["sbom"]["digest"]
    assert rows[(chart.rsplit(":", 1)[0], "v1")]["ArtifactType"] == odd.HELM_CONFIG
    all_types = imgcore_cli(root, "images", "--all-types").stdout.splitlines()
    assert len(all_types) == 3
    assert {line.split()[2] for line in all_types[1:]} == {made.refs[k]["digest"][7:19] for k in ("sbom", "chart")}
    quiet = imgcore_cli(root, "images", "-q", "--all-types", "--no-trunc").stdout.split()
    assert sorted(quiet) == sorted(made.refs[k]["digest"] for k in ("sbom", "chart"))
    table = imgcore_cli(root, "artifacts").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "ARTIFACT", "TYPE", "DIGEST", "SIZE"]
    assert len(table) == 3

    store = ContentStore(root)
    with pytest.raises(
        NotAnImage, match=r'unsupported image-specific operation on artifact with type "application/vnd'
    ):
        catalog.resolve(store, sbom)
    for cmd in (["create", sbom], ["run", "--rm", sbom], ["inspect", sbom], ["history", chart]):
        refused = imgcore_cli(root, *cmd)
        assert refused.returncode != 0, cmd
        assert "unsupported image-specific operation on artifact" in refused.stderr, (cmd, refused.stderr)

    # rmi by tag removes it and its blobs; prune -a removes the other
    rmi = imgcore_cli(root, "rmi", sbom)
    assert rmi.returncode == 0, rmi.stderr
    assert f"Deleted: {made.refs['sbom']['digest']}" in rmi.stdout
    assert not store.has_blob(made.refs["sbom"]["digest"])
    assert [a.tags for a in catalog.artifacts(store)] == [(chart,)]
    report = collect.prune(store)
    assert [a.tags for a in catalog.artifacts(store)] == [(chart,)]  # tagged: kept without -a
    report = collect.prune(store, all=True)
    assert catalog.artifacts(store) == []
    assert made.refs["chart"]["digest"] in report.deleted_blobs
    assert store.list_blobs() == []


def test_push_rmi_by_digest_and_a_repull(tmp_path, pushed, registry):
    made, sbom, _ = pushed
    store = ContentStore(tmp_path / "store")
    first = pull.pull(sbom, store=store)
    assert first.image is None
    assert first.status == f"Pulled [registry] {sbom}"
    copy = f"{registry.host}/odd/sbom-copy:v1"
    sent = push.push(copy, source=sbom, store=store)
    assert sent.digest == made.refs["sbom"]["digest"]  # an artifact goes out as it came in
    other = ContentStore(tmp_path / "other")
    assert pull.pull(copy, store=other).digest == sent.digest
    assert [a.artifact_type for a in catalog.artifacts(other)] == [odd.SBOM_TYPE]
    again = pull.pull(sbom, store=store)
    assert dict(again.layers) == dict.fromkeys(dict(again.layers), "Already exists")
    records = collect.remove_image(store, made.refs["sbom"]["digest"])
    assert ("Untagged", sbom) in {(r.action, r.what) for r in records}
    assert store.list_blobs() == []
