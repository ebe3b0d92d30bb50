"""The odd-image corpus (``tests/vectors/make_odd_images.py``, generated at test time) through imgcore and back
out to every other tool: pushed to the loopback registry by skopeo, pulled by imgcore, then read from the store
(``oci:<root>:<ref>``) by skopeo, umoci, podman (vfs storage) and containerd's ``ctr`` (a private containerd
started on a socket in the test's temp dir), and saved by imgcore for ``ctr import`` and loaded back from
``ctr export`` with the same digests.

Known limits of the other tools (not imgcore's): umoci 0.4, podman 4.3 and containerd 1.6 cannot unpack old-GNU
sparse headers (Go's archive/tar: "unknown typeflag 'S'"), so that layer is its own image, read by imgcore and
skopeo only; umoci writes sparse files densely (the 8 GiB one is checked by imgcore, skopeo and ctr). Needs
skopeo, umoci, podman, containerd, GNU tar and docker-registry.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgcore.image import catalog
from imgcore.layers.cache import LayerCache
from imgcore.models import OCI_MANIFEST, Platform
from imgcore.store import ContentStore
from imgcore.transfer import archive, pull
from tests.integration.conftest import Registry, require_tool, run
from tests.validate import assert_valid_image
from tests.vectors import make_odd_images as odd

pytestmark = pytest.mark.integration


@dataclass
class Corpus:
    store: ContentStore
    refs: dict[str, str]  # corpus name -> the reference imgcore holds it under
    made: dict[str, odd.Made]


def _push(registry: Registry, src: str, dest: str) -> None:
    run(require_tool("skopeo"), "copy", "--quiet", "--all", "--preserve-digests", *registry.skopeo_dest_flags(),
        src, f"docker://{registry.host}/{dest}")  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Corpus:
    out = tmp_path_factory.mktemp("odd-corpus")
    require_tool("tar")
    made = {
        "sparse": odd.sparse(out),
        "list": odd.schema2_list(out),
        "attested": odd.attestation(out, Platform.host().architecture),
        "artifact": odd.artifact(out),
        "short": odd.short_ref(out),
    }
    _push(registry, f"oci:{made['sparse'].layout}:v1", "corpus/sparse:v1")
    _push(registry, f"oci:{made['sparse'].layout}:gnu", "corpus/sparse-gnu:v1")
    _push(registry, f"dir:{odd.skopeo_dir(made['list'].layout, made['list'].refs['v1'], out / 'l')}", "corpus/list:v1")
    _push(registry, f"oci:{made['attested'].layout}:v1", "corpus/attested:v1")
    _push(registry, f"oci:{made['artifact'].layout}:sbom", "corpus/sbom:v1")
    store = ContentStore(out / "store")
    refs = {}
    for name in ("sparse", "sparse-gnu", "list", "attested", "artifact"):
        repo = "sbom" if name == "artifact" else name
        refs[name] = f"{registry.host}/corpus/{repo}:v1"
        pull.pull(refs[name], store=store)
    archive.load(made["short"].facts["tar"], store=store)
    refs["short"] = "docker.io/library/bb:1.0"
    return Corpus(store, refs, made)


def _images(c: Corpus, *, go_tar: bool = False) -> list[str]:
    """The corpus's images; with ``go_tar`` only those Go's archive/tar can unpack (no old-GNU sparse)."""
    return [c.refs[n] for n in ("sparse", "sparse-gnu", "list", "attested", "short") if n != "sparse-gnu" or not go_tar]


def _check_sparse_tree(root: Path, *, holes: bool, formats: tuple[str, ...] = tuple(odd.SPARSE_FORMATS)) -> None:
    for fmt in formats:
        path = root / f"sparse-{fmt}"
        assert path.stat().st_size == odd.SPARSE_SIZE, fmt
        with path.open("rb") as f:
            for off, data in odd.SPARSE_PIECES:
                f.seek(off)
                assert f.read(len(data)) == data, (fmt, off)
            f.seek(0)
            assert f.read(4096) == b"\0" * 4096
        if holes:
            assert path.stat().st_blocks * 512 < 1 << 20, f"{fmt}: holes were written as data"


def test_the_corpus_is_deterministic(tmp_path):
    a, b = odd.attestation(tmp_path / "a"), odd.attestation(tmp_path / "b")
    assert a.refs == b.refs
    assert odd.sparse(tmp_path / "a").refs == odd.sparse(tmp_path / "b").refs


def test_imgcore_holds_every_odd_image(corpus):
    store = corpus.store
    for ref in _images(corpus):
        assert_valid_image(store, ref)
    assert [a.tags for a in catalog.artifacts(store)] == [(corpus.refs["artifact"],)]
    listed = {r.repository + ":" + r.tag for r in catalog.list_images(store)}
    assert corpus.refs["artifact"] not in listed
    entries = json.loads((store.root / "index.json").read_text())["manifests"]
    assert {e["mediaType"] for e in entries} == {OCI_MANIFEST}  # the docker-typed list child too, via its twin
    # the sparse formats, unpacked in overlay form by the layer cache: sizes, contents and holes kept
    merged = Path(store.root / "merged")
    merged.mkdir()
    for name in ("sparse", "sparse-gnu"):
        img = catalog.resolve(store, corpus.refs[name])
        for d in LayerCache(store).ensure_layers(img).dirs:
            for p in Path(d).iterdir():
                os.link(p, merged / p.name)
    _check_sparse_tree(merged, holes=True)
    assert Path(catalog.inspect(store, corpus.refs["sparse"])["GraphDriver"]["Data"]["UpperDir"]).is_dir()


def test_skopeo_and_umoci_read_every_image(corpus, tmp_path):
    skopeo, umoci = require_tool("skopeo"), require_tool("umoci")
    root = corpus.store.root
    for ref in _images(corpus, go_tar=True):
        img = catalog.resolve(corpus.store, ref)
        info = json.loads(run(skopeo, "inspect", f"oci:{root}:{ref}").stdout)
        assert info["Layers"] == [layer.digest for layer in img.manifest.layers], ref
        (tmp_path / "dir").mkdir(exist_ok=True)
        run(skopeo, "copy", "--quiet", f"oci:{root}:{ref}", f"dir:{tmp_path / 'dir' / img.short_id}")
        bundle = tmp_path / "bundle" / img.short_id
        run(umoci, "unpack", "--rootless", "--image", f"{root}:{ref}", bundle)
        assert (bundle / "rootfs").is_dir()
    sparse_id = catalog.resolve(corpus.store, corpus.refs["sparse"]).short_id
    pax = tuple(f for f in odd.SPARSE_FORMATS if f != "gnu")
    _check_sparse_tree(tmp_path / "bundle" / sparse_id / "rootfs", holes=False, formats=pax)  # umoci: holes as data
    gnu = corpus.refs["sparse-gnu"]
    assert json.loads(run(skopeo, "inspect", f"oci:{root}:{gnu}").stdout)["Layers"]  # skopeo reads it all the same


def test_podman_reads_the_store(corpus, podman_vfs):
    base = podman_vfs
    for name in ("sparse", "list", "attested", "short"):
        ref = corpus.refs[name]
        image_id = run(*base, "pull", "-q", podman_vfs.oci(corpus.store.root, ref)).stdout.strip()
        assert image_id == catalog.resolve(corpus.store, ref).id.partition(":")[2], name


# --------------------------------------------------------------------------------------------- containerd


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A private containerd (no CRI) on a socket in a temp dir; yields the ``ctr --address SOCK`` prefix."""
    binary, ctr = require_tool("containerd"), require_tool("ctr")
    d = tmp_path_factory.mktemp("containerd")
    sock = d / "containerd.sock"
    disabled = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs",
                "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.zfs"]  # fmt: skip
    (d / "config.toml").write_text(
        f'version = 2\nroot = "{d / "root"}"\nstate = "{d / "state"}"\ndisabled_plugins = {json.dumps(disabled)}\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n[debug]\n  address = ""\n'
        f'[metrics]\n  address = ""\n[plugins."io.containerd.internal.v1.opt"]\n  path = "{d / "opt"}"\n'
    )
    with (d / "log").open("wb") as log:
        proc = subprocess.Popen([binary, "--config", str(d / "config.toml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"containerd exited: {(d / 'log').read_text()}")
            with socket.socket(socket.AF_UNIX) as s:
                if sock.exists() and s.connect_ex(str(sock)) == 0:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"containerd did not listen: {(d / 'log').read_text()}")
            time.sleep(0.05)
        yield [ctr, "--address", str(sock)]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d / "root", ignore_errors=True)


def _ctr_images(ctr: list[str]) -> dict[str, str]:
    lines = run(*ctr, "images", "ls").stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[2] for line in lines}


def test_ctr_imports_what_imgcore_saves_and_imgcore_loads_what_ctr_exports(corpus, containerd, tmp_path):
    ctr, store = containerd, corpus.store
    for name, fmt in (("sparse", "oci"), ("list", "docker"), ("short", "oci")):
        ref = corpus.refs[name]
        img = catalog.resolve(store, ref)
        tar = tmp_path / f"{name}.tar"
        archive.save([ref], tar, store=store, format=fmt)
        # containerd unpacks each (checking its diff_ids) into the native snapshotter
        flags = ["--snapshotter", "native"]
        run(*ctr, "images", "import", *flags, tar)
        expected = img.distribution_digest if fmt == "docker" else img.digest
        assert _ctr_images(ctr)[ref] == expected, name
        exported = tmp_path / f"{name}-ctr.tar"
        run(*ctr, "images", "export", exported, ref)
        back = ContentStore(tmp_path / f"back-{name}")
        archive.load(exported, store=back)
        assert_valid_image(back, ref)
        again = catalog.resolve(back, ref)
        assert again.id == img.id
        assert again.distribution_digest == img.distribution_digest


# --------------------------------------------------------------------------------------------- 8 GiB


@pytest.mark.slow
def test_an_8gib_sparse_file_round_trips_sparse_on_disk(tmp_path, registry, containerd):
    require_tool("tar")
    made = odd.big_sparse(tmp_path / "corpus")
    ref = f"{registry.host}/corpus/big:v1"
    _push(registry, f"oci:{made.layout}:v1", "corpus/big:v1")
    store = ContentStore(tmp_path / "store")
    pull.pull(ref, store=store)
    assert_valid_image(store, ref)
    img = catalog.resolve(store, ref)
    (diff,) = LayerCache(store).ensure_layers(img).dirs
    big = Path(diff) / "big.img"
    st = big.stat()
    assert st.st_size == odd.BIG_SIZE
    assert st.st_blocks * 512 < 1 << 20  # 8 GiB of holes stayed holes
    with big.open("rb") as f:
        for off, data in odd.BIG_PIECES:
            f.seek(off)
            assert f.read(len(data)) == data
    skopeo = require_tool("skopeo")
    info = json.loads(run(skopeo, "inspect", f"oci:{store.root}:{ref}").stdout)
    assert info["Layers"] == [img.manifest.layers[0].digest]
    tar = tmp_path / "big.tar"
    archive.save([ref], tar, store=store, format="oci")
    run(*containerd, "images", "import", "--no-unpack", tar)
    assert _ctr_images(containerd)[ref] == img.digest
