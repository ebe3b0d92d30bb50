"""squash, flatten and ``--exclude`` (imgcore.reshape.squash), on images made of real layers in a fresh store.

Every image a test makes is validated with ``assert_valid_image``; trees are compared after applying the layers
onto an empty root with the extractor.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest

import imgcore
from imgcore.cli import main
from imgcore.errors import DigestMismatch, ImageNotFound, InvalidArchive, InvalidArgument
from imgcore.image.catalog import resolve
from imgcore.reshape.squash import flatten, keep_count, squash
from imgcore.store import ContentStore
from tests.images_helpers import layer_tar
from tests.reshape_helpers import EPOCH, applied, image_of_blobs, layer_from_trees, snap, xattrs
from tests.validate import assert_valid_image


@pytest.fixture
def stack(store: ContentStore):
    """Three layers: a base, a layer that deletes and adds, a layer that rewrites and adds a directory."""
    base = image_of_blobs(store, "base:1", [layer_tar({"etc/": None, "etc/a": b"a", "etc/b": b"b", "d/x": b"x"})])
    top = image_of_blobs(
        store,
        "top:1",
        [layer_tar({"etc/c": b"c", "d/.wh.x": b"", "e": b"e"}), layer_tar({"etc/a": b"AA", "f/g": b"g"})],
        base=base,
    )
    return base, top


def test_flatten_is_one_layer_with_the_merged_tree(store, stack, tmp_path):
    _, top = stack
    flat = flatten(store, top, "flat:1")
    assert_valid_image(store, "flat:1")
    assert len(flat.manifest.layers) == 1
    assert snap(applied(store, flat, tmp_path / "flat")) == snap(applied(store, top, tmp_path / "top"))
    # every old entry kept as empty_layer, one new entry naming what was squashed
    hist = flat.config.history
    assert [h.get("empty_layer") for h in hist] == [True, True, True, None]
    assert hist[-1]["created_by"] == "imgcore flatten"
    assert all(d in hist[-1]["comment"] for d in top.diff_ids)
    assert flat.config.config == top.config.config


def test_squash_last_keeps_the_base(store, stack, tmp_path):
    base, top = stack
    sq = squash(store, top, "sq:1", last=2)
    assert_valid_image(store, "sq:1")
    assert sq.diff_ids[:1] == base.diff_ids
    assert len(sq.diff_ids) == 2
    assert snap(applied(store, sq, tmp_path / "sq")) == snap(applied(store, top, tmp_path / "top"))
    hist = sq.config.history
    assert [bool(h.get("empty_layer")) for h in hist] == [False, True, True, False]
    assert hist[-1]["created_by"] == "imgcore squash --last 2"
    # the squashed layer deletes /d/x of the base with a whiteout
    with tarfile.open(store.blob_path(sq.manifest.layers[-1].digest)) as tf:
        names = tf.getnames()
    assert "d/.wh.x" in names
    assert "d/x" not in names


def test_squash_from_a_base_image_or_a_layer_digest(store, stack):
    _base, top = stack
    assert keep_count(store, top, from_layer="base:1") == 1
    assert keep_count(store, top, from_layer=top.manifest.layers[1].digest) == 2
    assert keep_count(store, top, from_layer=top.diff_ids[0][7:19]) == 1
    assert keep_count(store, top) == 0
    a = squash(store, top, "a:1", from_layer="base:1")
    b = squash(store, top, "b:1", last=2)
    assert a.diff_ids == b.diff_ids


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"last": 0}, "has 3 layers"),
        ({"last": 4}, "has 3 layers"),
        ({"last": 1, "from_layer": "base:1"}, "not both"),
    ],
)
def test_squash_bad_selection(store, stack, kw, message):
    with pytest.raises(InvalidArgument, match=message):
        keep_count(store, stack[1], **kw)


def test_squash_from_an_unrelated_image_is_refused(store, stack):
    other = image_of_blobs(store, "other:1", [layer_tar({"z": b"z"})])
    with pytest.raises(InvalidArgument, match="not the bottom layers"):
        keep_count(store, stack[1], from_layer="other:1")
    assert other.diff_ids  # the other image exists, it is just not a base
    with pytest.raises(ImageNotFound):
        keep_count(store, stack[1], from_layer="nothing:here")


def test_exclude_leaves_paths_out(store, stack, tmp_path):
    _, top = stack
    flat = flatten(store, top, "ex:1", exclude=["etc/c", "/f"])
    assert_valid_image(store, "ex:1")
    got = snap(applied(store, flat, tmp_path / "ex"))
    assert "etc/c" not in got
    assert "f" not in got
    assert "f/g" not in got
    assert {"etc/a", "etc/b", "e"} <= set(got)
    sq = squash(store, top, "ex:2", last=1, exclude=["*g"])
    assert "f/g" not in snap(applied(store, sq, tmp_path / "ex2"))
    with pytest.raises(InvalidArgument, match="empty pattern"):
        flatten(store, top, exclude=["/"])


def test_squashing_a_chmod_rewrite_equals_one_step(store, tmp_path):
    """Layer 1 writes files, layer 2 chmods them (copying the content): squashed, they are byte for byte the
    layer a single step writing the final files gives."""
    trees = {name: tmp_path / name for name in ("t0", "t1", "t2")}
    trees["t0"].mkdir()
    (trees["t0"] / "etc").mkdir()
    (trees["t0"] / "etc/os-release").write_text("debian\n")
    shutil.copytree(trees["t0"], trees["t1"], symlinks=True)
    app = trees["t1"] / "usr/local/app"
    app.mkdir(parents=True)
    for i in range(5):
        (app / f"run{i}.sh").write_bytes(b"#!/bin/sh\necho %d\n" % i * 100)
    shutil.copytree(trees["t1"], trees["t2"], symlinks=True)
    for f in (trees["t2"] / "usr/local/app").iterdir():
        f.chmod(0o755)
    for t in trees.values():  # one clock for every tree, so only the steps differ
        for dirpath, dirnames, filenames in os.walk(t):
            for n in [*dirnames, *filenames, "."]:
                os.utime(Path(dirpath) / n, (EPOCH - 10, EPOCH - 10), follow_symlinks=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    base_layer = layer_from_trees(store, empty, trees["t0"])
    step1 = layer_from_trees(store, trees["t0"], trees["t1"])
    step2 = layer_from_trees(store, trees["t1"], trees["t2"])
    single = layer_from_trees(store, trees["t0"], trees["t2"])
    img = image_of_blobs(store, "chmod:1", [base_layer, step1, step2])
    sq = squash(store, img, "chmod:squashed", last=2)
    assert_valid_image(store, "chmod:squashed")
    assert sq.diff_ids[-1] == imgcore.inspect_blob(_write(tmp_path / "single", single))[1]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_corrupt_source_layer_is_never_tagged(store, stack):
    _, top = stack
    blob = store.blob_path(top.manifest.layers[-1].digest)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-20] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises((DigestMismatch, InvalidArchive)):
        flatten(store, top, "bad:1")
    assert "docker.io/library/bad:1" not in store.tags()


def test_cli_squash_flatten_print_the_new_id(store, stack, capsys):
    root = ["--root", str(store.root)]
    assert main([*root, "squash", "top:1", "--last", "2", "-t", "cli:sq"]) == 0
    sq_id = capsys.readouterr().out.strip()
    assert main([*root, "flatten", "top:1", "-t", "cli:flat", "--exclude", "e"]) == 0
    flat_id = capsys.readouterr().out.strip()
    assert_valid_image(store, "cli:sq")
    assert_valid_image(store, "cli:flat")
    assert store.tags()["docker.io/library/cli:sq"]
    assert sq_id != flat_id
    assert main([*root, "squash", "top:1", "--last", "9"]) == 1
    assert "has 3 layers" in capsys.readouterr().err


# -- commit --squash / --exclude ------------------------------------------------------------------------------


@pytest.fixture
def changed(store, stack):
    """A container (copy driver, never started) on top:1 with a new file, a rewritten one and a cache dir."""
    from imgcore.containers.manager import Containers

    cs = Containers(store)
    box = cs.create("top:1", driver="copy")
    (box.rootfs / "etc/a").write_bytes(b"from the container")
    (box.rootfs / "new").write_bytes(b"n")
    (box.rootfs / "cache").mkdir()
    (box.rootfs / "cache/junk").write_bytes(b"j" * 100)
    return cs, box


def test_commit_exclude(store, changed, tmp_path):
    from imgcore.containers.commit import commit

    cs, box = changed
    result = commit(store, cs, box, "ex:commit", exclude=["cache"])
    assert_valid_image(store, "ex:commit")
    tree = snap(applied(store, result.image, tmp_path / "t"))
    assert "cache" not in tree
    assert "new" in tree


@pytest.mark.parametrize(
    ("flags", "layers", "created_by"),
    [
        ([], 1, "imgcore commit --squash"),
        (["--squash-last", "2"], 3, "imgcore commit --squash-last 2"),
        (["--squash-from", "base:1"], 2, "imgcore commit --squash-from base:1"),
    ],
)
def test_commit_squash(store, changed, tmp_path, capsys, flags, layers, created_by):
    _cs, box = changed
    squash_flag = [] if flags else ["--squash"]
    code = main(["--root", str(store.root), "commit", *squash_flag, *flags, "--exclude", "cache", box.id, "sq:c"])
    assert code == 0, capsys.readouterr().err
    image_id = capsys.readouterr().out.strip()
    assert_valid_image(store, "sq:c")
    img = resolve(store, "sq:c")
    assert img.id == image_id
    assert len(img.manifest.layers) == layers
    assert img.config.history[-1]["created_by"] == created_by
    # the commit's own entry (the container's command) is kept, marked empty_layer
    assert img.config.history[-2].get("empty_layer") is True
    tree = snap(applied(store, img, tmp_path / "t"))
    assert tree["etc/a"][5] == snap(box.rootfs)["etc/a"][5]
    assert "new" in tree
    assert "cache" not in tree
    assert "f/g" in tree
    # no intermediate image is left in index.json: only the tagged one is new
    assert len(store.index_entries()) == 3


# -- the cases crane's flatten gets wrong (go-containerregistry #977, #2002, #1897) ----------------------------


def _hard_stack(store):
    from tests.strategies import TarEntry as E
    from tests.strategies import build_tar

    l0 = [
        E.dir("opq"), E.file("opq/old", b"old"), E.dir("was_dir"), E.file("was_dir/child", b"c"),
        E.file("was_file", b"f"), E.file("linked", b"shared", pax={"SCHILY.xattr.user.k": "v"}),
        E.hardlink("link2", "linked"), E.dir("dev"), E.file("keep", b"k"),
    ]  # fmt: skip
    l1 = [
        E.dir("opq"), E.file("opq/.wh..wh..opq"), E.file("opq/new", b"new"),
        E.file("was_dir", b"now a file"), E.dir("was_file"), E.file("was_file/inside", b"i"),
        E.hardlink("link3", "linked"), E.file(".wh.keep"),
    ]  # fmt: skip
    if os.geteuid() == 0:
        # dev/ written again: a directory a layer only writes into gets the extraction's clock as its mtime
        l1 += [E.dir("dev"), E.device("dev/null", "char", 1, 3, mode=0o666), E.device("dev/fifo", "fifo", mode=0o600)]
    return image_of_blobs(store, "hard:1", [build_tar(l0), build_tar(l1, "gzip")])


@pytest.mark.parametrize("last", [None, 1])
def test_flatten_hardlinks_opaque_replaced_dirs_xattrs_devices(store, tmp_path, last):
    img = _hard_stack(store)
    out = flatten(store, img, "hard:flat") if last is None else squash(store, img, "hard:flat", last=last)
    assert_valid_image(store, "hard:flat")
    got = applied(store, out, tmp_path / "got")
    want = applied(store, img, tmp_path / "want")
    assert snap(got) == snap(want)
    assert xattrs(got) == xattrs(want) == {p: {"user.k": b"v"} for p in ("linked", "link2", "link3")}
    tree = snap(got)
    assert "opq/old" not in tree
    assert tree["was_dir"][0] == "file"
    assert tree["was_file"][0] == "dir"
    assert "keep" not in tree
    assert tree["linked"][7] == 3  # one inode for the three names
    if os.geteuid() == 0:
        st = (got / "dev/null").lstat()
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
        assert tree["dev/fifo"][0] == "other"
    if last is None:  # one layer onto nothing: no whiteout at all
        with tarfile.open(store.blob_path(out.manifest.layers[0].digest)) as tf:
            assert not [n for n in tf.getnames() if ".wh." in n]
