"""Leases against a collector running at the same moment: a live writer's lease is never taken for a dead one's."""

from __future__ import annotations

import os
import sys
import threading
import time

from imgcore.gc import collect
from imgcore.store import ContentStore, collecting, leased
from tests.images_helpers import make_image
from tests.validate import assert_valid_image


def test_a_lease_being_taken_is_never_removed_by_a_collection(store: ContentStore) -> None:
    """Found by the race tests' review: the lease file used to exist, unlocked, before its owner's flock, and a
    collection in that moment removed it as a dead writer's (up to 1 in 150 leases here)."""
    stop = threading.Event()

    def collector() -> None:
        while not stop.is_set():
            with collecting(store.paths):
                leased(store.paths)

    t = threading.Thread(target=collector)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the collector lands inside the writer's steps
    t.start()
    lost = 0
    try:
        for _ in range(2000):
            with store.lease("writer") as lease:
                lost += not lease.path.exists()
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)
    assert lost == 0


def test_a_lease_names_what_it_holds_as_soon_as_it_is_visible(store: ContentStore) -> None:
    digest = "sha256:" + "cd" * 32
    with store.lease("writer") as lease:
        lease.hold(digest)
        with collecting(store.paths):
            assert digest in leased(store.paths)
        assert [p.name for p in store.paths.leases.iterdir()] == [lease.path.name]
    assert list(store.paths.leases.iterdir()) == []


def test_staging_of_a_writer_killed_before_the_rename_is_removed_once_old(store: ContentStore) -> None:
    store.paths.leases.mkdir(parents=True, exist_ok=True)
    fresh, old = store.paths.leases / ".1-aa.json", store.paths.leases / ".2-bb.json"
    fresh.write_text("{}")
    old.write_text("{}")
    past = time.time() - 3600
    os.utime(old, (past, past))
    with collecting(store.paths):
        assert leased(store.paths) == set()
    assert sorted(p.name for p in store.paths.leases.iterdir()) == [".1-aa.json"]


def test_a_leased_manifest_keeps_what_it_reaches(store: ContentStore) -> None:
    """Found by test_races (tag vs prune, tag vs rmi -f): ``tag`` leases the manifest it tags; the leased digest
    seeded the mark, so the walk from index.json stopped at that manifest and prune swept a tagged image's config
    and layers; and rmi -f of the source swept them under a tag being written."""
    base = make_image(store, "base:1", {"etc/base": b"base\n"})
    child = make_image(store, "child:1", {"etc/child": b"child\n"}, parent=base)
    with store.lease("tag") as lease:
        lease.hold(child.digest)
        collect.prune(store)
        assert_valid_image(store, "child:1")
        collect.remove_image(store, "child:1", force=True)
        for d in [child.id, *(layer.digest for layer in child.layers)]:
            assert store.has_blob(d), d
    assert_valid_image(store, "base:1")
    collect.prune(store)
    assert not store.has_blob(child.id)  # swept once the lease is gone
