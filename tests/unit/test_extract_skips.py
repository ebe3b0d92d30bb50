"""Skips are never silent: every entry extraction does not create (device nodes and FIFOs without
``allow_devices``, unsupported tar types, refused xattrs) is listed in ``LayerStats.skipped`` with a reason, in
the Rust core and the pure twin alike, and ``imgcore layer apply`` prints each on stderr. As root with
``allow_devices=True`` char and block devices and FIFOs are created with their numbers and mode."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import imgcore
import imgcore.pure
from imgcore.cli import main
from tests.strategies import TarEntry, build_tar

ENGINES = {"rust": imgcore.extract_layer, "pure": imgcore.pure.extract_layer}
DEVICES = [
    TarEntry.device("dev/sda", "block", 8, 0, mode=0o660),
    TarEntry.device("dev/null", "char", 1, 3, mode=0o666),
    TarEntry.device("run/fifo", "fifo", mode=0o620),
]


def _with_odd_types(entries: list[TarEntry]) -> bytes:
    """``entries`` plus a GNU volume label ('V') and a GNU dumpdir ('D') entry before the end marker."""
    raw = build_tar([*entries, TarEntry.file("last", b"ok")])
    extra = b""
    for name, t in (("volume", b"V"), ("dumpdir", b"D")):
        ti = tarfile.TarInfo(name)
        ti.type = t
        ti.size = 3 if t == b"D" else 0
        extra += ti.tobuf(tarfile.GNU_FORMAT) + (b"Yx\0" + b"\0" * 509 if t == b"D" else b"")
    end = raw.rstrip(b"\0")
    end = raw[: -(-len(end) // 512) * 512]
    return end + extra + b"\0" * 1024


@pytest.fixture(params=sorted(ENGINES))
def extract(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return ENGINES[request.param]


def test_every_skip_is_listed_with_a_reason(extract: Callable[..., Any], tmp_path: Path) -> None:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(_with_odd_types(DEVICES))
    dest = tmp_path / "out"
    dest.mkdir()
    stats = extract(blob, dest)
    assert dict(stats.skipped) == {
        "dev/sda": "block device (needs root and allow_devices)",
        "dev/null": "char device (needs root and allow_devices)",
        "run/fifo": "fifo (needs allow_devices)",
        "volume": "unsupported entry type 'V' (GNU volume label)",
        "dumpdir": "unsupported entry type 'D' (GNU dumpdir)",
    }
    assert stats.entries == 6
    for p in ("dev/sda", "dev/null", "run/fifo", "volume", "dumpdir"):
        assert not os.path.lexists(dest / p)
    assert (dest / "last").read_bytes() == b"ok"


@pytest.mark.skipif(os.geteuid() != 0, reason="creating device nodes needs root")
def test_devices_and_fifos_are_created_as_root(extract: Callable[..., Any], tmp_path: Path) -> None:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(build_tar(DEVICES))
    dest = tmp_path / "out"
    dest.mkdir()
    old = os.umask(0)
    try:
        stats = extract(blob, dest, allow_devices=True)
    finally:
        os.umask(old)
    assert stats.skipped == []
    sda, null, fifo = (os.lstat(dest / p) for p in ("dev/sda", "dev/null", "run/fifo"))
    assert stat.S_ISBLK(sda.st_mode)
    assert (os.major(sda.st_rdev), os.minor(sda.st_rdev), stat.S_IMODE(sda.st_mode)) == (8, 0, 0o660)
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev), stat.S_IMODE(null.st_mode)) == (1, 3, 0o666)
    assert stat.S_ISFIFO(fifo.st_mode)
    assert stat.S_IMODE(fifo.st_mode) == 0o620


def test_unpack_layers_lists_skips_per_layer(tmp_path: Path) -> None:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(build_tar(DEVICES))
    dest = tmp_path / "out"
    dest.mkdir()
    for unpack in (imgcore.unpack_layers, imgcore.pure.unpack_layers):
        [stats] = unpack([blob], dest)
        assert sorted(p for p, _ in stats.skipped) == ["dev/null", "dev/sda", "run/fifo"]


def test_cli_layer_apply_prints_each_skip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(_with_odd_types(DEVICES))
    dest = tmp_path / "out"
    dest.mkdir()
    assert main(["layer", "apply", str(blob), str(dest)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "skipped /dev/sda: block device (needs root and allow_devices)" in err
    assert "skipped /dev/null: char device (needs root and allow_devices)" in err
    assert "skipped /run/fifo: fifo (needs allow_devices)" in err
    assert "skipped /volume: unsupported entry type 'V' (GNU volume label)" in err
    assert "skipped  5 entries or attributes" in err
