"""Sizes from PAX records, base-256 sizes and GNU sparse files (old GNU ``S``, PAX 0.0, 0.1 and 1.0), Rust and the
pure twin alike: GNU tar itself writes the sparse vectors at test time from files made with holes, and the
result is compared with GNU tar's own extraction (content, size) and checked to keep the holes as holes.
Also: files of 8 GiB and more through ``write_layer`` (PAX ``size`` record) come back sparse on disk."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

import imgcore
import imgcore.pure
from tests.conftest import require_tool
from tests.vectors.make_odd_images import holey

MiB = 1 << 20
ENGINES = {"rust": imgcore.extract_layer, "pure": imgcore.pure.extract_layer}
INDEXES = {"rust": imgcore.layer_index, "pure": imgcore.pure.layer_index}


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


SHAPES: dict[str, tuple[int, list[tuple[int, bytes]]]] = {
    "middle": (5 * MiB, [(MiB, b"hello" * 1000), (5 * MiB - 3, b"end")]),
    "leading-data-trailing-hole": (3 * MiB + 100, [(0, os.urandom(10_000))]),
    "all-hole": (2 * MiB, []),
    "many-segments": (4 * MiB + 123, [(i * 256 * 1024, bytes([i + 1]) * 5000) for i in range(16)]),
}
FORMATS = {
    "pax-0.0": ["--format=posix", "--sparse-version=0.0"],
    "pax-0.1": ["--format=posix", "--sparse-version=0.1"],
    "pax-1.0": ["--format=posix", "--sparse-version=1.0"],
    "gnu": ["--format=gnu"],
}


@pytest.fixture(scope="module")
def sparse_vectors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tar per format written by GNU tar from files with holes, and GNU tar's own extraction of it."""
    tar = require_tool("tar")
    top = tmp_path_factory.mktemp("sparse")
    src = top / "src"
    (src / "dir").mkdir(parents=True)
    for name, (size, pieces) in SHAPES.items():
        holey(src / "dir" / name, size, pieces)
    # A long name too (GNU long name record or PAX path), to check the real name survives the sparse header.
    holey(src / "dir" / ("long-" * 30), 2 * MiB, [(MiB, b"x")])
    out: dict[str, Any] = {"src": src}
    for fmt, args in FORMATS.items():
        blob = top / f"{fmt}.tar"
        subprocess.run([tar, "-C", str(src), "--sparse", *args, "-cf", str(blob), "dir"], check=True)
        ref = top / f"{fmt}-gnutar"
        ref.mkdir()
        subprocess.run([tar, "-C", str(ref), "-xf", str(blob)], check=True)
        out[fmt] = (blob, ref)
    return out


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_gnu_sparse_formats_match_gnu_tar(
    sparse_vectors: dict[str, Any], tmp_path: Path, engine: str, fmt: str
) -> None:
    blob, ref = sparse_vectors[fmt]
    dest = tmp_path / "out"
    dest.mkdir()
    stats = ENGINES[engine](blob, dest)
    assert stats.skipped == []
    assert stats.diff_id == "sha256:" + sha256_file(blob)  # computed over the raw bytes, as ever
    names = sorted(p.name for p in (dest / "dir").iterdir())
    assert names == sorted(p.name for p in (ref / "dir").iterdir())  # real names, never GNUSparseFile.NNN/...
    assert not any("GNUSparseFile" in n for n in names)
    index = {row[0]: row[5] for row in INDEXES[engine]([blob])}
    for name in names:
        ours, theirs = dest / "dir" / name, ref / "dir" / name
        assert ours.stat().st_size == theirs.stat().st_size
        assert index[f"dir/{name}"] == theirs.stat().st_size
        assert sha256_file(ours) == sha256_file(theirs), name
        # Holes stay holes: no more blocks than GNU tar's own result (plus one 4 KiB block per data segment).
        src_blocks = (sparse_vectors["src"] / "dir" / name).stat().st_blocks
        assert ours.stat().st_blocks <= max(src_blocks, theirs.stat().st_blocks) + 8 * 17, name
        assert ours.stat().st_blocks * 512 < ours.stat().st_size or ours.stat().st_size < 64 * 1024


def _tar_with_pax_size(data: bytes, header_size: bytes) -> bytes:
    """A PAX tar whose entry's data size is only in the PAX ``size`` record; the header field holds ``header_size``
    (12 bytes: zeros, or a base-256 number)."""
    ti = tarfile.TarInfo("big.bin")
    ti.size = len(data)
    ti.mode = 0o644
    ti.mtime = 1_700_000_000
    ti.pax_headers = {"size": str(len(data))}
    raw = bytearray(ti.tobuf(tarfile.PAX_FORMAT))
    hdr = len(raw) - 512  # the entry's own header follows the PAX header
    raw[hdr + 124 : hdr + 136] = header_size
    raw[hdr + 148 : hdr + 156] = b" " * 8
    raw[hdr + 148 : hdr + 156] = b"%06o\0 " % sum(raw[hdr : hdr + 512])
    pad = -len(data) % 512
    return bytes(raw) + data + b"\0" * pad + b"\0" * 1024


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize(
    "field", [b"00000000000\0", b"\x80" + (5000).to_bytes(11, "big")], ids=["zero-header-size", "base-256"]
)
def test_pax_size_record_wins(tmp_path: Path, engine: str, field: bytes) -> None:
    data = os.urandom(5000)
    blob = tmp_path / "layer.tar"
    blob.write_bytes(_tar_with_pax_size(data, field))
    # Python's tarfile reads it the same way (the oracle for the oracle).
    with tarfile.open(blob) as tf:
        assert tf.getmember("big.bin").size == 5000
    dest = tmp_path / "out"
    dest.mkdir()
    stats = ENGINES[engine](blob, dest)
    assert (dest / "big.bin").read_bytes() == data
    assert stats.files == 1
    assert [r[5] for r in INDEXES[engine]([blob]) if r[0] == "big.bin"] == [5000]


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_base256_header_size_without_pax(tmp_path: Path, engine: str) -> None:
    data = os.urandom(777)
    ti = tarfile.TarInfo("b256")
    ti.size = len(data)
    raw = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    raw[124:136] = b"\x80" + len(data).to_bytes(11, "big")
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw[:512])
    blob = tmp_path / "layer.tar"
    blob.write_bytes(bytes(raw) + data + b"\0" * (-len(data) % 512) + b"\0" * 1024)
    dest = tmp_path / "out"
    dest.mkdir()
    ENGINES[engine](blob, dest)
    assert (dest / "b256").read_bytes() == data


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_pax_size_over_max_bytes_is_refused(tmp_path: Path, engine: str) -> None:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(_tar_with_pax_size(b"x" * 4096, b"00000000000\0"))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(imgcore.errors.LimitExceeded, match="max_bytes"):
        ENGINES[engine](blob, dest, max_bytes=2048)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_zero_runs_of_plain_files_become_holes(tmp_path: Path, engine: str) -> None:
    data = b"a" * 5000 + b"\0" * (6 * MiB) + b"b" * 10 + b"\0" * (2 * MiB)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("zeros")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    blob = tmp_path / "layer.tar"
    blob.write_bytes(buf.getvalue())
    dest = tmp_path / "out"
    dest.mkdir()
    ENGINES[engine](blob, dest)
    st = (dest / "zeros").stat()
    assert st.st_size == len(data)
    assert (dest / "zeros").read_bytes() == data
    assert st.st_blocks * 512 <= 64 * 1024  # two short data runs, the rest holes (trailing one included)


# -- files of 8 GiB and more ------------------------------------------------------------------------------------

HUGE = (8 << 30) + 3 * 4096 + 7
PIECES = [(0, b"HEAD"), (4 << 30, b"MIDDLE"), (HUGE - 4, b"TAIL")]


def make_huge_tree(top: Path) -> tuple[Path, Path]:
    base, target = top / "base", top / "target"
    base.mkdir()
    target.mkdir()
    holey(target / "huge", HUGE, PIECES)
    (target / "small").write_text("small")
    return base, target


def check_huge(path: Path) -> None:
    st = path.stat()
    assert st.st_size == HUGE
    assert st.st_blocks * 512 < 4 * MiB, "the zero runs were written instead of kept as holes"
    with path.open("rb") as f:
        for off, data in PIECES:
            f.seek(off)
            assert f.read(len(data)) == data
        f.seek((2 << 30) + 12345)
        assert f.read(4096) == b"\0" * 4096


@pytest.mark.slow
def test_8gib_file_roundtrip_through_write_layer(tmp_path: Path) -> None:
    base, target = make_huge_tree(tmp_path)
    blob = tmp_path / "layer.zst"
    result = imgcore.write_layer(base, target, blob, compression="zstd", level=1)
    assert result.uncompressed_size > HUGE
    assert blob.stat().st_size < 64 * MiB
    for name, extract in sorted(ENGINES.items()):
        dest = tmp_path / name
        dest.mkdir()
        stats = extract(blob, dest, expected_diff_id=result.diff_id, expected_digest=result.digest)
        assert stats.bytes == result.uncompressed_size
        check_huge(dest / "huge")
        assert (dest / "small").read_text() == "small"
        (dest / "huge").unlink()
        rows = {r[0]: r[5] for r in INDEXES[name]([blob])}
        assert rows["huge"] == HUGE
    dest = tmp_path / "unpacked"
    dest.mkdir()
    [stats] = imgcore.unpack_layers([blob], dest, expected_diff_ids=[result.diff_id])
    check_huge(dest / "huge")
