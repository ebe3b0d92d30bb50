"""import (rootfs tarball -> one-layer image) and the deterministic tree tar writer behind export."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import shutil
import subprocess
import tarfile

import pytest

import imgcore
from imgcore.containers import export as exporting
from imgcore.errors import InvalidArchive, InvalidReference
from imgcore.image import catalog, importer, sizes
from imgcore.models import OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from tests.images_helpers import layer_tar
from tests.validate import assert_valid_image, decompress_layer

ROOTFS = {
    "bin/sh": b"#!fake shell\n",
    "etc/os-release": b"NAME=mini\n",
    "usr/share/doc/": None,
    "usr/lib/libc.so@": b"->../../lib/libc.so.6",
    "lib/libc.so.6": b"\x7fELF" + b"\0" * 4000,
}


def _zstd(data: bytes) -> bytes:
    exe = shutil.which("zstd")
    if exe is None:
        pytest.skip("zstd command not installed (apt-get install -y zstd)")
    return subprocess.run([exe, "-q", "-c"], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("compression", ["plain", "gzip", "zstd", "gzip-multimember", "zstd-multiframe"])
def test_import_every_compression(store, tmp_path, compression):
    tar = layer_tar(ROOTFS)
    blob = {
        "plain": lambda: tar,
        "gzip": lambda: gzip.compress(tar),
        "zstd": lambda: _zstd(tar),
        "gzip-multimember": lambda: gzip.compress(tar[:1024]) + gzip.compress(tar[1024:]) + b"\0" * 100,
        "zstd-multiframe": lambda: _zstd(tar[:1024]) + _zstd(tar[1024:]),
    }[compression]()
    src = tmp_path / f"rootfs.{compression}"
    src.write_bytes(blob)
    img = importer.import_image(store, src, "mini-os:1.0", message="busybox rootfs", changes=["ENV A=1", "CMD sh"])
    assert_valid_image(store, "mini-os:1.0")
    assert img.config.diff_ids == [imgcore.sha256(tar)]
    layer = img.layers[0]
    if compression in ("gzip", "zstd", "gzip-multimember", "zstd-multiframe"):
        assert layer.digest == imgcore.sha256(blob)  # stored as it came
        assert layer.media_type == (OCI_LAYER_ZSTD if compression.startswith("zstd") else OCI_LAYER_GZIP)
    else:
        assert layer.media_type == OCI_LAYER_GZIP
        assert decompress_layer(store.get_blob(layer.digest), layer.media_type) == tar
    assert sizes.layer_size(store, layer) == len(tar)
    assert img.config.history == [{"created": img.config.created, "comment": "busybox rootfs"}]
    assert img.config.config == {"Env": ["A=1"], "Cmd": ["/bin/sh", "-c", "sh"]}
    assert catalog.resolve(store, "mini-os:1.0").id == img.id


def test_import_of_a_plain_tar_is_deterministic(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    src = tmp_path / "rootfs.tar"
    src.write_bytes(layer_tar(ROOTFS))
    a = importer.import_image(store, src, "a:1")
    b = importer.import_image(store, io.BytesIO(src.read_bytes()), "b:1", source_name=str(src))
    assert a.layers == b.layers
    assert a.id == b.id  # same config: same created time (SOURCE_DATE_EPOCH), same comment
    assert a.config.created == "2023-11-14T22:13:20Z"
    assert a.config.history[0]["comment"] == f"Imported from {src}"
    c = importer.import_image(store, io.BytesIO(src.read_bytes()))
    assert c.config.history[0]["comment"] == "Imported from -"
    assert c.tags == ()
    assert [r.repository for r in catalog.list_images(store, ["dangling=true"])] == ["<none>"]
    assert_valid_image(store, c.id)


def test_import_of_an_empty_archive(store):
    img = importer.import_image(store, io.BytesIO(b"\0" * 1024), "empty:1")
    assert_valid_image(store, "empty:1")
    assert img.config.diff_ids == [imgcore.sha256(b"\0" * 1024)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a tar archive"),
        (b"hello world\n" * 100, "not a tar archive"),
        (layer_tar(ROOTFS)[:-100], "truncated tar archive"),
        (gzip.compress(layer_tar(ROOTFS))[:-20], "truncated gzip stream"),
        (b"\x1f\x8b\x08\x00" + b"garbage" * 50, "corrupt gzip stream"),
        (gzip.compress(b"not a tar at all, just text" * 40), "not a tar archive"),
        (bz2.compress(layer_tar(ROOTFS)), "bzip2 compression is not supported"),
        (lzma.compress(layer_tar(ROOTFS)), "xz compression is not supported"),
    ],
)
def test_import_refuses_what_is_not_a_tar(store, data, message):
    """Every malformed input names what it is not; bzip2 and xz are refused (the one decoder reads what OCI layers
    may be: tar, gzip, zstd)."""
    with pytest.raises(InvalidArchive, match=message):
        importer.import_image(store, io.BytesIO(data), "bad:1")
    assert store.tags() == {}
    assert store.list_blobs() == []  # nothing half-written is left behind
    assert not [p for p in (store.root / "imgcore" / "ingest").iterdir() if not p.name.endswith(".lock")]


def test_import_checks_the_reference_before_reading(store):
    with pytest.raises(InvalidReference):
        importer.import_image(store, io.BytesIO(layer_tar(ROOTFS)), "Bad:Ref")
    with pytest.raises(InvalidReference, match="digest"):
        importer.import_image(store, io.BytesIO(layer_tar(ROOTFS)), "x@sha256:" + "0" * 64)
    with pytest.raises(imgcore.errors.ImgcoreError, match="invalid change"):
        importer.import_image(store, io.BytesIO(layer_tar(ROOTFS)), "x:1", changes=["FROB x"])
    assert store.list_blobs() == []


# ------------------------------------------------------------------------------------------------- tree tar


def _tree(root):
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin" / "busybox").write_bytes(b"\x7fELF" + b"x" * 5000)
    os.link(root / "bin" / "busybox", root / "bin" / "sh")
    (root / "bin" / "ls").symlink_to("busybox")
    (root / "dangling").symlink_to("/nowhere/at/all")
    (root / "empty").mkdir()
    (root / "run").mkdir()
    os.mkfifo(root / "run" / "fifo")
    (root / "bin" / "busybox").chmod(0o4755)
    os.utime(root / "etc" / "passwd", (1_600_000_000, 1_600_000_000))
    with contextlib.suppress(OSError):  # some filesystems refuse user xattrs
        os.setxattr(root / "etc" / "passwd", "user.note", b"kept")


def test_write_tree_tar_is_deterministic_and_faithful(tmp_path):
    root = tmp_path / "rootfs"
    _tree(root)
    a, b = io.BytesIO(), io.BytesIO()
    n = exporting.write_tree_tar(root, a)
    exporting.write_tree_tar(root, b)
    assert a.getvalue() == b.getvalue()
    with tarfile.open(fileobj=io.BytesIO(a.getvalue())) as tf:
        members = {m.name: m for m in tf.getmembers()}
        names = [m.name for m in tf.getmembers()]
        assert len(names) == n
        assert names == sorted(names, key=lambda x: x.split("/"))
        assert not any(x.startswith(("/", "./")) for x in names)
        assert members["bin/sh"].islnk() != members["bin/busybox"].islnk()
        first, second = sorted(["bin/busybox", "bin/sh"])
        assert members[second].islnk()
        assert members[second].linkname == first
        assert members["bin/ls"].issym()
        assert members["bin/ls"].linkname == "busybox"
        assert members["dangling"].linkname == "/nowhere/at/all"
        assert members["run/fifo"].isfifo()
        assert members["empty"].isdir()
        assert members["bin/busybox"].mode == 0o4755
        assert members["etc/passwd"].mtime == 1_600_000_000
        assert members["etc/passwd"].uname == ""
        assert tf.extractfile("etc/passwd").read() == b"root:x:0:0::/root:/bin/sh\n"
        if "SCHILY.xattr.user.note" in members["etc/passwd"].pax_headers:
            assert members["etc/passwd"].pax_headers["SCHILY.xattr.user.note"] == "kept"
    # extracting the tar gives the same tree back
    out = tmp_path / "out"
    out.mkdir()
    with tarfile.open(fileobj=io.BytesIO(a.getvalue())) as tf:
        tf.extractall(out, filter="fully_trusted")
    assert (out / "bin" / "sh").stat().st_ino == (out / "bin" / "busybox").stat().st_ino
    assert str((out / "bin" / "ls").readlink()) == "busybox"
    assert (out / "etc" / "passwd").read_bytes() == (root / "etc" / "passwd").read_bytes()


def test_write_tree_tar_needs_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        exporting.write_tree_tar(tmp_path / "missing", io.BytesIO())


def test_imported_then_exported_tree_round_trips(store, tmp_path):
    """A tree written by the export writer imports to an image whose single layer is exactly that tar."""
    root = tmp_path / "rootfs"
    _tree(root)
    buf = io.BytesIO()
    exporting.write_tree_tar(root, buf)
    img = importer.import_image(store, io.BytesIO(buf.getvalue()), "roundtrip:1")
    assert_valid_image(store, "roundtrip:1")
    assert img.config.diff_ids == [imgcore.sha256(buf.getvalue())]


@pytest.mark.parametrize("backend", ["zstandard", "zstd-command"])
def test_zstd_layers_without_and_with_the_zstandard_module(store, monkeypatch, backend):
    """zstd is decoded by the zstandard module when installed, else by the zstd command; same results."""
    import sys

    tar = layer_tar(ROOTFS)
    blob = _zstd(tar)
    if backend == "zstd-command":
        monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard -> ImportError
    else:
        pytest.importorskip("zstandard")
    img = importer.import_image(store, io.BytesIO(blob), "z:1")
    assert img.config.diff_ids == [imgcore.sha256(tar)]
    (store.root / "imgcore" / "sizes" / f"sha256-{img.layers[0].digest[7:]}").unlink()
    assert sizes.layer_size(store, img.layers[0]) == len(tar)
    with pytest.raises(InvalidArchive, match="zstd"):
        importer.import_image(store, io.BytesIO(blob[: len(blob) // 2]), "z:2")
    assert_valid_image(store, "z:1")
