"""The content store: verified atomic ingest, idempotent CAS verbs, resumable partials, locked tags, fsck."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import imgcore
from imgcore.errors import BlobNotFound, DigestMismatch, ImageNotFound, SizeMismatch, StoreError
from imgcore.models import REF_NAME, Descriptor
from imgcore.store import ContentStore, default_root


def _leftovers(store: ContentStore) -> list[Path]:
    return [p for p in (store.root / "imgcore" / "ingest").iterdir()]


def test_layout_is_an_oci_image_layout(store):
    assert json.loads((store.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((store.root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["manifests"] == []
    assert (store.root / "blobs" / "sha256").is_dir()


def test_default_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCORE_ROOT", str(tmp_path / "r"))
    assert default_root() == tmp_path / "r"
    monkeypatch.delenv("IMGCORE_ROOT")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "imgcore"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".local" / "share" / "imgcore"


def test_refuses_a_foreign_layout_version(tmp_path):
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "9.9"}')
    with pytest.raises(StoreError, match="unsupported imageLayoutVersion"):
        ContentStore(tmp_path)


@pytest.mark.parametrize("kind", ["bytes", "file", "path"])
def test_put_get_roundtrip_from_every_source(store, tmp_path, kind):
    data = os.urandom(3 << 20)
    if kind == "bytes":
        source = data
    elif kind == "file":
        source = io.BytesIO(data)
    else:
        source = tmp_path / "src"
        source.write_bytes(data)
    desc = store.put_blob(source, digest=imgcore.sha256(data), size=len(data))
    assert desc.digest == imgcore.sha256(data)
    assert desc.size == len(data)
    assert store.has_blob(desc.digest)
    assert store.get_blob(desc.digest, verify=True) == data
    assert store.blob_path(desc.digest).read_bytes() == data
    assert store.blob_size(desc.digest) == len(data)
    assert _leftovers(store) == []


def test_put_is_idempotent_and_delete_too(store):
    a = store.put_blob(b"same")
    b = store.put_blob(b"same")
    assert a == b
    assert store.list_blobs() == [a.digest]
    assert store.delete_blob(a.digest) is True
    assert store.delete_blob(a.digest) is False
    assert not store.has_blob(a.digest)
    with pytest.raises(BlobNotFound) as info:
        store.get_blob(a.digest)
    assert info.value.digest == a.digest
    assert isinstance(info.value, LookupError)


def test_mismatch_leaves_nothing_behind(store):
    good = imgcore.sha256(b"expected")
    with pytest.raises(DigestMismatch) as info:
        store.put_blob(b"tampered", digest=good)
    assert info.value.expected == good
    assert info.value.actual == imgcore.sha256(b"tampered")
    assert good in str(info.value)
    assert info.value.actual in str(info.value)
    with pytest.raises(SizeMismatch):
        store.put_blob(b"expected", digest=good, size=3)
    with pytest.raises(SizeMismatch):
        store.put_blob(b"expected", digest=good, size=100)
    assert store.list_blobs() == []
    assert _leftovers(store) == []


def test_invalid_digest_is_refused_before_writing(store):
    with pytest.raises(imgcore.errors.InvalidDigest):
        store.put_blob(b"x", digest="sha256:nothex")
    with pytest.raises(imgcore.errors.InvalidDigest):
        store.has_blob("../../etc/passwd")


def test_verify_on_read_detects_corruption(store):
    desc = store.put_blob(b"precious bytes")
    path = store.blob_path(desc.digest)
    path.chmod(0o644)
    path.write_bytes(b"precious bytez")
    assert store.get_blob(desc.digest) == b"precious bytez"  # unverified read returns what is there
    with pytest.raises(DigestMismatch, match="corrupt"):
        store.get_blob(desc.digest, verify=True)


def test_fsck_reports_only_the_corrupt_blobs(store):
    descs = [store.put_blob(os.urandom(1000 + i)) for i in range(50)]
    assert store.fsck() == []
    bad = descs[7]
    p = store.blob_path(bad.digest)
    p.chmod(0o644)
    p.write_bytes(b"garbage")
    (store.root / "blobs" / "sha256" / "not-a-digest").write_bytes(b"")
    problems = store.fsck()
    assert len(problems) == 2
    assert any(bad.digest.split(":")[1] in pr.path and "corrupt" in pr.problem for pr in problems)
    assert any("not a valid digest name" in pr.problem for pr in problems)


def test_resumable_ingest_keeps_and_rehashes_its_partial(store):
    data = os.urandom(2_000_000)
    digest = imgcore.sha256(data)
    with store.ingest(digest, len(data)) as ing:
        assert ing.offset == 0
        ing.write(data[:1_234_567])
    assert not store.has_blob(digest)  # an interrupted ingest is never a blob
    with store.ingest(digest, len(data)) as ing:
        assert ing.offset == 1_234_567
        ing.write(data[ing.offset :])
        desc = ing.commit()
    assert desc.digest == digest
    assert store.get_blob(digest, verify=True) == data
    assert _leftovers(store) == []


def test_resumed_partial_with_bad_bytes_is_dropped_on_commit(store):
    data = b"0123456789"
    digest = imgcore.sha256(data)
    with store.ingest(digest, len(data)) as ing:
        ing.write(b"XXXX")
    with store.ingest(digest, len(data)) as ing:
        ing.write(data[ing.offset :])
        with pytest.raises(DigestMismatch):
            ing.commit()
    assert not store.has_blob(digest)
    with store.ingest(digest, len(data)) as ing:
        assert ing.offset == 0  # the bad partial is gone: a fresh start
        ing.write(data)
        ing.commit()
    assert store.has_blob(digest)


def test_killed_writer_never_leaves_a_blob(store):
    """A process killed mid-ingest leaves at most a partial, never a blob under blobs/."""
    data_len = 50 << 20
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from imgcore.store import ContentStore
        s = ContentStore({str(store.root)!r})
        ing = s.ingest("sha256:" + "ab" * 32, {data_len})
        ing.write(b"x" * (1 << 20))
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert store.list_blobs() == []
    assert store.fsck() == []
    with store.ingest("sha256:" + "ab" * 32, data_len) as ing:
        assert ing.offset == 1 << 20


def _ingest_same(root: str, data: bytes) -> str:
    return ContentStore(root).put_blob(data, digest=imgcore.sha256(data)).digest


def _resume_same(root: str, data: bytes) -> str:
    s = ContentStore(root)
    with s.ingest(imgcore.sha256(data), len(data)) as ing:
        for i in range(ing.offset, len(data), 65536):
            ing.write(data[i : i + 65536])
        return ing.commit().digest


@pytest.mark.parametrize("fn", [_ingest_same, _resume_same])
def test_concurrent_ingest_of_one_blob_from_processes(store, fn):
    data = os.urandom(8 << 20)
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(fn, [str(store.root)] * 8, [data] * 8))
    assert set(results) == {imgcore.sha256(data)}
    assert store.list_blobs() == [imgcore.sha256(data)]
    assert store.get_blob(results[0], verify=True) == data


def _tag_many(root: str, worker: int) -> None:
    s = ContentStore(root)
    for i in range(15):
        d = s.put_blob(f"manifest {worker} {i}".encode())
        s.tag(f"repo{worker}:t{i}", Descriptor("application/vnd.oci.image.manifest.v1+json", d.digest, d.size))


def test_concurrent_tag_writes_lose_none(store):
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(_tag_many, [str(store.root)] * 6, range(6)))
    tags = store.tags()
    assert len(tags) == 6 * 15
    assert tags["docker.io/library/repo3:t14"].digest == imgcore.sha256(b"manifest 3 14")


def test_tags_move_and_leave_the_old_image_untagged(store):
    a = store.put_blob(b"image a")
    b = store.put_blob(b"image b")
    mt = "application/vnd.oci.image.manifest.v1+json"
    store.tag("app:1", Descriptor(mt, a.digest, a.size))
    store.tag("app:1", Descriptor(mt, b.digest, b.size))
    assert store.tags()["docker.io/library/app:1"].digest == b.digest
    entries = store.index_entries()
    assert {e.digest for e in entries} == {a.digest, b.digest}
    untagged = [e for e in entries if not (e.annotations or {}).get(REF_NAME)]
    assert [e.digest for e in untagged] == [a.digest]
    store.tag("other:x", Descriptor(mt, a.digest, a.size))
    assert len(store.index_entries()) == 2  # tagging the dangling image replaces its untagged entry
    store.untag("app:1")
    assert "docker.io/library/app:1" not in store.tags()
    with pytest.raises(ImageNotFound):
        store.untag("app:1")
    assert store.has_blob(a.digest)


def test_tag_needs_the_manifest_in_the_store(store):
    with pytest.raises(BlobNotFound):
        store.tag("x:y", Descriptor("m", "sha256:" + "0" * 64, 1))


def test_broken_index_is_a_store_error(store):
    (store.root / "index.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"index\.json"):
        store.tags()


def test_fsck_reports_a_truncated_index_a_bogus_entry_and_a_symlinked_blob(store, tmp_path):
    good = store.put_blob(b"good")
    (store.root / "index.json").write_text('{"schemaVersion": 2, "manifests": [')
    assert [p.path for p in store.fsck()] == ["index.json"]  # a truncated index is a problem, not "0 problems"
    (store.root / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"mediaType": "x"}]}')
    assert [str(p) for p in store.fsck()] == ["index.json: manifests[0]: no digest"]
    (store.root / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    outside = tmp_path / "outside"
    outside.write_bytes(b"planted")
    planted = store.blob_path(imgcore.sha256(b"planted"))
    planted.symlink_to(outside)
    problems = store.fsck()
    assert [p.path for p in problems] == [str(planted)]
    assert "not a regular file" in problems[0].problem
    assert store.has_blob(good.digest)


def test_fsck_repair_moves_what_is_broken_aside_and_keeps_the_rest(store, tmp_path):
    from imgcore.models import Descriptor

    good = store.put_blob(b"good")
    bad = store.put_blob(b"will be corrupted")
    path = store.blob_path(bad.digest)
    path.chmod(0o644)
    path.write_bytes(b"corrupted")
    store.tag("app:1", Descriptor("application/vnd.oci.image.manifest.v1+json", good.digest, good.size))
    missing = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64, "size": 1}
    store.update_index(lambda ms: [*ms, missing])  # an entry whose manifest is gone (planted, or a crash elsewhere)
    problems = store.fsck(repair=True)
    assert sorted(p.path for p in problems) == sorted([str(path), "index.json"])
    assert all(p.repaired for p in problems)
    assert not path.exists()
    moved = sorted(store.paths.lost_and_found.iterdir())
    assert any(m.read_bytes() == b"corrupted" for m in moved if m.is_file() and not m.name.endswith(".json"))
    assert set(store.tags()) == {"docker.io/library/app:1"}  # the broken entry dropped, the good tag kept
    assert store.fsck() == []  # a second pass finds nothing left
    # an unreadable index.json is moved aside and replaced by an empty one
    (store.root / "index.json").write_text("{broken")
    (problem,) = store.fsck(repair=True)
    assert "new empty index.json" in problem.repaired
    assert store.fsck() == []
    assert store.has_blob(good.digest)
