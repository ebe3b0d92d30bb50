"""extract_layer / unpack_layers / layer_index behaviour, Rust and pure twin alike: metadata kept exactly
(nanosecond mtimes, setuid/setgid/sticky, owners, xattrs, long names), directory mtimes restored after their
children, digests computed and verified, overlay form, id maps, and the ``layer`` CLI."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import imgcore
import imgcore.pure
from imgcore.errors import DigestMismatch
from tests.strategies import TarEntry, build_tar

F, D, S, H = TarEntry.file, TarEntry.dir, TarEntry.symlink, TarEntry.hardlink
ROOT = os.geteuid() == 0


@pytest.fixture(params=["rust", "pure"])
def extract(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return imgcore.extract_layer if request.param == "rust" else imgcore.pure.extract_layer


def blob(tmp_path: Path, entries: list[TarEntry], compression: str = "none", name: str = "layer") -> Path:
    p = tmp_path / name
    p.write_bytes(build_tar(entries, compression))
    return p


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_stats_and_digests(extract: Callable[..., Any], tmp_path: Path, compression: str) -> None:
    entries = [D("d"), F("d/f", b"hello"), S("d/s", "f"), H("d/h", "d/f"), F("d/.wh.x"), F("big", b"x" * 3_000_000)]
    src = blob(tmp_path, entries, compression)
    raw = build_tar(entries)
    dest = tmp_path / "out"
    dest.mkdir()
    s = extract(src, dest)
    assert s.digest == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    assert s.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert s.compression == compression
    assert (s.entries, s.files, s.dirs, s.symlinks, s.hardlinks, s.whiteouts) == (6, 2, 1, 1, 1, 1)
    assert s.bytes == len(raw)
    assert s.compressed_bytes == src.stat().st_size
    assert s.skipped == []
    assert (dest / "big").read_bytes() == b"x" * 3_000_000


def test_expected_digests_pass_and_fail(extract: Callable[..., Any], tmp_path: Path) -> None:
    src = blob(tmp_path, [F("a", b"1")], "gzip")
    dest = tmp_path / "out"
    dest.mkdir()
    s = extract(src, dest)
    again = extract(src, dest, expected_digest=s.digest, expected_diff_id=s.diff_id)
    assert again.digest == s.digest
    with pytest.raises(DigestMismatch) as ei:
        extract(src, dest, expected_digest=s.diff_id)
    assert ei.value.actual == s.digest


def test_metadata_is_exact(extract: Callable[..., Any], tmp_path: Path) -> None:
    long = "l" * 120 + "/" + "n" * 150
    entries = [
        D("d", mode=0o1777, mtime=1_000_000_000, mtime_ns=5),
        F("d/suid", b"x", mode=0o4755, uid=1000, gid=1000, mtime=1_500_000_000, mtime_ns=123_456_789),
        F("d/sgid", b"x", mode=0o2711, uid=0, gid=50),
        F("d/ro", b"x", mode=0o444),
        D("l" * 120),
        F(long, b"long", fmt=tarfile.GNU_FORMAT),
        F("pax-" + "é" * 80, b"unicode"),
        S("d/link", "/absolute/target", mtime=1_234_567_890),
    ]
    dest = tmp_path / "out"
    dest.mkdir()
    extract(blob(tmp_path, entries), dest)
    st = (dest / "d" / "suid").lstat()
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert st.st_mtime_ns == 1_500_000_000_123_456_789
    if ROOT:
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert (dest / "d" / "sgid").lstat().st_gid == 50
    assert stat.S_IMODE((dest / "d" / "sgid").lstat().st_mode) == 0o2711
    assert stat.S_IMODE((dest / "d" / "ro").lstat().st_mode) == 0o444
    # The directory's own mtime and mode survive the children written after it.
    dst = (dest / "d").lstat()
    assert stat.S_IMODE(dst.st_mode) == 0o1777
    assert dst.st_mtime_ns == 1_000_000_000_000_000_005
    assert (dest / long).read_bytes() == b"long"
    assert (dest / ("pax-" + "é" * 80)).read_bytes() == b"unicode"
    assert str((dest / "d" / "link").readlink()) == "/absolute/target"
    assert (dest / "d" / "link").lstat().st_mtime_ns == 1_234_567_890 * 10**9


def test_xattrs_from_pax(extract: Callable[..., Any], tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    pax = {"SCHILY.xattr.user.imgcore": "v1", "SCHILY.xattr.trusted.overlay.redirect": "/x"}
    s = extract(blob(tmp_path, [F("f", b"x", pax=pax), D("d", pax={"SCHILY.xattr.user.dir": "yes"})]), dest)
    try:
        assert os.getxattr(dest / "f", "user.imgcore") == b"v1"
        assert os.getxattr(dest / "d", "user.dir") == b"yes"
    except OSError as e:  # pragma: no cover - filesystems without user xattrs
        pytest.skip(f"no user xattrs here: {e}")
    assert any("trusted.overlay" in why for _, why in s.skipped)


def test_not_root_keeps_own_ids(extract: Callable[..., Any], tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    extract(blob(tmp_path, [F("f", b"x", uid=1234, gid=4321)]), dest, same_owner=False)
    st = (dest / "f").lstat()
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


@pytest.mark.skipif(not ROOT, reason="chown to other ids needs root")
def test_id_maps(extract: Callable[..., Any], tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    extract(blob(tmp_path, [F("f", b"x", uid=5, gid=7)]), dest, uid_map=[(0, 100000, 65536)], gid_map=[(0, 200000, 10)])
    st = (dest / "f").lstat()
    assert (st.st_uid, st.st_gid) == (100005, 200007)
    from imgcore.errors import InvalidArchive

    with pytest.raises(InvalidArchive, match="gid 70000"):
        extract(blob(tmp_path, [F("g", b"x", gid=70000)]), dest, gid_map=[(0, 200000, 10)])


@pytest.mark.skipif(not ROOT, reason="overlay whiteouts (char 0/0, trusted.* xattrs) need root")
def test_overlay_form(extract: Callable[..., Any], tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    extract(
        blob(tmp_path, [D("d"), F("d/.wh.gone"), D("o"), F("o/.wh..wh..opq"), F("o/new", b"n")]), dest, overlay=True
    )
    st = (dest / "d" / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode)
    assert st.st_rdev == 0
    assert os.getxattr(dest / "o", "trusted.overlay.opaque") == b"y"
    assert (dest / "o" / "new").read_bytes() == b"n"


def test_flatten_whiteouts_only_hit_lower_layers(tmp_path: Path) -> None:
    lower = blob(tmp_path, [D("d"), F("d/old", b"o"), F("d/keep", b"k"), D("e"), F("e/x", b"x")], name="l0")
    # The whiteouts come after the layer's own entries of the same names: those must stay.
    upper = blob(
        tmp_path,
        [D("d"), F("d/old", b"new"), F("d/.wh.old"), D("e"), F("e/y", b"y"), F("e/.wh..wh..opq")],
        name="l1",
    )
    for unpack in (imgcore.unpack_layers, imgcore.pure.unpack_layers):
        dest = tmp_path / f"out-{unpack.__module__}"
        dest.mkdir()
        unpack([lower, upper], dest)
        assert (dest / "d" / "old").read_bytes() == b"new"
        assert (dest / "d" / "keep").read_bytes() == b"k"
        assert sorted(p.name for p in (dest / "e").iterdir()) == ["y"]


def test_unpack_layers_checks_diff_ids(tmp_path: Path) -> None:
    a = blob(tmp_path, [F("a", b"1")], "gzip", name="a")
    b = blob(tmp_path, [F("b", b"2")], "zstd", name="b")
    dest = tmp_path / "out"
    dest.mkdir()
    stats = imgcore.unpack_layers([a, b], dest)
    ids = [s.diff_id for s in stats]
    dest2 = tmp_path / "out2"
    dest2.mkdir()
    assert [s.diff_id for s in imgcore.unpack_layers([a, b], dest2, expected_diff_ids=ids)] == ids
    with pytest.raises(DigestMismatch):
        imgcore.unpack_layers([a, b], dest2, expected_diff_ids=[ids[0], ids[0]])


def test_layer_stats_is_frozen(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    s = imgcore.extract_layer(blob(tmp_path, [F("a", b"1")]), dest)
    with pytest.raises(AttributeError):
        s.files = 3  # type: ignore[misc]
    assert "LayerStats(" in repr(s)


def test_index_shows_the_providing_layer(tmp_path: Path) -> None:
    l0 = blob(tmp_path, [D("etc"), F("etc/a", b"1"), F("etc/b", b"22")], "gzip", name="l0")
    l1 = blob(tmp_path, [D("etc"), F("etc/.wh.a"), F("etc/c", b"333"), S("etc/s", "c")], "zstd", name="l1")
    rows = imgcore.layer_index([l0, l1])
    assert rows == imgcore.pure.layer_index([l0, l1])
    by = {r[0]: r for r in rows}
    assert sorted(by) == ["etc", "etc/b", "etc/c", "etc/s"]
    assert by["etc/b"][8] == 0
    assert by["etc/c"][8] == 1
    assert by["etc/b"][5] == 2
    assert by["etc/s"][1:2] == ("symlink",)
    assert by["etc/s"][7] == "c"


def test_cli_layer_apply_and_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imgcore.cli import main

    src = blob(tmp_path, [D("d"), F("d/f", b"x")], "gzip")
    dest = tmp_path / "out"
    dest.mkdir()
    assert main(["layer", "apply", str(src), str(dest)]) == 0
    out = capsys.readouterr().out
    assert "diff_id  sha256:" in out
    assert "2 entries" in out
    assert (dest / "d" / "f").read_bytes() == b"x"
    assert main(["layer", "index", str(src)]) == 0
    assert "/d/f  [layer 0]" in capsys.readouterr().out
    assert main(["layer", "apply", str(src), str(dest), "--digest", "sha256:" + "0" * 64]) == 1
    assert "digest mismatch" in capsys.readouterr().err


def test_cli_ls_image_shows_providing_layer(store: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from imgcore.cli import main
    from tests.images_helpers import make_image

    make_image(store, "base:1", {"etc/a": b"1", "etc/b": b"22", "bin/sh": b"#!"})
    top = make_image(store, "app:1", {"etc/.wh.a": b"", "etc/c": b"333", "opt/app/run": b"x"}, parent="base:1")
    root = ["--root", str(store.root)]
    assert main([*root, "ls", "app:1", "/etc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("  [")[0].split()[-1] for ln in lines] == ["/etc/b", "/etc/c"]
    layer1 = top.manifest.layers[1].digest.split(":")[1][:12]
    assert lines[1].endswith(f"[layer 1 {layer1}]")
    assert lines[0].split("[layer ")[1].startswith("0 ")
    assert main([*root, "ls", "-R", "app:1"]) == 0
    out = capsys.readouterr().out
    assert "/opt/app/run" in out
    assert "/etc/a " not in out
    assert main([*root, "ls", "app:1", "/etc/nope"]) == 1
    assert "no such file or directory in the image" in capsys.readouterr().err


def test_ctrl_c_stops_a_long_extraction(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    import zstandard

    size = 4 << 30  # a 4 GiB file of zeros: a few MiB compressed, seconds to write
    ti = tarfile.TarInfo("zeros")
    ti.size = size
    comp = zstandard.ZstdCompressor(level=1).compressobj()
    with open(tmp_path / "big.tar.zst", "wb") as f:
        f.write(comp.compress(ti.tobuf(tarfile.PAX_FORMAT)))
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            f.write(comp.compress(chunk))
        f.write(comp.compress(b"\0" * 1024))
        f.write(comp.flush())
    (tmp_path / "out").mkdir()
    script = (
        "import signal, sys, time, imgcore\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "print('start', flush=True)\n"
        "try:\n"
        "    imgcore.extract_layer(sys.argv[1], sys.argv[2])\n"
        "    print('completed', flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "big.tar.zst"), str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "start"
    time.sleep(0.3)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert out.strip() == "interrupted"
    assert time.monotonic() - t0 < 2.0


def test_binary_xattr_values_with_newlines(extract: Callable[..., Any], tmp_path: Path) -> None:
    # PAX records are cut by their length prefix: a value may hold newlines and any byte (security.capability).
    value = b"\x01\n\x00\xff\n="
    pax = {"SCHILY.xattr.user.bin": value.decode("utf-8", "surrogateescape")}
    dest = tmp_path / "out"
    dest.mkdir()
    extract(blob(tmp_path, [F("f", b"x", pax=pax)]), dest)
    try:
        got = os.getxattr(dest / "f", "user.bin")
    except OSError as e:  # pragma: no cover - filesystems without user xattrs
        pytest.skip(f"no user xattrs here: {e}")
    assert got == value


@pytest.mark.parametrize("writers", ["0", "2", "4"])
def test_same_layer_replacements_in_archive_order(
    extract: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers: str
) -> None:
    # A file replacing a directory whose children were just written (maybe still in flight in the writer pool),
    # a directory replacing a file, a file written twice: the last entry wins, as in a serial extraction.
    monkeypatch.setenv("IMGCORE_WRITERS", writers)
    entries = [D("a"), *(F(f"a/f{i}", b"x" * i) for i in range(50)), F("a", b"now a file")]
    entries += [F("b", b"file"), D("b"), *(F(f"b/g{i}", b"y") for i in range(20)), F("c", b"1"), F("c", b"2")]
    dest = tmp_path / "out"
    dest.mkdir()
    extract(blob(tmp_path, entries), dest)
    assert (dest / "a").read_bytes() == b"now a file"
    assert len(list((dest / "b").iterdir())) == 20
    assert (dest / "c").read_bytes() == b"2"
