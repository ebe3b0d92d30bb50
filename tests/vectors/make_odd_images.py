"""The odd-image corpus: OCI layouts of the images that broke interop, generated at test time (nothing big is
committed). Deterministic: the same arguments give the same bytes, hence the same digests (tars with fixed
times and owners, gzip with mtime 0, JSON with sorted keys).

Run as a script to write the whole corpus into a directory::

    python tests/vectors/make_odd_images.py OUT [--foreign-url http://127.0.0.1:8000/blobs/] [--big]

Each function writes one OCI image layout under ``out`` and returns a :class:`Made` naming the layout, its
refs and the digests a test checks against:

- ``artifact``: an OCI 1.1 artifact (``artifactType``, the empty config) and a helm-style chart (its own config
  media type);
- ``foreign``: a docker schema 2 image whose base layer is foreign (``urls``; the blob is written beside the
  layout, in ``foreign-blobs/``, for an HTTP server to serve, never into the layout);
- ``attestation``: an OCI index with a host image and a buildx attestation manifest (``unknown/unknown``);
- ``schema2_list``: a docker manifest list over two docker schema 2 images (amd64, arm64);
- ``short_ref``: an OCI layout whose ref name is short (``bb:1.0``), as a directory and as a tar;
- ``sparse``: one layer per GNU sparse format (PAX 0.0, 0.1, 1.0, old GNU), written by GNU tar from files
  with holes;
- ``big_sparse``: a layer holding an 8 GiB file that is almost all hole (GNU sparse PAX 1.0: a few KiB of tar).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
SBOM_TYPE = "application/vnd.example.sbom.v1"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
GiB = 1 << 30
MiB = 1 << 20
SPARSE_FORMATS = {
    "pax-0.0": ["--format=posix", "--sparse-version=0.0"],
    "pax-0.1": ["--format=posix", "--sparse-version=0.1"],
    "pax-1.0": ["--format=posix", "--sparse-version=1.0"],
    "gnu": ["--format=gnu"],
}
# (offset, data) pieces of the sparse test file; everything else is a hole
SPARSE_PIECES = [(MiB, b"hello sparse " * 400), (3 * MiB + 17, b"middle"), (5 * MiB - 3, b"end")]
SPARSE_SIZE = 5 * MiB
BIG_SIZE = 8 * GiB
BIG_PIECES = [(0, b"start of an 8 GiB file\n"), (BIG_SIZE - 4096, b"last page\n")]


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def tar_of(files: dict[str, bytes]) -> bytes:
    """A deterministic tar (sorted names, mtime 0, root-owned, 0644; parents as 0755 dirs)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = sorted({"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tf.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tf.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


@dataclass
class Made:
    """What a corpus function wrote: the layout, its refs (ref name -> descriptor) and facts tests check."""

    layout: Path
    refs: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


class Layout:
    """An OCI image layout being written: blobs by digest, then ``index.json`` from the added entries."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
        self.entries: list[dict[str, Any]] = []

    def blob(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = sha256(data)
        (self.root / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def blob_file(self, path: Path, media_type: str) -> dict[str, Any]:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(MiB):
                h.update(chunk)
        digest = "sha256:" + h.hexdigest()
        dest = self.root / "blobs" / "sha256" / digest[7:]
        shutil.copyfile(path, dest)
        return {"mediaType": media_type, "digest": digest, "size": dest.stat().st_size}

    def add(self, desc: dict[str, Any], ref: str | None) -> dict[str, Any]:
        entry = dict(desc)
        if ref is not None:
            entry["annotations"] = {REF_NAME: ref}
        self.entries.append(entry)
        return desc

    def close(self) -> Path:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}
        (self.root / "index.json").write_bytes(canonical(index))
        return self.root


def image(
    lay: Layout,
    layers: list[tuple[bytes, bytes]],
    *,
    docker: bool = False,
    arch: str = "amd64",
    foreign: tuple[dict[str, Any], str] | None = None,
    label: str = "odd",
) -> dict[str, Any]:
    """An image manifest over ``layers`` ((uncompressed tar, gzip blob) pairs), docker- or OCI-typed; a
    ``foreign`` (descriptor, diff_id) layer goes first and its blob is not written to the layout."""
    layer_type = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
    descs = [lay.blob(blob, layer_type) for _, blob in layers]
    diff_ids = [sha256(t) for t, _ in layers]
    if foreign is not None:
        descs.insert(0, foreign[0])
        diff_ids.insert(0, foreign[1])
    config = {
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"corpus": label}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(descs))],
    }
    cdesc = lay.blob(canonical(config), DOCKER_CONFIG if docker else OCI_CONFIG)
    mt = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest = {"schemaVersion": 2, "mediaType": mt, "config": cdesc, "layers": descs}
    return lay.blob(canonical(manifest), mt)


def simple_layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    t = tar_of(files)
    return t, gz(t)


# ------------------------------------------------------------------------------------------------- corpus


def artifact(out: Path) -> Made:
    """``sbom``: an OCI 1.1 artifact (artifactType + the empty config); ``chart``: a helm-style manifest."""
    lay = Layout(out / "artifact")
    empty = lay.blob(b"{}", OCI_EMPTY)
    sbom = lay.blob(canonical({"spdxVersion": "SPDX-2.3", "name": "odd"}), SBOM_TYPE + "+json")
    m1 = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM_TYPE, "config": empty,
          "layers": [sbom], "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}  # fmt: skip
    d1 = lay.add(lay.blob(canonical(m1), OCI_MANIFEST), "sbom")
    chart_cfg = lay.blob(canonical({"apiVersion": "v2", "name": "odd", "version": "0.1.0"}), HELM_CONFIG)
    chart = lay.blob(gz(tar_of({"odd/Chart.yaml": b"apiVersion: v2\nname: odd\nversion: 0.1.0\n"})),
                     "application/vnd.cncf.helm.chart.content.v1.tar+gzip")  # fmt: skip
    m2 = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": chart_cfg, "layers": [chart]}
    d2 = lay.add(lay.blob(canonical(m2), OCI_MANIFEST), "chart")
    return Made(lay.close(), {"sbom": d1, "chart": d2}, {"sbom_type": SBOM_TYPE, "chart_type": HELM_CONFIG})


def foreign(out: Path, url_base: str) -> Made:
    """``v1``: docker schema 2, a foreign base layer (served from ``url_base + <digest>``) and a normal one."""
    lay = Layout(out / "foreign")
    base_tar = tar_of({"etc/os-release": b"NAME=foreign-base\n", "bin/tool": b"#!/bin/sh\necho tool\n"})
    base = gz(base_tar)
    digest = sha256(base)
    blobs = out / "foreign-blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest[7:]).write_bytes(base)
    fdesc = {"mediaType": DOCKER_FOREIGN, "digest": digest, "size": len(base), "urls": [url_base + digest]}
    m = image(lay, [simple_layer({"app/hello.txt": b"on top of a foreign layer\n"})], docker=True,
              foreign=(fdesc, sha256(base_tar)), label="foreign")  # fmt: skip
    lay.add(m, "v1")
    return Made(lay.close(), {"v1": m}, {"foreign_digest": digest, "foreign_blobs": blobs})


def attestation(out: Path, arch: str = "amd64") -> Made:
    """``v1``: an OCI index with an ``arch`` image and a buildx attestation manifest for it."""
    lay = Layout(out / "attestation")
    img = image(lay, [simple_layer({"hello.txt": b"attested\n"})], arch=arch, label="attested")
    statement = canonical({"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://spdx.dev/Document"})
    intoto = lay.blob(statement, "application/vnd.in-toto+json",
                      annotations={"in-toto.io/predicate-type": "https://spdx.dev/Document"})  # fmt: skip
    att_cfg = {"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers",
               "diff_ids": [sha256(statement)]}}  # fmt: skip
    cdesc = lay.blob(canonical(att_cfg), OCI_CONFIG)
    att = lay.blob(canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": [intoto]}),
                   OCI_MANIFEST)  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**img, "platform": {"architecture": arch, "os": "linux"}},
        {**att, "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.digest": img["digest"],
                         "vnd.docker.reference.type": "attestation-manifest"}},
    ]}  # fmt: skip
    idesc = lay.add(lay.blob(canonical(index), OCI_INDEX), "v1")
    return Made(lay.close(), {"v1": idesc}, {"image": img["digest"], "attestation": att["digest"]})


def schema2_list(out: Path) -> Made:
    """``v1``: a docker manifest list over an amd64 and an arm64 docker schema 2 image."""
    lay = Layout(out / "schema2-list")
    children = []
    for arch in ("amd64", "arm64"):
        m = image(lay, [simple_layer({"arch.txt": arch.encode() + b"\n"})], docker=True, arch=arch, label=arch)
        plat = {"architecture": arch, "os": "linux", **({"variant": "v8"} if arch == "arm64" else {})}
        children.append({**m, "platform": plat})
    lst = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": children}
    ldesc = lay.add(lay.blob(canonical(lst), DOCKER_LIST), "v1")
    return Made(lay.close(), {"v1": ldesc}, {"children": {c["platform"]["architecture"]: c for c in children}})


def short_ref(out: Path) -> Made:
    """An OCI layout whose only ref name is ``bb:1.0`` (as ctr and buildkit write them), and the same as a tar."""
    lay = Layout(out / "short-ref")
    m = image(lay, [simple_layer({"bb.txt": b"short name\n"})], label="short")
    lay.add(m, "bb:1.0")
    root = lay.close()
    tar = out / "short-ref.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
        for p in sorted(root.rglob("*")):
            info = tf.gettarinfo(str(p), p.relative_to(root).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if p.is_file():
                with p.open("rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)
    return Made(root, {"bb:1.0": m}, {"tar": tar})


def holey(path: Path, size: int, pieces: list[tuple[int, bytes]]) -> None:
    """A file of ``size`` bytes, holes everywhere but ``pieces`` (offset, data)."""
    with path.open("wb") as f:
        f.truncate(size)
        for off, data in pieces:
            f.seek(off)
            f.write(data)


def _gnu_tar(src: Path, name: str, flags: list[str], dest: Path) -> None:
    tar = shutil.which("tar")
    if tar is None:
        raise RuntimeError("GNU tar is needed to write the sparse vectors")
    pax = ["--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"] if "posix" in flags[0] else []
    subprocess.run([tar, "-C", str(src), *flags, *pax, "--sparse", "--mtime=@0", "--owner=0", "--group=0",
                    "--numeric-owner", "--sort=name", "-cf", str(dest), name],
                   check=True, env={**os.environ, "LC_ALL": "C"})  # fmt: skip
    _fixed_sparse_names(dest)


def _fixed_sparse_names(tar: Path) -> None:
    """GNU tar names a PAX sparse member ``./GNUSparseFile.<its pid>/NAME``; the pid becomes 0 here (header
    checksum recomputed) so that the same input always gives the same bytes."""
    with tar.open("r+b") as f:
        offset = 0
        while True:
            f.seek(offset)
            block = bytearray(f.read(512))
            if len(block) < 512 or block == bytes(512):
                return
            name = bytes(block[:100]).rstrip(b"\0")
            if name.startswith(b"./GNUSparseFile."):
                rest = name.split(b"/", 2)[2]
                block[:100] = (b"./GNUSparseFile.0/" + rest).ljust(100, b"\0")
                block[148:156] = b" " * 8
                block[148:156] = b"%06o\0 " % sum(block)
                f.seek(offset)
                f.write(block)
            size = int(bytes(block[124:136]).rstrip(b"\0 ") or b"0", 8)
            offset += 512 + (size + 511) // 512 * 512


def _gzip_file(src: Path, dest: Path) -> None:
    with src.open("rb") as fin, dest.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                                     compresslevel=1) as gzf:  # fmt: skip
        while chunk := fin.read(MiB):
            gzf.write(chunk)


def _tar_layers(lay: Layout, work: Path, tars: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    descs, diff_ids = [], []
    for t in tars:
        h = hashlib.sha256()
        with t.open("rb") as f:
            while chunk := f.read(MiB):
                h.update(chunk)
        diff_ids.append("sha256:" + h.hexdigest())
        gzp = work / (t.name + ".gz")
        _gzip_file(t, gzp)
        descs.append(lay.blob_file(gzp, OCI_LAYER_GZIP))
    return descs, diff_ids


def _image_from(lay: Layout, descs: list[dict[str, Any]], diff_ids: list[str], label: str) -> dict[str, Any]:
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"Labels": {"corpus": label}}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}  # fmt: skip
    cdesc = lay.blob(canonical(config), OCI_CONFIG)
    return lay.blob(canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": descs}),
                    OCI_MANIFEST)  # fmt: skip


def sparse(out: Path) -> Made:
    """``v1``: one layer per PAX sparse format (0.0, 0.1, 1.0); ``gnu``: one layer of old GNU sparse headers
    (which Go's archive/tar, hence umoci, podman and containerd, cannot unpack). Each layer holds
    ``sparse-<format>``: 5 MiB, three data pieces, holes between."""
    lay = Layout(out / "sparse")
    work = out / "sparse-work"
    work.mkdir(parents=True, exist_ok=True)
    tars = []
    for fmt, flags in SPARSE_FORMATS.items():
        src = work / fmt
        src.mkdir(exist_ok=True)
        holey(src / f"sparse-{fmt}", SPARSE_SIZE, SPARSE_PIECES)
        tars.append(work / f"{fmt}.tar")
        _gnu_tar(src, f"sparse-{fmt}", flags, tars[-1])
    descs, diff_ids = _tar_layers(lay, work, tars)
    m = lay.add(_image_from(lay, descs[:-1], diff_ids[:-1], "sparse"), "v1")
    g = lay.add(_image_from(lay, descs[-1:], diff_ids[-1:], "sparse-gnu"), "gnu")
    shutil.rmtree(work)
    return Made(lay.close(), {"v1": m, "gnu": g}, {"size": SPARSE_SIZE, "pieces": SPARSE_PIECES})


def big_sparse(out: Path) -> Made:
    """``v1``: one layer with ``big.img``, an 8 GiB file that is all hole but two pages (GNU sparse PAX 1.0)."""
    lay = Layout(out / "big-sparse")
    work = out / "big-work"
    work.mkdir(parents=True, exist_ok=True)
    holey(work / "big.img", BIG_SIZE, BIG_PIECES)
    tar = work / "big.tar"
    _gnu_tar(work, "big.img", SPARSE_FORMATS["pax-1.0"], tar)
    (work / "big.img").unlink()
    descs, diff_ids = _tar_layers(lay, work, [tar])
    m = lay.add(_image_from(lay, descs, diff_ids, "big"), "v1")
    shutil.rmtree(work)
    return Made(lay.close(), {"v1": m}, {"size": BIG_SIZE, "pieces": BIG_PIECES})


def skopeo_dir(layout: Path, desc: dict[str, Any], dest: Path) -> Path:
    """The image ``desc`` of ``layout`` in skopeo's ``dir:`` form, which carries docker-typed manifests and lists
    (skopeo's ``oci:`` transport reads only OCI ones): ``manifest.json``, a list's children as
    ``<hex>.manifest.json``, every blob the layout has under its hex digest."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "version").write_text("Directory Transport Version: 1.1\n")
    blobs = layout / "blobs" / "sha256"
    raw = (blobs / desc["digest"][7:]).read_bytes()
    (dest / "manifest.json").write_bytes(raw)
    doc = json.loads(raw)
    manifests = [doc]
    for child in doc.get("manifests", []):
        craw = (blobs / child["digest"][7:]).read_bytes()
        (dest / f"{child['digest'][7:]}.manifest.json").write_bytes(craw)
        manifests.append(json.loads(craw))
    for m in manifests:
        for d in [m.get("config"), *m.get("layers", [])]:
            if d and (blobs / d["digest"][7:]).exists():
                shutil.copyfile(blobs / d["digest"][7:], dest / d["digest"][7:])
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--foreign-url", default="http://127.0.0.1:8000/blobs/")
    p.add_argument("--big", action="store_true", help="also the 8 GiB sparse layer")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    made = [artifact(args.out), foreign(args.out, args.foreign_url), attestation(args.out),
            schema2_list(args.out), short_ref(args.out), sparse(args.out)]  # fmt: skip
    if args.big:
        made.append(big_sparse(args.out))
    for m in made:
        print(m.layout, " ".join(f"{k}={v['digest']}" for k, v in m.refs.items()))


if __name__ == "__main__":
    main()
