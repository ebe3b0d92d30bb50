"""Hostile layer archives, built by the tests themselves: nothing outside ``dest`` may change, bad input raises a
typed error that names the entry. Every case runs against the Rust engine (openat2 and the O_NOFOLLOW walk) and
the pure twin, and without the writer pool, each with a canary tree beside ``dest`` snapshotted before and after.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import imgcore
import imgcore.pure
from imgcore.errors import InvalidArchive, LimitExceeded, UnsafeArchiveEntry
from tests.strategies import TarEntry, build_tar

ENGINES = ["rust", "rust-walk", "rust-serial", "pure"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    if request.param == "pure":
        return imgcore.pure.extract_layer
    monkeypatch.setenv("IMGCORE_FORCE_WALK", "1" if request.param == "rust-walk" else "0")
    # rust-serial: no writer pool (every file written on the parsing thread).
    monkeypatch.setenv("IMGCORE_WRITERS", "0" if request.param == "rust-serial" else "2")
    return imgcore.extract_layer


def snapshot(top: Path, skip: Path) -> dict[str, tuple[Any, ...]]:
    """Everything under ``top`` except ``skip``: type, mode, owner, size, mtime, content hash, link target."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        d = Path(dirpath)
        if d == skip:
            dirnames[:] = []
            continue
        dirnames[:] = [n for n in dirnames if d / n != skip]
        for name in [*dirnames, *filenames, "."]:
            p = d / name
            st = p.lstat()
            content: Any = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = str(p.readlink())
            mtime = None if stat.S_ISDIR(st.st_mode) and name == "." and d == top else st.st_mtime_ns
            out[str(p.relative_to(top))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, mtime, st.st_nlink, content)
    return out


@pytest.fixture
def arena(tmp_path: Path) -> Path:
    """tmp/canary (a tree that must never change), tmp/outside.txt, tmp/dest (the target)."""
    (tmp_path / "canary" / "sub").mkdir(parents=True)
    (tmp_path / "canary" / "secret.txt").write_text("do not touch")
    (tmp_path / "canary" / "sub" / "deep.txt").write_text("deep")
    (tmp_path / "canary" / "secret.txt").chmod(0o640)
    (tmp_path / "outside.txt").write_text("outside")
    (tmp_path / "dest").mkdir()
    return tmp_path


def run(engine: Callable[..., Any], arena: Path, entries: list[TarEntry], compression: str = "none", **kw: Any) -> Any:
    blob = arena / "layer.blob"
    blob.write_bytes(build_tar(entries, compression=compression))
    before = snapshot(arena, arena / "dest")
    try:
        return engine(blob, arena / "dest", **kw)
    finally:
        after = snapshot(arena, arena / "dest")
        assert after == before, "extraction changed something outside dest"


def run_raw(engine: Callable[..., Any], arena: Path, data: bytes, **kw: Any) -> Any:
    blob = arena / "layer.blob"
    blob.write_bytes(data)
    before = snapshot(arena, arena / "dest")
    try:
        return engine(blob, arena / "dest", **kw)
    finally:
        assert snapshot(arena, arena / "dest") == before, "extraction changed something outside dest"


F = TarEntry.file
D = TarEntry.dir
S = TarEntry.symlink
H = TarEntry.hardlink


# -- names that climb out ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../outside.txt", "../canary/secret.txt", "a/../../outside.txt", "./../outside.txt", "a/b/../../../x", ".."],
)
def test_dotdot_names_are_refused(engine: Callable[..., Any], arena: Path, name: str) -> None:
    with pytest.raises(UnsafeArchiveEntry) as ei:
        run(engine, arena, [D("a"), F(name, b"pwned")])
    assert name in str(ei.value)
    assert ei.value.entry == name


def test_dotdot_in_pax_path_is_refused(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(UnsafeArchiveEntry, match=r"\.\./outside\.txt"):
        run(engine, arena, [F("innocent", b"x", pax={"path": "../outside.txt"})])


def test_dotdot_in_gnu_long_name_is_refused(engine: Callable[..., Any], arena: Path) -> None:
    long = "../" + "x" * 150
    with pytest.raises(UnsafeArchiveEntry):
        run(engine, arena, [F(long, b"x", fmt=tarfile.GNU_FORMAT)])


def test_absolute_names_land_inside(engine: Callable[..., Any], arena: Path) -> None:
    abs_name = str(arena / "canary" / "abs.txt")
    run(engine, arena, [F(abs_name, b"inside"), F("/top.txt", b"top")])
    assert (arena / "dest" / abs_name.lstrip("/")).read_bytes() == b"inside"
    assert (arena / "dest" / "top.txt").read_bytes() == b"top"


# -- symlinks used as parents -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        ("ABS_CANARY", "ABS_CANARY/pwned"),  # absolute target: interpreted inside the root
        ("../canary", "canary/pwned"),  # relative, climbing: clamped at the root
        ("../../../../../../..", "pwned"),
        ("/", "pwned"),
        (".", "pwned"),
    ],
)
def test_symlink_parent_is_resolved_inside(engine: Callable[..., Any], arena: Path, target: str, lands: str) -> None:
    abs_canary = str(arena / "canary")
    target = target.replace("ABS_CANARY", abs_canary)
    lands = lands.replace("ABS_CANARY", abs_canary.lstrip("/"))
    run(engine, arena, [S("evil", target), F("evil/pwned", b"pwned")])
    assert (arena / "dest" / lands).read_bytes() == b"pwned"
    assert str(Path.readlink(arena / "dest" / "evil")) == target  # stored as it is


def test_symlink_chain_is_resolved_inside(engine: Callable[..., Any], arena: Path) -> None:
    run(engine, arena, [D("d"), S("d/a", "b"), S("d/b", "../c"), S("c", "../../.."), F("d/a/pwned", b"x")])
    assert (arena / "dest" / "pwned").read_bytes() == b"x"


def test_symlink_loop_is_refused(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(UnsafeArchiveEntry, match="l1/x"):
        run(engine, arena, [S("l1", "l2"), S("l2", "l1"), F("l1/x", b"x")])


@pytest.mark.parametrize("name", [".", "./", "/"])
def test_symlink_named_root_is_refused(engine: Callable[..., Any], arena: Path, name: str) -> None:
    with pytest.raises(UnsafeArchiveEntry):
        run(engine, arena, [S(name, str(arena / "canary")), F("pwned", b"x")])


def test_symlink_named_dotdot_is_refused(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(UnsafeArchiveEntry):
        run(engine, arena, [D("a"), S("a/../..", str(arena / "canary"))])


def test_directory_entry_replaces_symlink(engine: Callable[..., Any], arena: Path) -> None:
    run(engine, arena, [S("evil", str(arena / "canary")), D("evil", mode=0o777), F("evil/x", b"x")])
    assert (arena / "dest" / "evil").is_dir()
    assert not (arena / "dest" / "evil").is_symlink()
    assert (arena / "dest" / "evil" / "x").read_bytes() == b"x"


def test_file_entry_replaces_symlink_without_writing_through(engine: Callable[..., Any], arena: Path) -> None:
    run(engine, arena, [S("evil", str(arena / "canary" / "secret.txt")), F("evil", b"overwritten", mode=0o777)])
    assert (arena / "dest" / "evil").read_bytes() == b"overwritten"
    assert not (arena / "dest" / "evil").is_symlink()


def test_symlink_to_outside_then_chmod_via_dir_entry(engine: Callable[..., Any], arena: Path) -> None:
    run(engine, arena, [S("s", "../canary/sub"), D("s/.", mode=0o777)])
    assert (arena / "dest" / "s").is_dir()


def test_entry_under_a_file_is_refused(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(InvalidArchive, match="f/x"):
        run(engine, arena, [F("f", b"file"), F("f/x", b"x")])


# -- hardlinks --------------------------------------------------------------------------------------------------


def test_hardlink_to_absolute_path_is_inside(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(InvalidArchive, match="does not exist"):
        run(engine, arena, [H("h", str(arena / "canary" / "secret.txt"))])


def test_hardlink_dotdot_is_refused(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(UnsafeArchiveEntry, match="hardlink"):
        run(engine, arena, [H("h", "../canary/secret.txt")])


def test_hardlink_through_symlink_out_is_inside(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(InvalidArchive, match="does not exist"):
        run(engine, arena, [S("evil", str(arena / "canary")), H("h", "evil/secret.txt")])


def test_hardlink_to_symlink_pointing_out_then_overwrite(engine: Callable[..., Any], arena: Path) -> None:
    secret = str(arena / "canary" / "secret.txt")
    run(engine, arena, [S("s", secret), H("h", "s"), F("h", b"new", mode=0o666)])
    assert str(Path.readlink(arena / "dest" / "s")) == secret
    assert (arena / "dest" / "h").read_bytes() == b"new"


def test_hardlink_to_directory_is_refused(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(InvalidArchive, match="directory"):
        run(engine, arena, [D("d"), H("h", "d")])


def test_hardlink_shares_inode(engine: Callable[..., Any], arena: Path) -> None:
    run(engine, arena, [F("a", b"data"), H("b", "a"), H("/c", "/a")])
    a, b, c = (os.lstat(arena / "dest" / n) for n in "abc")
    assert a.st_ino == b.st_ino == c.st_ino
    assert a.st_nlink == 3


# -- whiteouts --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".wh..", ".wh...", "d/.wh.."])
def test_whiteout_of_dot_or_dotdot_is_refused(engine: Callable[..., Any], arena: Path, name: str) -> None:
    with pytest.raises(UnsafeArchiveEntry):
        run(engine, arena, [D("d"), F(name, b"")])


def test_whiteout_dotdot_path_is_refused(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(UnsafeArchiveEntry):
        run(engine, arena, [F("../.wh.canary", b"")])


def test_whiteout_through_symlink_stays_inside(engine: Callable[..., Any], arena: Path) -> None:
    (arena / "dest" / "keep.txt").write_text("lower")
    run(engine, arena, [S("evil", str(arena / "canary")), F("evil/.wh.secret.txt", b""), F("evil/.wh.sub", b"")])
    assert (arena / "dest" / "keep.txt").exists()


def test_opaque_through_symlink_stays_inside(engine: Callable[..., Any], arena: Path) -> None:
    (arena / "dest" / "lower.txt").write_text("lower")
    run(engine, arena, [S("evil", "../../canary"), F("evil/.wh..wh..opq", b"")])
    # The symlink resolves to dest/canary (inside): the opaque marker applies there, not to the real canary.
    assert (arena / "dest" / "lower.txt").exists()


# -- devices, limits --------------------------------------------------------------------------------------------


def test_devices_are_skipped_unless_allowed(engine: Callable[..., Any], arena: Path) -> None:
    entries = [TarEntry.device("null", "char", 1, 3), TarEntry.device("fifo", "fifo")]
    stats = run(engine, arena, entries)
    assert not (arena / "dest" / "null").exists()
    assert not (arena / "dest" / "fifo").exists()
    assert sorted(p for p, _ in stats.skipped) == ["fifo", "null"]


@pytest.mark.skipif(os.geteuid() != 0, reason="creating device nodes needs root")
def test_devices_when_allowed_as_root(engine: Callable[..., Any], arena: Path) -> None:
    run(engine, arena, [TarEntry.device("null", "char", 1, 3), TarEntry.device("fifo", "fifo")], allow_devices=True)
    st = os.lstat(arena / "dest" / "null")
    assert stat.S_ISCHR(st.st_mode)
    assert os.major(st.st_rdev) == 1
    assert os.minor(st.st_rdev) == 3
    assert stat.S_ISFIFO(os.lstat(arena / "dest" / "fifo").st_mode)


def test_entry_limit(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(LimitExceeded, match="max_entries"):
        run(engine, arena, [F(f"f{i}", b"x") for i in range(20)], max_entries=10)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_byte_limit_stops_a_bomb(engine: Callable[..., Any], arena: Path, compression: str) -> None:
    with pytest.raises(LimitExceeded, match="max_bytes"):
        run(engine, arena, [F("zeros", b"\0" * (8 << 20))], compression=compression, max_bytes=1 << 20)


def test_huge_long_name_is_refused_without_buffering(engine: Callable[..., Any], arena: Path) -> None:
    hdr = tarfile.TarInfo("././@LongLink")
    hdr.type = tarfile.GNUTYPE_LONGNAME
    hdr.size = 1 << 30
    data = hdr.tobuf(tarfile.GNU_FORMAT) + b"a" * 4096
    with pytest.raises(InvalidArchive):
        run_raw(engine, arena, data)


# -- malformed input --------------------------------------------------------------------------------------------


def _tar(entries: list[TarEntry]) -> bytes:
    return build_tar(entries)


def test_truncated_entry_data_names_the_entry(engine: Callable[..., Any], arena: Path) -> None:
    data = _tar([F("first", b"1"), F("big.bin", os.urandom(10000))])
    with pytest.raises(InvalidArchive, match=r"big\.bin|truncated|unexpected end"):
        run_raw(engine, arena, data[: 512 * 4 + 3000])


def test_missing_end_marker_is_truncation(engine: Callable[..., Any], arena: Path) -> None:
    data = _tar([F("a", b"1"), F("b", b"2")])
    with pytest.raises(InvalidArchive, match=r"end-of-archive|truncated"):
        run_raw(engine, arena, data[: 512 * 4])


def test_empty_blob_is_invalid(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(InvalidArchive):
        run_raw(engine, arena, b"")


def test_corrupt_header_checksum(engine: Callable[..., Any], arena: Path) -> None:
    data = bytearray(_tar([F("a", b"1"), F("b", b"2")]))
    data[1024 + 10] ^= 0x55  # second header's name field
    with pytest.raises(InvalidArchive, match=r"corrupt|checksum|invalid header"):
        run_raw(engine, arena, bytes(data))


def test_non_numeric_mode(engine: Callable[..., Any], arena: Path) -> None:
    data = bytearray(_tar([F("weird", b"1")]))
    data[100:108] = b"zzzzzzz\0"
    chk = sum(data[:148]) + 8 * 32 + sum(data[156:512])
    data[148:156] = b"%06o\0 " % chk
    with pytest.raises(InvalidArchive):
        run_raw(engine, arena, bytes(data))


def test_trailing_garbage_after_end_marker(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(InvalidArchive, match="trailing garbage"):
        run_raw(engine, arena, _tar([F("a", b"1")]) + b"GARBAGE" * 100)


def test_zero_padding_after_end_marker_is_fine(engine: Callable[..., Any], arena: Path) -> None:
    stats = run_raw(engine, arena, _tar([F("a", b"1")]) + b"\0" * 20480)
    assert stats.files == 1


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_gzip(engine: Callable[..., Any], arena: Path, cut: float) -> None:
    gz = build_tar([F("a", os.urandom(50000)), F("b", b"x" * 1000)], compression="gzip")
    with pytest.raises(InvalidArchive):
        run_raw(engine, arena, gz[: int(len(gz) * cut)])


def test_corrupt_gzip(engine: Callable[..., Any], arena: Path) -> None:
    gz = bytearray(build_tar([F("a", bytes(range(256)) * 200)], compression="gzip"))
    for i in range(20, 60):
        gz[i] ^= 0xA5
    with pytest.raises(InvalidArchive):
        run_raw(engine, arena, bytes(gz))


def test_gzip_crc_mismatch(engine: Callable[..., Any], arena: Path) -> None:
    gz = bytearray(build_tar([F("a", b"hello")], compression="gzip"))
    gz[-8] ^= 0xFF
    with pytest.raises(InvalidArchive):
        run_raw(engine, arena, bytes(gz))


def test_trailing_garbage_after_gzip(engine: Callable[..., Any], arena: Path) -> None:
    gz = build_tar([F("a", b"hello")], compression="gzip")
    with pytest.raises(InvalidArchive):
        run_raw(engine, arena, gz + b"JUNKJUNK")


def test_multi_member_gzip_is_one_stream(engine: Callable[..., Any], arena: Path) -> None:
    raw = _tar([F("a", b"x" * 3000), F("b", b"y")])
    half = 1536
    data = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    stats = run_raw(engine, arena, data)
    assert stats.files == 2
    assert stats.compression == "gzip"
    assert stats.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("cut", [0.5, 0.95])
def test_truncated_zstd(engine: Callable[..., Any], arena: Path, cut: float) -> None:
    zs = build_tar([F("a", os.urandom(50000))], compression="zstd")
    with pytest.raises(InvalidArchive):
        run_raw(engine, arena, zs[: int(len(zs) * cut)])


def test_corrupt_zstd(engine: Callable[..., Any], arena: Path) -> None:
    zs = bytearray(build_tar([F("a", bytes(range(256)) * 200)], compression="zstd"))
    for i in range(12, len(zs) - 4):
        zs[i] ^= 0x5A
    with pytest.raises(InvalidArchive):
        run_raw(engine, arena, bytes(zs))


def test_unsupported_compression_is_named(engine: Callable[..., Any], arena: Path) -> None:
    with pytest.raises(InvalidArchive, match="bzip2"):
        run_raw(engine, arena, b"BZh91AY&SY" + b"\0" * 100)


def test_digest_mismatch_after_extraction(engine: Callable[..., Any], arena: Path) -> None:
    from imgcore.errors import DigestMismatch

    with pytest.raises(DigestMismatch) as ei:
        run(engine, arena, [F("a", b"1")], expected_diff_id="sha256:" + "0" * 64)
    assert ei.value.expected == "sha256:" + "0" * 64
    assert ei.value.actual is not None
    assert ei.value.actual.startswith("sha256:")


def test_errors_are_pickle_friendly(arena: Path) -> None:
    import pickle

    blob = arena / "x.tar"
    blob.write_bytes(build_tar([F("../x", b"1")]))
    with pytest.raises(UnsafeArchiveEntry) as ei:
        imgcore.extract_layer(blob, arena / "dest")
    again = pickle.loads(pickle.dumps(ei.value))
    assert str(again) == str(ei.value)
    assert again.entry == "../x"


def test_stream_read_of_bytesio_helper() -> None:
    # The builder itself: a plain tar it produces is readable by tarfile with the same names.
    data = build_tar([D("d"), F("d/f", b"abc"), S("d/s", "f")])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = [m.name for m in tf]
    assert names == ["d", "d/f", "d/s"]


# -- GNU sparse maps --------------------------------------------------------------------------------------------

VICTIM = "sparse-victim"


def _pax_sparse(pax: dict[str, str], data: bytes, header_name: str = "GNUSparseFile.0/" + VICTIM) -> bytes:
    ti = tarfile.TarInfo(header_name)
    ti.size = len(data)
    ti.pax_headers = {"GNU.sparse.name": VICTIM, **pax}
    return ti.tobuf(tarfile.PAX_FORMAT) + data + b"\0" * (-len(data) % 512) + b"\0" * 1024


def _sparse01(real: int, numbers: list[int], data: bytes, numblocks: int | None = None) -> bytes:
    pax = {
        "GNU.sparse.size": str(real),
        "GNU.sparse.numblocks": str(len(numbers) // 2 if numblocks is None else numblocks),
        "GNU.sparse.map": ",".join(map(str, numbers)),
    }
    return _pax_sparse(pax, data)


def _sparse10(real: int, map_text: bytes, data: bytes) -> bytes:
    pax = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": str(real)}
    return _pax_sparse(pax, map_text + b"\0" * (-len(map_text) % 512) + data)


def _old_gnu_sparse(real: int, pairs: list[tuple[int, int]], data: bytes) -> bytes:
    """An old GNU sparse header ('S') with up to 4 map entries in the header itself."""
    ti = tarfile.TarInfo(VICTIM)
    ti.size = len(data)
    ti.type = tarfile.GNUTYPE_SPARSE
    hdr = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    for i, (off, n) in enumerate(pairs[:4]):
        hdr[386 + 24 * i : 386 + 24 * i + 24] = b"%011o\0%011o\0" % (off, n)
    hdr[483:495] = b"%011o\0" % real
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    return bytes(hdr) + data + b"\0" * (-len(data) % 512) + b"\0" * 1024


HOSTILE_SPARSE = {
    "overlapping": (_sparse01(4096, [0, 1024, 512, 1024], b"x" * 2048), InvalidArchive, "overlap"),
    "unsorted": (_sparse01(4096, [2048, 512, 0, 512], b"x" * 1024), InvalidArchive, "out of order"),
    "past-real-size": (_sparse01(4096, [0, 512, 4000, 512], b"x" * 1024), InvalidArchive, "past the file's size"),
    "offset-beyond-size": (_sparse01(4096, [9000, 0], b""), InvalidArchive, "beyond the file's size"),
    "data-larger-than-member": (_sparse01(8192, [0, 4096], b"x" * 512), InvalidArchive, "member holds"),
    "member-larger-than-map": (_sparse01(8192, [0, 512], b"x" * 4096), InvalidArchive, "describes only"),
    "odd-map": (_sparse01(4096, [0, 512, 1024], b"x" * 512, numblocks=1), InvalidArchive, "odd|announces"),
    "count-mismatch": (_sparse01(4096, [0, 512], b"x" * 512, numblocks=3), InvalidArchive, "announces"),
    "absurd-numblocks": (_sparse01(4096, [0, 512], b"x" * 512, numblocks=10**12), LimitExceeded, "entry limit"),
    "real-size-over-max-bytes": (_sparse01(1 << 40, [0, 512], b"x" * 512), LimitExceeded, "max_bytes"),
    "1.0-absurd-count": (_sparse10(4096, b"99999999999\n", b""), LimitExceeded, "entry limit"),
    "1.0-garbage-number": (_sparse10(4096, b"1\n0\nzz\n", b"x" * 512), InvalidArchive, "bad number"),
    "1.0-overlong-number": (_sparse10(4096, b"1\n" + b"9" * 600, b""), InvalidArchive, "overlong|runs past"),
    "1.0-map-past-member": (_sparse10(4096, b"3\n0\n512\n", b""), InvalidArchive, "runs past|truncated|overlong"),
    "1.0-overlapping": (_sparse10(4096, b"2\n0\n1024\n512\n512\n", b"x" * 1536), InvalidArchive, "overlap"),
    "old-gnu-overlapping": (_old_gnu_sparse(4096, [(0, 1024), (512, 512)], b"x" * 1536), InvalidArchive, "overlap"),
    "old-gnu-past-size": (_old_gnu_sparse(1024, [(512, 1024)], b"x" * 1024), InvalidArchive, "past the file's size"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SPARSE))
def test_hostile_sparse_maps_are_refused(engine: Callable[..., Any], arena: Path, case: str) -> None:
    data, error, reason = HOSTILE_SPARSE[case]
    with pytest.raises(error, match=reason) as ei:
        run_raw(engine, arena, data, max_bytes=1 << 30)
    assert VICTIM in str(ei.value)
    assert not (arena / "dest" / VICTIM).exists()


def test_sane_crafted_sparse_maps_work(engine: Callable[..., Any], arena: Path) -> None:
    """The builders above make valid entries too (so the refusals are about the maps, not the builders)."""
    run_raw(engine, arena, _sparse01(8192, [1024, 512, 8192, 0], b"y" * 512))
    assert (arena / "dest" / VICTIM).read_bytes() == b"\0" * 1024 + b"y" * 512 + b"\0" * (8192 - 1536)
    run_raw(engine, arena, _sparse10(4096, b"1\n512\n512\n", b"z" * 512))
    assert (arena / "dest" / VICTIM).read_bytes() == b"\0" * 512 + b"z" * 512 + b"\0" * 3072
    run_raw(engine, arena, _old_gnu_sparse(2048, [(1024, 512)], b"w" * 512))
    assert (arena / "dest" / VICTIM).read_bytes() == b"\0" * 1024 + b"w" * 512 + b"\0" * 512


def test_header_only_types_carry_no_data(engine: Callable[..., Any], arena: Path) -> None:
    """A symlink or directory whose size field claims data has none (Go and tarfile read it so): the next
    header follows at once, so no engine can be made to see a different next entry than the others."""
    out = b""
    for ti in (tarfile.TarInfo("ln"), tarfile.TarInfo("d")):
        ti.type = tarfile.SYMTYPE if ti.name == "ln" else tarfile.DIRTYPE
        ti.linkname = "target" if ti.name == "ln" else ""
        hdr = bytearray(ti.tobuf(tarfile.USTAR_FORMAT))
        hdr[124:136] = b"%011o\0" % 1024
        hdr[148:156] = b" " * 8
        hdr[148:156] = b"%06o\0 " % sum(hdr)
        out += bytes(hdr)
    f = tarfile.TarInfo("after")
    f.size = 2
    out += f.tobuf(tarfile.USTAR_FORMAT) + b"ok" + b"\0" * 510 + b"\0" * 1024
    run_raw(engine, arena, out)
    assert (arena / "dest" / "after").read_bytes() == b"ok"
    assert str((arena / "dest" / "ln").readlink()) == "target"
