"""The ``images`` summary cache: written once per new image, used after, and never trusted when malformed."""

from __future__ import annotations

import json

from imgcore.image import catalog
from tests.images_helpers import make_image


def test_summaries_are_cached_and_a_bad_cache_is_recomputed(store):
    base = make_image(store, "base:1", {"etc/a": b"a" * 1000}, config={"Labels": {"k": "v"}})
    child = make_image(store, "app:1", {"app/x": b"x"}, parent=base)
    first = {s.digest: s for s in catalog.summaries(store)}
    path = store.paths.state / "summaries.json"
    cached = json.loads(path.read_text())["images"]
    assert set(cached) == {base.digest, child.digest}
    assert first[base.digest].labels == {"k": "v"}
    assert first[child.digest].size == catalog.image_size(store, child)
    # a hostile or broken cache entry is recomputed from the verified documents, not shown
    cached[base.digest] = {"manifest": 1, "id": "x", "size": -5, "labels": {"k": ["v"]}}
    path.write_text(json.dumps({"version": 1, "images": cached}))
    again = {s.digest: s for s in catalog.summaries(store)}
    assert again[base.digest].id == base.id
    assert again[base.digest].size == first[base.digest].size
    path.write_text("{not json")
    assert {s.id for s in catalog.summaries(store)} == {base.id, child.id}
    rows = catalog.list_images(store, ["label=k=v"])  # the child inherits its parent's labels, as in docker
    assert sorted((r.repository, r.tag) for r in rows) == [("app", "1"), ("base", "1")]
    assert catalog.list_images(store, ["label=k=other"]) == []
