"""The smaller places where imgcore differed from docker, each against the loopback registry or real archives:
attestation manifests, short OCI ref names, one image loaded twice, ``Loaded image:`` lines, digests after a
multi-platform pull, ``inspect``'s RepoDigests/GraphDriver/Config/LastTagTime, "Using default tag: latest".
Images come from ``tests/vectors/make_odd_images.py``, pushed by skopeo. Needs skopeo and docker-registry."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcore.errors import InvalidManifest
from imgcore.image import catalog, importer
from imgcore.models import Platform
from imgcore.store import ContentStore
from imgcore.transfer import archive, pull, push
from tests.images_helpers import layer_tar
from tests.integration.conftest import Registry, require_tool, run
from tests.validate import assert_valid_image
from tests.vectors import make_odd_images as odd

pytestmark = pytest.mark.integration


def imgcore_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgcore", "--root", str(root), *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict[str, tuple[odd.Made, str]]:
    """The attestation index and the schema 2 list, pushed (``:v1`` and ``:latest``); the short-ref layout."""
    out = tmp_path_factory.mktemp("odd")
    skopeo = require_tool("skopeo")
    att = odd.attestation(out, Platform.host().architecture)
    lst = odd.schema2_list(out)
    for repo, src in (
        ("odd/attested", f"oci:{att.layout}:v1"),
        ("odd/list", f"dir:{odd.skopeo_dir(lst.layout, lst.refs['v1'], out / 'list-dir')}"),
    ):
        for tag in ("v1", "latest"):
            run(skopeo, "copy", "--quiet", "--all", "--preserve-digests", *registry.skopeo_dest_flags(), src,
                f"docker://{registry.host}/{repo}:{tag}")  # fmt: skip
    return {"attested": (att, f"{registry.host}/odd/attested:v1"), "list": (lst, f"{registry.host}/odd/list:v1"),
            "short": (odd.short_ref(out), "")}  # fmt: skip


def test_attestations_are_never_images(tmp_path, corpus):
    made, ref = corpus["attested"]
    store = ContentStore(tmp_path / "store")
    with pytest.raises(InvalidManifest, match="no manifest for platform unknown/unknown") as info:
        pull.pull(ref, store=store, platform="unknown/unknown")
    assert "unknown" not in str(info.value).split("available:", 1)[1]
    assert store.tags() == {}
    result = pull.pull(ref, store=store)
    assert result.image is not None
    assert result.image.manifest_desc.digest == made.facts["image"]
    assert result.digest == made.refs["v1"]["digest"]


def test_a_multi_platform_pull_shows_the_index_digest(tmp_path, corpus):
    made, ref = corpus["list"]
    root = tmp_path / "store"
    out = imgcore_cli(root, "pull", "--platform", "linux/amd64", ref)
    assert out.returncode == 0, out.stderr
    index_digest = made.refs["v1"]["digest"]
    digests = imgcore_cli(root, "images", "--digests").stdout.splitlines()
    assert index_digest in digests[1].split()
    js = json.loads(imgcore_cli(root, "images", "--format", "json").stdout.splitlines()[0])
    assert js["Digest"] == index_digest
    info = json.loads(imgcore_cli(root, "inspect", ref).stdout)[0]
    assert info["RepoDigests"] == [f"{ref.rsplit(':', 1)[0]}@{index_digest}"]
    store = ContentStore(root)
    assert catalog.resolve(store, f"{ref.rsplit(':', 1)[0]}@{index_digest}").id == info["Id"]
    assert_valid_image(store, ref)


def test_using_default_tag_latest(tmp_path, corpus):
    _, ref = corpus["list"]
    out = imgcore_cli(tmp_path / "store", "pull", "--platform", "linux/arm64", ref.rsplit(":", 1)[0])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == ["Using default tag: latest", "latest: Pulling from odd/list"]


def test_a_short_oci_ref_name_loads_as_a_docker_name(tmp_path, corpus):
    made, _ = corpus["short"]
    store = ContentStore(tmp_path / "store")
    result = archive.load(made.facts["tar"], store=store)
    assert [name for name, _ in result.images] == ["docker.io/library/bb:1.0"]
    assert_valid_image(store, "bb:1.0")
    ctr = ContentStore(tmp_path / "dir-store")
    archive.load(made.layout, store=ctr)  # the layout directory too
    assert list(ctr.tags()) == ["docker.io/library/bb:1.0"]


def test_one_image_from_two_archives_and_each_loaded_line_once(tmp_path, corpus):
    made, _ = corpus["short"]
    src = ContentStore(tmp_path / "src")
    archive.load(made.facts["tar"], store=src)
    catalog.tag(src, "bb:1.0", "bb:two")
    docker_tar, oci_tar = tmp_path / "docker.tar", tmp_path / "oci.tar"
    archive.save(["bb:1.0", "bb:two"], docker_tar, store=src)
    archive.save(["bb:1.0"], oci_tar, store=src, format="oci")
    skopeo = require_tool("skopeo")
    classic = tmp_path / "classic.tar"
    run(skopeo, "copy", "--quiet", f"oci-archive:{oci_tar}:1.0", f"docker-archive:{classic}:bb:1.0")
    root = tmp_path / "dst"
    out = imgcore_cli(root, "load", "-i", str(docker_tar))
    assert out.returncode == 0, out.stderr
    loaded = [line for line in out.stdout.splitlines() if line.startswith("Loaded image")]
    assert loaded == ["Loaded image: bb:1.0", "Loaded image: bb:two"]
    assert imgcore_cli(root, "load", "-i", str(classic)).returncode == 0  # same image, another manifest digest
    rows = imgcore_cli(root, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(rows) == ["bb:1.0", "bb:two"]  # no <none> row left by the second archive


def test_inspect_repo_digests_graph_driver_config_and_tag_time(tmp_path, registry, corpus):
    store = ContentStore(tmp_path / "store")
    src = tmp_path / "rootfs.tar.gz"
    src.write_bytes(gzip.compress(layer_tar({"etc/hostname": b"mini\n"})))
    importer.import_image(store, src, "mini:1")
    info = catalog.inspect(store, "mini:1")
    assert isinstance(info["Config"], dict)  # not null for an imported image
    assert info["RepoDigests"] == []
    assert info["GraphDriver"]["Name"] == "overlayfs"
    assert info["GraphDriver"]["Data"]["UpperDir"].endswith("/diff")
    target = f"{registry.host}/odd/mini:1"
    pushed = push.push(target, source="mini:1", store=store)
    assert catalog.inspect(store, "mini:1")["RepoDigests"] == [f"{registry.host}/odd/mini@{pushed.digest}"]
    assert catalog.inspect(store, "mini:1")["Metadata"]["LastTagTime"] != catalog.ZERO_TIME
