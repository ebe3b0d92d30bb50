"""Every reshape is deterministic and verified: the same inputs give the same digests whatever the thread count
or the time of the run, and nothing is tagged before every blob and diff_id of the result was re-hashed."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from imgcore.errors import DigestMismatch, SizeMismatch
from imgcore.image.catalog import resolve
from imgcore.models import OCI_MANIFEST, Descriptor, ImageConfig, Manifest, canonical_json
from imgcore.reshape.mutate import append_layers, reconfigure
from imgcore.reshape.squash import flatten, squash
from imgcore.reshape.verify import verify
from tests.conftest import require_tool
from tests.images_helpers import layer_tar
from tests.reshape_helpers import image_of_blobs
from tests.validate import assert_valid_image


@pytest.fixture
def stack(store):
    base = image_of_blobs(store, "base:1", [layer_tar({"etc/": None, "etc/a": b"a", "d/x": b"x"})])
    # the top layer writes into etc/ without an entry for etc/ itself: unpacked, etc/ gets the clock's mtime
    top = image_of_blobs(store, "top:1", [layer_tar({"d/.wh.x": b"", "e": b"e"}), _bare("etc/new", b"n")], base=base)
    return base, top


def _bare(name: str, data: bytes) -> bytes:
    """A one-file tar with no entry for the file's directory."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime = len(data), 1_600_000_000
        tf.addfile(ti, io.BytesIO(data))
    return out.getvalue()


def _tar(path, name: str, data: bytes):
    path.write_bytes(_bare(name, data))
    return path


def test_the_time_of_the_run_changes_nothing(store, stack):
    _, top = stack
    first = flatten(store, top).id
    shutil.rmtree(store.root / "imgcore" / "rootfs")  # unpacked again, a second later
    time.sleep(1.1)
    assert flatten(store, top).id == first
    squashed = squash(store, top, last=2).id
    shutil.rmtree(store.root / "imgcore" / "rootfs")
    time.sleep(1.1)
    assert squash(store, top, last=2).id == squashed


def test_same_digests_whatever_the_thread_count(store, stack, tmp_path):
    """Each reshape run in two processes, one pinned to a single core, gives the same image."""
    taskset = require_tool("taskset")  # util-linux
    layer = _tar(tmp_path / "l.tar", "added", b"1")
    cpus = sorted(os.sched_getaffinity(0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("SOURCE_DATE_EPOCH", None)
    commands = [
        ["flatten", "top:1"],
        ["squash", "top:1", "--last", "2"],
        ["rebase", "top:1", "--old-base", "base:1", "--new-base", "base:1"],
        ["append", "top:1", str(layer)],
        ["config", "top:1", "-c", "ENV A=B"],
    ]
    outs = []
    for pin in (str(cpus[0]), ",".join(map(str, cpus))):
        shutil.rmtree(store.root / "imgcore" / "rootfs", ignore_errors=True)
        ids = []
        for args in commands:
            r = subprocess.run(
                [taskset, "-c", pin, sys.executable, "-m", "imgcore", "--root", str(store.root), *args],
                capture_output=True, text=True, env=env, check=True,
            )  # fmt: skip
            ids.append(r.stdout.strip())
        outs.append(ids)
    assert outs[0] == outs[1]
    assert len(set(outs[0])) == len(commands)
    assert outs[0][2] == resolve(store, "top:1").id  # rebased onto its own base: the image itself


def test_source_date_epoch_fixes_created(store, stack, monkeypatch):
    _, top = stack
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    out = reconfigure(store, top, ["ENV A=B"], "sde:1")
    assert out.config.created == "2009-02-13T23:31:30Z"
    assert out.config.history[-1]["created"] == "2009-02-13T23:31:30Z"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    kept = reconfigure(store, top, ["ENV A=B"])
    assert kept.config.created == "2023-11-14T22:13:20Z"  # the source image's own time (EPOCH)


def test_verify_finds_a_bad_blob_and_a_bad_diff_id(store, stack):
    _, top = stack
    verify(store, top.manifest_desc)
    # a config whose diff_id is wrong
    data = dict(top.config.data)
    data["rootfs"] = {"type": "layers", "diff_ids": [*top.diff_ids[:-1], top.diff_ids[0]]}
    cfg = ImageConfig.from_bytes(canonical_json(data))
    store.put_blob(cfg.raw)
    m = Manifest.build(Descriptor(top.manifest.config.media_type, cfg.digest, len(cfg.raw)), list(top.manifest.layers))
    desc = store.put_manifest(m.raw, OCI_MANIFEST)
    with pytest.raises(DigestMismatch, match="uncompressed tar hashes to"):
        verify(store, desc)
    # a layer blob changed on disk
    blob = store.blob_path(top.manifest.layers[0].digest)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"\0" * 512)
    with pytest.raises((DigestMismatch, SizeMismatch)):
        verify(store, top.manifest_desc)


def test_a_bad_base_layer_stops_append_before_the_tag(store, stack, tmp_path):
    _, top = stack
    blob = store.blob_path(top.manifest.layers[0].digest)
    blob.chmod(0o644)
    raw = bytearray(blob.read_bytes())
    raw[100] ^= 1
    blob.write_bytes(bytes(raw))
    with pytest.raises(DigestMismatch):
        append_layers(store, top, [_tar(tmp_path / "l.tar", "x", b"x")], "never:1")
    assert "docker.io/library/never:1" not in store.tags()


def test_results_validate(store, stack, tmp_path):
    _, top = stack
    flatten(store, top, "v:flat")
    append_layers(store, top, [_tar(tmp_path / "l.tar", "x", b"x")], "v:app")
    for ref in ("v:flat", "v:app"):
        assert_valid_image(store, ref)
