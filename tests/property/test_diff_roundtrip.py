# ruff: noqa: PTH101, PTH113, PTH114, PTH118, PTH211
# (PTH off: tree mutations are plain syscalls (os.chmod/os.link/os.symlink) on purpose)
"""Round trip of the layer diff (issue 4 item 6): for random base trees and random mutations, applying the
written layer onto a copy of the base gives exactly the mutated tree, in copy mode and in overlay mode, and
the Rust engine and the pure-Python twin agree on the change set and on the layer's diff_id."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgcore
import imgcore.pure
from tests.conftest import IN_CI, can_mount_overlay
from tests.diff_support import apply_layer, copy_tree, overlay_mount, snapshot

NAMES = st.sampled_from(["a", "b", "c", "dd", "e-f", "g.h", "ü-ß", "x" * 110, ".wh-not", "z"])
UIDS = st.sampled_from([0, 1000, 65534, 3_000_000])
MODES = st.sampled_from([0o644, 0o600, 0o755, 0o700, 0o4755, 0o1777, 0o444])
TIMES = st.integers(1_000_000_000, 1_700_000_000)
CONTENT = st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"x" * 5000]))


def _walk(root: Path) -> tuple[list[str], list[str], list[str]]:
    """(dirs incl. "", regular files, other non-dirs) as paths relative to root."""
    dirs, files, others = [""], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames):
            p = os.path.join(dirpath, n)
            (dirs if not os.path.islink(p) else others).append(os.path.relpath(p, root))
        for n in sorted(filenames):
            p = os.path.join(dirpath, n)
            (files if os.path.isfile(p) and not os.path.islink(p) else others).append(os.path.relpath(p, root))
    dirs.sort()
    return dirs, files, others


def _new_path(data: st.DataObject, root: Path, dirs: list[str]) -> Path | None:
    parent = data.draw(st.sampled_from(dirs), label="parent")
    p = root / parent / data.draw(NAMES, label="name")
    return None if os.path.lexists(p) else p


def build_base(data: st.DataObject, root: Path) -> None:
    root.mkdir()
    for _ in range(data.draw(st.integers(1, 14), label="entries")):
        dirs, files, _ = _walk(root)
        p = _new_path(data, root, dirs)
        if p is None:
            continue
        kind = data.draw(st.sampled_from(["file", "file", "dir", "dir", "symlink", "hardlink", "fifo"]), label="kind")
        if kind == "file" or (kind == "hardlink" and not files):
            p.write_bytes(data.draw(CONTENT))
            os.chmod(p, data.draw(MODES))
        elif kind == "dir":
            p.mkdir()
            os.chmod(p, data.draw(st.sampled_from([0o755, 0o700, 0o1777])))
        elif kind == "symlink":
            os.symlink(data.draw(st.sampled_from(["a", "../b", "/etc/passwd", "dangling/x"])), p)
        elif kind == "hardlink":
            os.link(root / data.draw(st.sampled_from(files)), p)
        else:
            os.mkfifo(p)
        os.chown(p, data.draw(UIDS), data.draw(UIDS), follow_symlinks=False)
    # Explicit whole-second times: a later edit can never share an mtime with the base by clock granularity.
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in dirnames + filenames:
            t = data.draw(TIMES, label="mtime")
            os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)


def _rm(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()


def mutate(data: st.DataObject, root: Path, dir_xattrs: bool = True) -> None:
    ops = ["write", "chmod", "chown", "touch", "delete", "replace_dir", "file_to_dir", "dir_to_file",
           "to_symlink", "add_file", "add_dir", "hardlink", "xattr", "delete_dir"]  # fmt: skip
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        dirs, files, others = _walk(root)
        real_dirs = dirs[1:]
        nondirs = files + others
        op = data.draw(st.sampled_from(ops), label="op")
        if op == "write" and files:
            p = root / data.draw(st.sampled_from(files))
            p.write_bytes(data.draw(CONTENT))
            t = data.draw(TIMES)
            os.utime(p, (t, t))
        elif op == "chmod" and (files or real_dirs):
            p = root / data.draw(st.sampled_from(files + real_dirs))
            os.chmod(p, data.draw(MODES) if p.is_file() else data.draw(st.sampled_from([0o755, 0o711, 0o1777])))
        elif op == "chown" and (nondirs or real_dirs):
            p = root / data.draw(st.sampled_from(nondirs + real_dirs))
            os.chown(p, data.draw(UIDS), data.draw(UIDS), follow_symlinks=False)
        elif op == "touch" and (nondirs or real_dirs):
            p = root / data.draw(st.sampled_from(nondirs + real_dirs))
            t = data.draw(TIMES)
            os.utime(p, (t, t), follow_symlinks=False)
        elif op == "delete" and nondirs:
            (root / data.draw(st.sampled_from(nondirs))).unlink()
        elif op == "delete_dir" and real_dirs:
            shutil.rmtree(root / data.draw(st.sampled_from(real_dirs)))
        elif op == "replace_dir" and real_dirs:
            p = root / data.draw(st.sampled_from(real_dirs))
            shutil.rmtree(p)
            p.mkdir()
            (p / data.draw(NAMES)).write_bytes(data.draw(CONTENT))
        elif op == "file_to_dir" and nondirs:
            p = root / data.draw(st.sampled_from(nondirs))
            p.unlink()
            p.mkdir()
            (p / "inner").write_bytes(data.draw(CONTENT))
        elif op == "dir_to_file" and real_dirs:
            p = root / data.draw(st.sampled_from(real_dirs))
            shutil.rmtree(p)
            p.write_bytes(data.draw(CONTENT))
        elif op == "to_symlink" and nondirs:
            p = root / data.draw(st.sampled_from(nondirs))
            p.unlink()
            os.symlink("new-target", p)
        elif op == "add_file":
            p = _new_path(data, root, dirs)
            if p is not None:
                p.write_bytes(data.draw(CONTENT))
        elif op == "add_dir":
            p = _new_path(data, root, dirs)
            if p is not None:
                p.mkdir()
                (p / "f").write_bytes(data.draw(CONTENT))
                os.symlink("f", p / "l")
        elif op == "hardlink" and files:
            src = root / data.draw(st.sampled_from(files))
            p = _new_path(data, root, dirs)
            if p is not None:
                os.link(src, p)
        elif op == "xattr" and (files or (dir_xattrs and real_dirs)):
            p = root / data.draw(st.sampled_from(files + (real_dirs if dir_xattrs else [])))
            # No b"\n" in values: imgcore.extract_layer cannot read such PAX records yet (see
            # test_diff.py::test_extractor_reads_xattr_values_with_newlines); tarfile and GNU tar can.
            value = data.draw(st.binary(max_size=40).filter(lambda v: b"\n" not in v))
            os.setxattr(p, "user.k" + data.draw(st.sampled_from(["", "2"])), value)


def _check(base: Path, target: Path, expected: dict, tmp: Path, overlay: bool) -> None:
    changes = imgcore.diff(base, target, overlay=overlay)
    twin = imgcore.pure.diff(base, target, overlay=overlay)
    assert [c.astuple() for c in changes] == [c.astuple() for c in twin]
    layer = imgcore.write_layer(base, target, tmp / "layer.tgz", overlay=overlay)
    twin_layer = imgcore.pure.write_layer(base, target, tmp / "twin.tar", overlay=overlay, compression="none")
    assert layer.diff_id == twin_layer.diff_id
    assert layer.digest == imgcore.sha256_file(tmp / "layer.tgz")
    assert [c.astuple() for c in layer.changes] == [c.astuple() for c in changes]
    _apply_both(tmp / "layer.tgz", layer.digest, layer.diff_id, base, tmp, expected)


def _apply_both(layer: Path, digest: str, diff_id: str, flat: Path, tmp: Path, expected: dict) -> None:
    """Applies the layer with the test's own tarfile applier and with imgcore's Rust extractor."""
    applied = tmp / "applied"
    applied.mkdir()
    copy_tree(flat, applied)
    apply_layer(layer, applied)
    assert snapshot(applied) == expected
    extracted = tmp / "extracted"
    extracted.mkdir()
    copy_tree(flat, extracted)
    imgcore.extract_layer(layer, extracted, expected_digest=digest, expected_diff_id=diff_id, allow_devices=True)
    assert snapshot(extracted) == expected


def _fresh(tmp_path: Path) -> Path:
    tmp = tmp_path / "ex"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users and overlay mounts need root")


@needs_root
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_copy_mode_round_trip(tmp_path: Path, data: st.DataObject) -> None:
    tmp = _fresh(tmp_path)
    base = tmp / "base"
    build_base(data, base)
    target = tmp / "target"
    target.mkdir()
    copy_tree(base, target)
    mutate(data, target)
    _check(base, target, snapshot(target), tmp, overlay=False)


def _overlay_reason() -> str | None:
    reason = can_mount_overlay()
    if reason is None:
        return None
    return reason


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_overlay_mode_round_trip(tmp_path: Path, data: st.DataObject) -> None:
    reason = _overlay_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"overlay round trip cannot run under CI: {reason}")
        pytest.skip(reason)
    tmp = _fresh(tmp_path)
    base = tmp / "base"
    build_base(data, base)
    upper, work, merged = tmp / "upper", tmp / "work", tmp / "merged"
    with overlay_mount(base, upper, work, merged):
        mutate(data, merged)
        expected = snapshot(merged)
    _check(base, upper, expected, tmp, overlay=True)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_overlay_mode_round_trip_layered_lowers(tmp_path: Path, data: st.DataObject) -> None:
    """The container driver's real shape: lowerdirs are image layers in overlay form (whiteout devices, opaque
    directories), given top first. The second layer is made by the kernel itself (mutations through a mount)."""
    reason = _overlay_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"overlay round trip cannot run under CI: {reason}")
        pytest.skip(reason)
    tmp = _fresh(tmp_path)
    l1, l2 = tmp / "l1", tmp / "l2"
    build_base(data, l1)
    with overlay_mount(l1, l2, tmp / "w1", tmp / "m1") as m:
        # No xattrs on directories in the image: a container that then replaces such a directory removes them,
        # which no layer can say (appliers merge an existing directory's attributes; docker's too).
        mutate(data, m, dir_xattrs=False)
    flat = tmp / "flat"  # the image's flattened rootfs, as the kernel sees the two layers
    flat.mkdir()
    with overlay_mount([l2, l1], tmp / "u0", tmp / "w0", tmp / "m0") as m:
        copy_tree(m, flat)
    upper = tmp / "upper"
    with overlay_mount([l2, l1], upper, tmp / "work", tmp / "merged") as m:
        mutate(data, m)
        expected = snapshot(m)
    changes = imgcore.diff([l2, l1], upper, overlay=True)
    assert [c.astuple() for c in changes] == [c.astuple() for c in imgcore.pure.diff([l2, l1], upper, overlay=True)]
    layer = imgcore.write_layer([l2, l1], upper, tmp / "layer.tgz", overlay=True)
    twin = imgcore.pure.write_layer([l2, l1], upper, tmp / "twin.tar", overlay=True, compression="none")
    assert layer.diff_id == twin.diff_id
    # Applying onto the flattened image gives the container's view. (Diffing against the flat rootfs may report
    # fewer metadata-only C: a copied-up file that is hardlinked in its lower layer counts as changed there.)
    _apply_both(tmp / "layer.tgz", layer.digest, layer.diff_id, flat, tmp, expected)
