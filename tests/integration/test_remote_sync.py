"""``sync`` against the real docker-registry: every tag copied, then an unchanged sync costs one manifest HEAD per
tag on each side (counted by recording proxies), and a moved tag is the only one copied again."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from imgcore.transfer import copy as copying
from imgcore.transfer import remote
from imgcore.transfer import sync as syncing

from .conftest import OciImage, RecordingProxy, Registry
from .remote_support import MultiArch, imgcore, multiarch, skopeo_inspect

pytestmark = pytest.mark.integration
__all__ = ["multiarch"]  # the fixture, from remote_support

TAGS = [f"t{i:02d}" for i in range(30)]


def test_sync_then_unchanged_costs_one_head_per_side(
    pushed_image: tuple[OciImage, str], multiarch: MultiArch, registry: Registry
) -> None:
    image, ref = pushed_image
    with remote.Clients() as clients:
        copying.copy(ref, f"{registry.host}/syncsrc/app:{TAGS[0]}", clients=clients)
        copying.copy(f"{registry.host}/multi/app:multi", f"{registry.host}/syncsrc/app:multi", clients=clients)
        c = clients.get(registry.host)
        m = c.get_manifest("syncsrc/app", TAGS[0])
        for t in TAGS[1:]:
            c.put_manifest("syncsrc/app", t, m.raw, m.media_type)
    every = sorted([*TAGS, "multi"])
    src, dst = RecordingProxy(registry.host), RecordingProxy(registry.host)  # two hosts: no mounts, blobs stream
    try:
        first = imgcore("sync", f"{src.host}/syncsrc/app", f"{dst.host}/syncdst/app")
        assert first.returncode == 0, first.stderr
        assert first.stdout.decode() == (
            f"synced {len(every)} tags from {src.host}/syncsrc/app to {dst.host}/syncdst/app: "
            f"{len(every)} copied, 0 unchanged\n"
        )
        assert json.loads(skopeo_inspect(registry, "syncdst/app:t07"))["Digest"] == image.manifest_digest
        assert remote.digest(f"{registry.host}/syncdst/app:multi", remote.Clients()) == multiarch.index_digest
        # the first sync streamed each blob once, however many tags share it
        uploads = Counter(p.split("digest=", 1)[1] for m, p in dst.requests() if m == "PUT" and "digest=" in p)
        assert len(uploads) == 3 + 2 * 3  # the image's config and 2 layers, and the same for each platform
        assert set(uploads.values()) == {1}

        src.clear()
        dst.clear()
        second = imgcore("sync", f"{src.host}/syncsrc/app", f"{dst.host}/syncdst/app")
        assert second.returncode == 0, second.stderr
        assert second.stdout.decode().endswith(f": 0 copied, {len(every)} unchanged\n")
        heads_src = sorted(p for m, p in src.requests() if m == "HEAD")
        assert heads_src == sorted(f"/v2/syncsrc/app/manifests/{t}" for t in every)
        assert sorted(p for m, p in dst.requests() if m == "HEAD") == sorted(
            f"/v2/syncdst/app/manifests/{t}" for t in every
        )
        assert [r for r in src.requests() if r[0] != "HEAD"] == [("GET", "/v2/"), ("GET", "/v2/syncsrc/app/tags/list")]
        assert [r for r in dst.requests() if r[0] != "HEAD"] == [("GET", "/v2/")]

        # Move one tag: only it is copied.
        with remote.Clients() as clients:
            c = clients.get(registry.host)
            idx = c.get_manifest("syncsrc/app", "multi")
            c.put_manifest("syncsrc/app", "t05", idx.raw, idx.media_type)
            dst.clear()
            result = syncing.sync(f"{src.host}/syncsrc/app", f"{dst.host}/syncdst/app", clients=clients)
        assert [r.destination for r in result.copied] == [f"{dst.host}/syncdst/app:t05"]
        assert result.copied[0].digest == multiarch.index_digest
        assert result.copied[0].blobs == ()  # the index's manifests were there already: nothing walked
        assert len(result.unchanged) == len(every) - 1
        puts = [p for m, p in dst.requests() if m == "PUT"]
        assert puts == ["/v2/syncdst/app/manifests/t05"]
        assert (
            json.loads(skopeo_inspect(registry, "syncdst/app:t05", "--raw"))["manifests"][0]["digest"]
            == (multiarch.manifests["linux/amd64"])
        )
    finally:
        src.close()
        dst.close()


def test_sync_takes_repositories(registry: Registry) -> None:
    out = imgcore("sync", f"{registry.host}/a/b:v1", f"{registry.host}/c/d")
    assert out.returncode == 1
    assert b"sync: source" in out.stderr
    assert b"without a tag" in out.stderr
