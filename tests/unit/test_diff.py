# ruff: noqa: PTH101, PTH108, PTH118, PTH208, PTH211
# (PTH off: tree mutations are plain syscalls (os.chmod/os.link/os.symlink) on purpose)
"""Unit tests of the layer diff: each change kind, both modes, the layer format, determinism and errors.

Every test runs against the Rust engine (``imgcore``) and the pure-Python twin (``imgcore.pure``)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

import imgcore
import imgcore.pure
from imgcore.errors import InvalidTree
from tests.conftest import IN_CI, can_mount_overlay, require_tool
from tests.diff_support import apply_layer, copy_tree, overlay_mount, snapshot

T0 = 1_600_000_000


@pytest.fixture(params=["rust", "pure"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return imgcore if request.param == "rust" else imgcore.pure


def tup(changes: list) -> list[tuple[str, str, bool]]:
    return [c.astuple() for c in changes]


def settle(root: Path, t: int = T0) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    base = tmp_path / "base"
    (base / "etc" / "sub").mkdir(parents=True)
    (base / "usr" / "bin").mkdir(parents=True)
    (base / "etc" / "passwd").write_text("root:x:0:0\n")
    (base / "etc" / "sub" / "one").write_text("1")
    (base / "etc" / "sub" / "two").write_text("2")
    (base / "usr" / "bin" / "tool").write_bytes(b"\x7fELF" + b"x" * 3000)
    os.symlink("tool", base / "usr" / "bin" / "alias")
    settle(base)
    target = tmp_path / "target"
    target.mkdir()
    copy_tree(base, target)
    return base, target


def test_no_change_is_empty(impl: ModuleType, trees: tuple[Path, Path]) -> None:
    base, target = trees
    assert impl.diff(base, target) == []


def test_added_file_reports_parents_as_changed(impl: ModuleType, trees: tuple[Path, Path]) -> None:
    base, target = trees
    (target / "usr" / "bin" / "new").write_text("n")
    assert tup(impl.diff(base, target)) == [
        ("C", "/usr", True),
        ("C", "/usr/bin", True),
        ("A", "/usr/bin/new", False),
    ]


def test_content_change(impl: ModuleType, trees: tuple[Path, Path]) -> None:
    base, target = trees
    (target / "etc" / "passwd").write_text("root:x:0:0:changed\n")
    assert ("C", "/etc/passwd", False) in tup(impl.diff(base, target))


def test_same_size_new_mtime_reads_content(impl: ModuleType, trees: tuple[Path, Path]) -> None:
    base, target = trees
    p = target / "etc" / "sub" / "one"
    p.write_text("9")  # same size, new mtime: content decides
    assert ("C", "/etc/sub/one", False) in tup(impl.diff(base, target))
    p.write_text("1")  # back to the old bytes: only the mtime differs now
    assert ("C", "/etc/sub/one", True) in tup(impl.diff(base, target))


@pytest.mark.parametrize(
    ("mutation", "path"),
    [
        (lambda t: os.chmod(t / "etc" / "passwd", 0o600), "/etc/passwd"),
        (lambda t: os.utime(t / "etc" / "passwd", (T0 + 5, T0 + 5)), "/etc/passwd"),
        (lambda t: os.setxattr(t / "etc" / "passwd", "user.test", b"v"), "/etc/passwd"),
        (lambda t: os.chmod(t / "etc" / "sub", 0o700), "/etc/sub"),
    ],
    ids=["chmod", "touch", "xattr", "chmod-dir"],
)
def test_metadata_only_changes(impl: ModuleType, trees: tuple[Path, Path], mutation, path: str) -> None:
    base, target = trees
    mutation(target)
    assert (("C", path, True)) in tup(impl.diff(base, target))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_chown_is_metadata_only(impl: ModuleType, trees: tuple[Path, Path]) -> None:
    base, target = trees
    os.chown(target / "usr" / "bin" / "alias", 1000, 1000, follow_symlinks=False)
    assert tup(impl.diff(base, target)) == [
        ("C", "/usr", True),
        ("C", "/usr/bin", True),
        ("C", "/usr/bin/alias", True),
    ]


def test_deleted_dir_is_one_d(impl: ModuleType, trees: tuple[Path, Path]) -> None:
    base, target = trees
    shutil.rmtree(target / "etc" / "sub")
    assert tup(impl.diff(base, target)) == [("C", "/etc", True), ("D", "/etc/sub", False)]


def test_type_changes(impl: ModuleType, trees: tuple[Path, Path]) -> None:
    base, target = trees
    shutil.rmtree(target / "etc" / "sub")
    (target / "etc" / "sub").write_text("now a file")
    (target / "etc" / "passwd").unlink()
    (target / "etc" / "passwd").mkdir()
    (target / "etc" / "passwd" / "inner").write_text("i")
    os.unlink(target / "usr" / "bin" / "alias")
    os.symlink("elsewhere", target / "usr" / "bin" / "alias")
    assert tup(impl.diff(base, target)) == [
        ("C", "/etc", True),
        ("C", "/etc/passwd", False),
        ("A", "/etc/passwd/inner", False),
        ("C", "/etc/sub", False),
        ("C", "/usr", True),
        ("C", "/usr/bin", True),
        ("C", "/usr/bin/alias", False),
    ]


def test_paranoid_catches_same_size_same_mtime(impl: ModuleType, trees: tuple[Path, Path]) -> None:
    base, target = trees
    p = target / "usr" / "bin" / "tool"
    p.write_bytes(b"\x7fELF" + b"y" * 3000)
    os.utime(p, (T0, T0))
    assert impl.diff(base, target) == []  # metadata cannot tell, and the default trusts it (like docker)
    assert ("C", "/usr/bin/tool", False) in tup(impl.diff(base, target, paranoid=True))


def test_hardlinks_kept_whole(impl: ModuleType, trees: tuple[Path, Path], tmp_path: Path) -> None:
    base, target = trees
    os.link(target / "etc" / "passwd", target / "usr" / "passwd-link")
    changes = tup(impl.diff(base, target))
    assert ("C", "/etc/passwd", True) in changes  # its link group changed
    assert ("A", "/usr/passwd-link", False) in changes
    r = impl.write_layer(base, target, tmp_path / "l.tar", compression="none")
    with tarfile.open(tmp_path / "l.tar") as tf:
        members = {m.name: m for m in tf}
    assert members["etc/passwd"].isreg()
    assert members["usr/passwd-link"].islnk()
    assert members["usr/passwd-link"].linkname == "etc/passwd"
    assert r.hardlinks == 1


def test_layer_format(impl: ModuleType, trees: tuple[Path, Path], tmp_path: Path) -> None:
    base, target = trees
    shutil.rmtree(target / "etc" / "sub")
    long_dir = target / "usr" / ("d" * 80)
    long_dir.mkdir()
    (long_dir / ("f" * 60)).write_text("long")
    os.setxattr(target / "etc" / "passwd", "user.note", b"\xff\x00binary")
    r = impl.write_layer(base, target, tmp_path / "l.tgz", source_date_epoch=T0 + 10)
    with tarfile.open(tmp_path / "l.tgz") as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == [
        "etc",
        "etc/passwd",
        "etc/.wh.sub",  # at the deleted name's place in the sorted change list
        "usr",
        "usr/" + "d" * 80,
        "usr/" + "d" * 80 + "/" + "f" * 60,
    ]
    by = {m.name: m for m in members}
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert by["etc/.wh.sub"].isreg()
    assert by["etc/.wh.sub"].size == 0
    assert by["etc/.wh.sub"].mode == 0
    assert (
        by["etc/passwd"].pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") == b"\xff\x00binary"
    )
    assert by["usr/" + "d" * 80 + "/" + "f" * 60].mtime == T0 + 10  # clamped to SOURCE_DATE_EPOCH
    assert by["etc/passwd"].mtime == T0  # older than the epoch: kept
    assert r.entries == len(members)
    assert (r.added, r.changed, r.deleted, r.whiteouts) == (2, 3, 1, 1)
    blob = (tmp_path / "l.tgz").read_bytes()
    assert r.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert r.size == len(blob)
    raw = gzip.decompress(blob)
    assert r.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert r.uncompressed_size == len(raw)
    assert r.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"


def test_gnu_tar_reads_layer(trees: tuple[Path, Path], tmp_path: Path) -> None:
    tar = require_tool("tar")
    base, target = trees
    (target / "usr" / ("n" * 150)).write_text("pax path")
    imgcore.write_layer(base, target, tmp_path / "l.tgz")
    listing = subprocess.run([tar, "-tzf", str(tmp_path / "l.tgz")], check=True, capture_output=True, text=True)
    assert listing.stdout.split() == ["usr/", "usr/" + "n" * 150]


def test_zstd_layer(trees: tuple[Path, Path], tmp_path: Path) -> None:
    zstd = require_tool("zstd")
    base, target = trees
    (target / "usr" / "z").write_bytes(b"z" * 100_000)
    r = imgcore.write_layer(base, target, tmp_path / "l.tar.zst", compression="zstd")
    raw = subprocess.run([zstd, "-dc", str(tmp_path / "l.tar.zst")], check=True, capture_output=True).stdout
    assert r.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert r.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
    plain = imgcore.write_layer(base, target, tmp_path / "l.tar", compression="none")
    assert plain.digest == plain.diff_id == r.diff_id


def test_same_inputs_same_digest(impl: ModuleType, trees: tuple[Path, Path], tmp_path: Path) -> None:
    base, target = trees
    for i in range(300):  # several MiB, so the parallel gzip uses many slices
        (target / "etc" / f"f{i}").write_bytes(os.urandom(64) * 300)
    a = impl.write_layer(base, target, tmp_path / "a.tgz")
    b = impl.write_layer(base, target, tmp_path / "b.tgz")
    assert (a.digest, a.diff_id) == (b.digest, b.diff_id)
    # The diff_id depends on the content, not on the copy: the same change on fresh copies gives the same layer.
    other = tmp_path / "other"
    other.mkdir()
    copy_tree(target, other)
    c = impl.write_layer(base, other, tmp_path / "c.tgz")
    assert (c.digest, c.diff_id) == (a.digest, a.diff_id)


def test_source_date_epoch_env(impl: ModuleType, trees: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    base, target = trees
    (target / "etc" / "new").write_text("n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(T0 - 100))
    r = impl.write_layer(base, target, tmp_path / "l.tar", compression="none")
    with tarfile.open(tmp_path / "l.tar") as tf:
        assert {m.mtime for m in tf} == {T0 - 100}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH"):
        impl.write_layer(base, target, tmp_path / "l.tar")
    assert r.changes


def test_rust_and_twin_write_the_same_tar(trees: tuple[Path, Path], tmp_path: Path) -> None:
    base, target = trees
    os.chmod(target / "etc" / "passwd", 0o640)
    (target / "usr" / "ünïcode-名前").write_text("u")
    os.mkfifo(target / "usr" / "fifo")
    shutil.rmtree(target / "etc" / "sub")
    a = imgcore.write_layer(base, target, tmp_path / "a.tar", compression="none")
    b = imgcore.pure.write_layer(base, target, tmp_path / "b.tar", compression="none")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert a.diff_id == b.diff_id
    assert tup(a.changes) == tup(b.changes)


def test_changes_argument(impl: ModuleType, trees: tuple[Path, Path], tmp_path: Path) -> None:
    base, target = trees
    (target / "usr" / "x").write_text("x")
    (target / "etc" / "passwd").unlink()
    changes = impl.diff(base, target)
    full = impl.write_layer(base, target, tmp_path / "a.tar", compression="none")
    given = impl.write_layer(base, target, tmp_path / "b.tar", compression="none", changes=changes)
    as_tuples = impl.write_layer(
        base, target, tmp_path / "c.tar", compression="none", changes=[(c.kind, c.path) for c in changes]
    )
    assert full.diff_id == given.diff_id == as_tuples.diff_id


def test_round_trip_copy_mode(trees: tuple[Path, Path], tmp_path: Path) -> None:
    base, target = trees
    shutil.rmtree(target / "etc" / "sub")
    (target / "etc" / "sub").mkdir()
    (target / "etc" / "sub" / "three").write_text("3")
    os.chmod(target / "usr" / "bin" / "tool", 0o700)
    imgcore.write_layer(base, target, tmp_path / "l.tgz")
    applied = tmp_path / "applied"
    applied.mkdir()
    copy_tree(base, applied)
    apply_layer(tmp_path / "l.tgz", applied)
    assert snapshot(applied) == snapshot(target)


# ---------------------------------------------------------------------------------------------------------------
# Overlay mode.


def need_overlay() -> None:
    reason = can_mount_overlay()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"overlay tests cannot run under CI: {reason}")
        pytest.skip(reason)


def test_overlay_whiteout_and_opaque(impl: ModuleType, trees: tuple[Path, Path], tmp_path: Path) -> None:
    need_overlay()
    base, _ = trees
    upper = tmp_path / "upper"
    with overlay_mount(base, upper, tmp_path / "work", tmp_path / "merged") as m:
        (m / "etc" / "passwd").unlink()  # -> whiteout device in upper
        shutil.rmtree(m / "etc" / "sub")
        (m / "etc" / "sub").mkdir()  # -> opaque directory in upper
        (m / "etc" / "sub" / "two").write_text("new two")
        os.chmod(m / "usr" / "bin" / "tool", 0o700)  # copy-up, metadata only
        expected = snapshot(m)
    changes = tup(impl.diff(base, upper, overlay=True))
    assert changes == [
        ("C", "/etc", True),
        ("D", "/etc/passwd", False),
        ("C", "/etc/sub", True),
        ("D", "/etc/sub/one", False),
        ("C", "/etc/sub/two", False),
        ("C", "/usr", True),
        ("C", "/usr/bin", True),
        ("C", "/usr/bin/tool", True),
    ]
    r = impl.write_layer(base, upper, tmp_path / "l.tgz", overlay=True)
    with tarfile.open(tmp_path / "l.tgz") as tf:
        names = tf.getnames()
    assert names == [
        "etc",
        "etc/.wh.passwd",
        "etc/sub",
        "etc/sub/.wh..wh..opq",
        "etc/sub/two",
        "usr",
        "usr/bin",
        "usr/bin/tool",
    ]
    assert r.whiteouts == 2
    applied = tmp_path / "applied"
    applied.mkdir()
    copy_tree(base, applied)
    apply_layer(tmp_path / "l.tgz", applied)
    assert snapshot(applied) == expected


def test_overlay_multiple_lowerdirs(impl: ModuleType, tmp_path: Path) -> None:
    """base as a list of overlay-form layer dirs (top first), with a whiteout and an opaque dir in them."""
    need_overlay()
    l1, l2, upper = tmp_path / "l1", tmp_path / "l2", tmp_path / "upper"
    (l1 / "d").mkdir(parents=True)
    (l1 / "d" / "old").write_text("old")
    (l1 / "gone").write_text("gone")
    (l1 / "keep").write_text("keep")
    l2.mkdir()
    os.mknod(l2 / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # whiteout of l1's "gone"
    (l2 / "d").mkdir()
    os.setxattr(l2 / "d", "trusted.overlay.opaque", b"y")
    (l2 / "d" / "new").write_text("new")
    with overlay_mount([l2, l1], upper, tmp_path / "work", tmp_path / "merged") as m:
        assert sorted(os.listdir(m)) == ["d", "keep"]
        assert os.listdir(m / "d") == ["new"]
        (m / "gone").write_text("back")  # exists in no lower view -> A
        (m / "d" / "old").write_text("again")  # hidden by the opaque l2/d -> A
        (m / "keep").unlink()
    assert tup(impl.diff([l2, l1], upper, overlay=True)) == [
        ("C", "/d", True),
        ("A", "/d/old", False),
        ("A", "/gone", False),
        ("D", "/keep", False),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Errors.


def test_errors(impl: ModuleType, trees: tuple[Path, Path], tmp_path: Path) -> None:
    base, target = trees
    with pytest.raises(FileNotFoundError):
        impl.diff(tmp_path / "missing", target)
    with pytest.raises(NotADirectoryError):
        impl.diff(base, target / "etc" / "passwd")
    with pytest.raises(TypeError, match="list of paths"):
        impl.diff(123, target)
    with pytest.raises(ValueError, match="at least one"):
        impl.diff([], target)
    with pytest.raises(InvalidTree, match="one base directory"):
        impl.diff([base, base], target)
    with pytest.raises(ValueError, match="compression"):
        impl.write_layer(base, target, tmp_path / "l", compression="lz4")
    with pytest.raises(ValueError, match="level"):
        impl.write_layer(base, target, tmp_path / "l", level=42)
    with pytest.raises(ValueError, match="kind"):
        impl.write_layer(base, target, tmp_path / "l", changes=[("X", "/etc")])
    with pytest.raises(ValueError, match="absolute"):
        impl.write_layer(base, target, tmp_path / "l", changes=[("A", "etc")])
    with pytest.raises(InvalidTree, match="without"):
        impl.write_layer(base, target, tmp_path / "l", changes=[("A", "/etc/../../x")])
    with pytest.raises(InvalidTree, match="exists in the target"):
        impl.write_layer(base, target, tmp_path / "l", changes=[("D", "/etc/passwd")])
    with pytest.raises(InvalidTree, match="does not exist"):
        impl.write_layer(base, target, tmp_path / "l", changes=[("A", "/nope")])
    assert not (tmp_path / "l").exists()  # nothing left behind on failure


def test_pure_twin_zstd_matches(trees: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("zstandard", reason="the pure twin writes zstd only with the zstandard package")
    base, target = trees
    (target / "usr" / "z").write_bytes(b"z" * 10_000)
    a = imgcore.write_layer(base, target, tmp_path / "a.zst", compression="zstd")
    b = imgcore.pure.write_layer(base, target, tmp_path / "b.zst", compression="zstd")
    assert a.diff_id == b.diff_id
    assert b.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"


def test_gnu_tar_restores_binary_xattr_values(tmp_path: Path) -> None:
    tar = require_tool("tar")
    base, target = tmp_path / "b", tmp_path / "t"
    base.mkdir()
    target.mkdir()
    (target / "f").write_text("x")
    os.setxattr(target / "f", "user.caps", b"\x01\n\x00\xff")  # binary, with a newline (as capabilities can be)
    imgcore.write_layer(base, target, tmp_path / "l.tar", compression="none")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([tar, "--xattrs", "--xattrs-include=*", "-xf", str(tmp_path / "l.tar"), "-C", str(out)], check=True)
    assert os.getxattr(out / "f", "user.caps") == b"\x01\n\x00\xff"


def test_extractor_reads_xattr_values_with_newlines(tmp_path: Path) -> None:
    base, target = tmp_path / "b", tmp_path / "t"
    base.mkdir()
    target.mkdir()
    (target / "f").write_text("x")
    os.setxattr(target / "f", "user.caps", b"\x01\n\x00\xff")
    r = imgcore.write_layer(base, target, tmp_path / "l.tgz")
    out = tmp_path / "out"
    out.mkdir()
    imgcore.extract_layer(tmp_path / "l.tgz", out, expected_diff_id=r.diff_id)
    assert os.getxattr(out / "f", "user.caps") == b"\x01\n\x00\xff"


def test_overlay_redirect_dir_is_a_clear_error(impl: ModuleType, trees: tuple[Path, Path], tmp_path: Path) -> None:
    need_overlay()
    base, _ = trees
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={base},upperdir={upper},workdir={work},redirect_dir=on,index=off"
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"redirect_dir=on not available: {r.stderr.strip()}")
    try:
        (merged / "etc" / "sub").rename(merged / "etc" / "moved")
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    with pytest.raises(InvalidTree, match="redirect_dir") as ei:
        impl.diff(base, upper, overlay=True)
    assert ei.value.path.endswith("etc/moved")


def test_non_utf8_names_and_long_links(trees: tuple[Path, Path], tmp_path: Path) -> None:
    """Names that are not UTF-8 and link targets over 100 bytes: both twins write the same bytes, readers agree."""
    base, target = trees
    raw = os.fsencode(target / "etc") + b"/bad-\xff\xfe-name"
    with open(raw, "wb") as f:
        f.write(b"bytes")
    os.symlink("t" * 150, target / "etc" / "long-link")
    a = imgcore.write_layer(base, target, tmp_path / "a.tar", compression="none")
    b = imgcore.pure.write_layer(base, target, tmp_path / "b.tar", compression="none")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert os.fsdecode(b"/etc/bad-\xff\xfe-name") in [c.path for c in a.changes]
    assert tup(a.changes) == tup(b.changes)
    applied = tmp_path / "applied"
    applied.mkdir()
    copy_tree(base, applied)
    apply_layer(tmp_path / "a.tar", applied)
    assert snapshot(applied) == snapshot(target)
