"""imgcore.images: resolve, list, history, inspect, tag, rmi, prune, df, on images built through the Store API.

Every test that writes an image validates it with ``assert_valid_image``.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgcore
from imgcore import sha256
from imgcore.errors import ImageConflict, ImageNotFound, InvalidArgument, InvalidReference
from imgcore.gc import collect, usage
from imgcore.image import catalog, model, sizes
from imgcore.image.model import chain_ids
from imgcore.models import REF_NAME, Descriptor
from imgcore.store import ContentStore
from tests.images_helpers import layer_tar, make_image
from tests.validate import assert_valid_image

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def tomcat(store):
    """The seed's scenario: a base with webapps.dist and an empty webapps, and a child that filled webapps."""
    base = make_image(
        store,
        "tomcat:latest",
        {"usr/local/tomcat/webapps.dist/ROOT/index.jsp": b"<h1>tomcat</h1>\n" * 500, "usr/local/tomcat/webapps/": None},
        created=NOW - dt.timedelta(days=12),
        created_by="/bin/sh -c #(nop) ADD file:webapps in /usr/local/tomcat",
    )
    child = make_image(
        store,
        "new_tomcat:1.0",
        {"usr/local/tomcat/webapps/ROOT/index.jsp": b"<h1>tomcat</h1>\n" * 500},
        parent=base,
        created=NOW - dt.timedelta(seconds=6),
        comment="newtomcat",
        author="xxx",
    )
    assert_valid_image(store, "tomcat")
    assert_valid_image(store, "new_tomcat:1.0")
    return base, child


# ------------------------------------------------------------------------------------------------- resolve


def test_resolve_by_tag_id_prefix_and_digest(store, tomcat):
    base, child = tomcat
    assert catalog.resolve(store, "tomcat").id == base.id
    assert catalog.resolve(store, "docker.io/library/tomcat:latest").id == base.id
    assert catalog.resolve(store, "new_tomcat:1.0").id == child.id
    assert catalog.resolve(store, child.id).id == child.id  # sha256:<64>
    assert catalog.resolve(store, child.id[7:]).id == child.id  # 64 hex
    assert catalog.resolve(store, child.short_id).id == child.id  # 12 hex
    assert catalog.resolve(store, "sha256:" + child.short_id).id == child.id
    assert catalog.resolve(store, f"new_tomcat@{child.digest}").id == child.id
    assert catalog.resolve(store, child.digest).id == child.id  # the manifest digest also names it
    img = catalog.resolve(store, "new_tomcat:1.0")
    assert img.tags == ("docker.io/library/new_tomcat:1.0",)
    assert img.repo_tags == ["new_tomcat:1.0"]
    assert img.repo_digests == [f"new_tomcat@{child.digest}"]
    assert img.config.diff_ids[0] == base.config.diff_ids[0]
    assert img.layers[0] == base.layers[0]


def test_resolve_errors_say_what_is_wrong(store, tomcat):
    with pytest.raises(ImageNotFound, match=r"No such image: nope:latest"):
        catalog.resolve(store, "nope")
    with pytest.raises(ImageNotFound, match=r"No such image: tomcat:9"):
        catalog.resolve(store, "tomcat:9")
    with pytest.raises(ImageNotFound, match="No such image: 0123456789ab"):
        catalog.resolve(store, "0123456789ab")
    with pytest.raises(InvalidReference, match="must be lowercase"):
        catalog.resolve(store, "Tomcat")
    with pytest.raises(InvalidReference, match="invalid tag"):
        catalog.resolve(store, "tomcat:bad tag")
    with pytest.raises(InvalidReference, match="empty"):
        catalog.resolve(store, "  ")
    with pytest.raises(ImageNotFound):
        catalog.resolve(store, "tomcat@sha256:" + "0" * 64)


def test_a_name_that_looks_like_hex_is_a_tag_first_then_an_id_prefix(store):
    img = make_image(store, "abc:latest", {"f": b"1"})
    other = make_image(store, None, {"g": b"2"})
    assert catalog.resolve(store, "abc").id == img.id
    assert catalog.resolve(store, other.short_id[:5]).id == other.id


def test_ambiguous_id_prefix_is_refused(store):
    made = [make_image(store, f"img{i}:latest", {"f": str(i).encode()}) for i in range(40)]
    by_first = {}
    for m in made:
        by_first.setdefault(m.id[7], []).append(m)
    clash = next(v for v in by_first.values() if len(v) > 1)
    with pytest.raises(ImageConflict, match="ambiguous"):
        catalog.resolve(store, clash[0].id[7])


# ------------------------------------------------------------------------------------------------- images


def test_list_images_rows_sizes_and_order(store, tomcat):
    base, child = tomcat
    catalog.tag(store, "tomcat", "tomcat:9")
    dangling = make_image(store, None, {"x": b"y"}, created=NOW - dt.timedelta(days=400))
    rows = catalog.list_images(store)
    assert [(r.repository, r.tag, r.image.id) for r in rows] == [
        ("new_tomcat", "1.0", child.id),
        ("tomcat", "9", base.id),
        ("tomcat", "latest", base.id),
        ("<none>", "<none>", dangling.id),
    ]
    tar_size = len(
        layer_tar(
            {
                "usr/local/tomcat/webapps.dist/ROOT/index.jsp": b"<h1>tomcat</h1>\n" * 500,
                "usr/local/tomcat/webapps/": None,
            }
        )
    )
    assert rows[1].size == tar_size  # uncompressed, as docker's SIZE
    assert rows[0].size == tar_size + sizes.layer_size(store, child.layers[1])
    assert rows[3].dangling


def test_layer_size_is_computed_from_the_blob_when_not_recorded(store, tomcat):
    base, _ = tomcat
    layer = base.layers[0]
    known = sizes.layer_size(store, layer)
    (store.root / "imgcore" / "sizes").joinpath(f"sha256-{layer.digest[7:]}").unlink()
    assert sizes.layer_size(store, layer) == known
    uncompressed = make_image(store, "plain:1", {"a": b"1" * 3000}, compression="none")
    assert sizes.layer_size(store, uncompressed.layers[0]) == uncompressed.layers[0].size
    assert_valid_image(store, "plain:1")


def test_list_images_filters(store, tomcat):
    base, child = tomcat
    make_image(store, "registry.example:5000/team/app:v2", {"a": b"1"}, config={"Labels": {"tier": "web"}})
    dangling = make_image(store, None, {"x": b"y"})

    def names(filters=(), reference=None):
        return [f"{r.repository}:{r.tag}" for r in catalog.list_images(store, filters, reference=reference)]

    assert names(["dangling=true"]) == ["<none>:<none>"]
    assert "<none>:<none>" not in names(["dangling=false"])
    assert names(reference="tomcat") == ["tomcat:latest"]
    assert names(["reference=*tomcat"]) == ["new_tomcat:1.0", "tomcat:latest"]
    assert names(["reference=*:1.0"]) == ["new_tomcat:1.0"]
    assert names(["reference=registry.example:5000/team/*"]) == ["registry.example:5000/team/app:v2"]
    assert names(["reference=team/*"]) == []  # * never crosses "/" and names are familiar
    assert names(["label=tier"]) == ["registry.example:5000/team/app:v2"]
    assert names(["label=tier=db"]) == []
    assert names([f"before={child.id}"]) == ["tomcat:latest"]
    assert set(names([f"since={base.short_id}"])) >= {"new_tomcat:1.0", "<none>:<none>"}
    assert dangling.id
    with pytest.raises(InvalidArgument, match="dangling=maybe"):
        catalog.list_images(store, ["dangling=maybe"])
    with pytest.raises(InvalidArgument, match="supported filters"):
        catalog.list_images(store, ["colour=red"])
    with pytest.raises(InvalidArgument, match="KEY=VALUE"):
        catalog.list_images(store, ["dangling"])


# ------------------------------------------------------------------------------------------------- history


def test_history_rows(store, tomcat):
    base, child = tomcat
    meta = make_image(
        store, "meta:1", {}, parent=child, empty_layer=True, created_by='/bin/sh -c #(nop)  CMD ["catalina.sh"]'
    )
    assert_valid_image(store, "meta:1")
    rows = catalog.history(store, "meta:1")
    assert [r.id for r in rows] == [meta.id, "<missing>", "<missing>"]
    assert rows[0].empty_layer
    assert rows[0].size == 0
    assert rows[0].tags == ("meta:1",)
    assert rows[1].comment == "newtomcat"
    assert rows[1].size == sizes.layer_size(store, child.layers[1])
    assert rows[2].size == sizes.layer_size(store, base.layers[0])
    assert rows[2].created_by.startswith("/bin/sh -c #(nop) ADD")
    assert rows[2].created is not None
    assert abs(rows[2].created - (NOW - dt.timedelta(days=12))) < dt.timedelta(seconds=1)


def test_history_shows_layers_that_the_history_does_not_describe(store):
    img = make_image(store, "nohist:1", {"a": b"1"})
    # rewrite the config without history, as some hand-made images have
    cfg = dict(img.config.data)
    cfg.pop("history")
    raw = imgcore.models.canonical_json(cfg)
    cdesc = store.put_blob(raw)
    m = imgcore.models.Manifest.build(
        Descriptor(img.manifest.config.media_type, cdesc.digest, cdesc.size), list(img.manifest.layers)
    )
    store.tag("nohist:2", store.put_manifest(m.raw, m.media_type))
    assert_valid_image(store, "nohist:2")
    rows = catalog.history(store, "nohist:2")
    assert len(rows) == 1
    assert rows[0].size == sizes.layer_size(store, img.layers[0])


# ------------------------------------------------------------------------------------------------- inspect


def test_inspect_has_dockers_keys(store, tomcat):
    _, child = tomcat
    data = catalog.inspect(store, "new_tomcat:1.0")
    assert list(data) == [
        "Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author", "Config",
        "Architecture", "Os", "Size", "GraphDriver", "RootFS", "Metadata", "Descriptor",
    ]  # fmt: skip
    assert data["Id"] == child.id
    assert data["RepoTags"] == ["new_tomcat:1.0"]
    assert data["RepoDigests"] == []  # never pulled nor pushed (docker fills it only then)
    assert data["Comment"] == "newtomcat"
    assert data["Author"] == "xxx"
    assert data["RootFS"] == {"Type": "layers", "Layers": child.config.diff_ids}
    assert data["Size"] == catalog.image_size(store, child)
    assert data["Metadata"] == {"LastTagTime": "0001-01-01T00:00:00Z"}
    layers = [str(store.paths.layers / c.partition(":")[2] / "diff") for c in chain_ids(child.config.diff_ids)]
    assert data["GraphDriver"] == {"Name": "overlayfs", "Data": {"UpperDir": layers[-1], "LowerDir": layers[0]}}
    assert data["Descriptor"]["digest"] == child.digest
    json.dumps(data)
    catalog.tag(store, "new_tomcat:1.0", "again:1")
    assert catalog.inspect(store, "again:1")["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"


# ------------------------------------------------------------------------------------------------- tag


def test_tag_adds_and_moves_tags(store, tomcat):
    base, child = tomcat
    img = catalog.tag(store, child.short_id, "localhost:5000/web/tomcat:prod")
    assert img.id == child.id
    assert "localhost:5000/web/tomcat:prod" in store.tags()
    catalog.tag(store, "tomcat", "localhost:5000/web/tomcat:prod")  # move it
    assert catalog.resolve(store, "localhost:5000/web/tomcat:prod").id == base.id
    catalog.tag(store, "tomcat", "bare")
    assert catalog.resolve(store, "bare:latest").id == base.id
    assert_valid_image(store, "localhost:5000/web/tomcat:prod")
    with pytest.raises(InvalidReference, match="digest"):
        catalog.tag(store, "tomcat", f"tomcat@{base.digest}")
    with pytest.raises(InvalidReference):
        catalog.tag(store, "tomcat", "UPPER:case")
    with pytest.raises(ImageNotFound):
        catalog.tag(store, "missing", "x:1")


# ------------------------------------------------------------------------------------------------- rmi


def test_rmi_by_tag_untags_then_deletes_with_the_last_tag(store, tomcat):
    base, child = tomcat
    catalog.tag(store, "new_tomcat:1.0", "new_tomcat:stable")
    records = collect.remove_image(store, "new_tomcat:1.0")
    assert [str(r) for r in records] == ["Untagged: new_tomcat:1.0"]
    assert store.has_blob(child.layers[1].digest)
    records = collect.remove_image(store, "new_tomcat:stable")
    assert [str(r) for r in records[:2]] == ["Untagged: new_tomcat:stable", f"Deleted: {child.id}"]
    deleted = {r.what for r in records}
    assert child.layers[1].digest in deleted
    assert child.digest in deleted
    assert not store.has_blob(child.layers[1].digest)
    assert not store.has_blob(child.id)
    # the shared base layer stays: tomcat still uses it
    assert store.has_blob(base.layers[0].digest)
    assert base.layers[0].digest not in deleted
    assert_valid_image(store, "tomcat")
    with pytest.raises(ImageNotFound):
        catalog.resolve(store, "new_tomcat:stable")


def test_rmi_by_id_with_several_tags_needs_force(store, tomcat):
    base, _ = tomcat
    catalog.tag(store, "tomcat", "tomcat:9")
    with pytest.raises(
        ImageConflict, match=r"unable to delete .* \(must be forced\) - image is referenced in multiple"
    ):
        collect.remove_image(store, base.short_id)
    assert catalog.resolve(store, "tomcat:9").id == base.id
    records = collect.remove_image(store, base.short_id, force=True)
    assert [str(r) for r in records[:3]] == ["Untagged: tomcat:9", "Untagged: tomcat:latest", f"Deleted: {base.id}"]
    # the child still needs the base layer
    assert_valid_image(store, "new_tomcat:1.0")


def test_rmi_by_id_with_one_tag_and_of_a_dangling_image(store):
    one = make_image(store, "one:1", {"a": b"1"})
    records = collect.remove_image(store, one.id)
    assert [str(r) for r in records[:2]] == ["Untagged: one:1", f"Deleted: {one.id}"]
    dangling = make_image(store, None, {"b": b"2"})
    records = collect.remove_image(store, dangling.short_id)
    assert str(records[0]) == f"Deleted: {dangling.id}"
    assert store.index_entries() == []
    assert store.list_blobs() == []
    with pytest.raises(ImageNotFound):
        collect.remove_image(store, "one:1")


# ------------------------------------------------------------------------------------------------- prune


def test_prune_removes_dangling_and_orphans_never_a_referenced_blob(store, tomcat):
    base, _ = tomcat
    old = make_image(store, "tomcat:latest", {"extra": b"e"}, parent=base)  # retag: the old base dangles
    orphan = store.put_blob(b"an orphan from an interrupted write")
    before = set(store.list_blobs())
    sizes = {d: store.blob_size(d) for d in before}
    report = collect.prune(store)
    assert [str(r) for r in report.records] == [f"deleted: {base.id}"]
    assert orphan.digest in report.deleted_blobs
    assert base.digest in report.deleted_blobs
    assert base.id in report.deleted_blobs
    # base's layer is shared by new_tomcat and the new tomcat:latest: it stays
    assert base.layers[0].digest not in report.deleted_blobs
    assert report.reclaimed == sum(sizes[d] for d in report.deleted_blobs)
    assert set(store.list_blobs()) == before - set(report.deleted_blobs)
    for ref in ("tomcat:latest", "new_tomcat:1.0"):
        assert_valid_image(store, ref)
    assert old.id == catalog.resolve(store, "tomcat").id
    again = collect.prune(store)
    assert again.records == ()
    assert again.deleted_blobs == ()
    assert again.reclaimed == 0


def test_prune_all_removes_every_image_without_a_container(store, tomcat):
    report = collect.prune(store, all=True)
    assert {str(r) for r in report.records} >= {"untagged: tomcat:latest", "untagged: new_tomcat:1.0"}
    assert store.index_entries() == []
    assert store.list_blobs() == []


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 5), st.booleans(), st.sampled_from(["keep", "untag", "rmi", "rmi-f"])),
        min_size=1,
        max_size=7,
    ),
    all_=st.booleans(),
)
def test_gc_never_breaks_a_remaining_image(tmp_path_factory, plan, all_):
    """Random image trees sharing layers, random untag/rmi, then prune: every image still listed is whole, and
    every blob left is reachable."""
    store = ContentStore(tmp_path_factory.mktemp("gc") / "s")
    made = []
    for i, (parent_index, tagged, _) in enumerate(plan):
        parent = made[parent_index % len(made)] if made and parent_index else None
        made.append(make_image(store, f"img{i}:t" if tagged else None, {f"f{i}": bytes([i]) * 100}, parent=parent))
    for i, (_, tagged, action) in enumerate(plan):
        try:
            if action == "untag" and tagged:
                store.untag(f"img{i}:t")
            elif action == "rmi":
                collect.remove_image(store, f"img{i}:t" if tagged else made[i].id)
            elif action == "rmi-f":
                collect.remove_image(store, made[i].id, force=True)
        except (ImageNotFound, ImageConflict):
            pass
    collect.prune(store, all=all_)
    for img in catalog.list_images(store):
        assert_valid_image(store, img.image.id)
    assert set(store.list_blobs()) == collect.mark(store) & set(store.list_blobs())
    if all_:
        assert store.list_blobs() == []


# ------------------------------------------------------------------------------------------------- df


def test_disk_usage_shows_shared_and_unique_bytes(store, tomcat):
    base, child = tomcat
    du = usage.disk_usage(store)
    base_layer = sizes.layer_size(store, base.layers[0])
    top_layer = sizes.layer_size(store, child.layers[1])
    by_id = {u.image.id: u for u in du.images}
    assert by_id[base.id].size == base_layer
    assert by_id[base.id].shared_size == base_layer
    assert by_id[base.id].unique_size == 0
    assert by_id[child.id].size == base_layer + top_layer
    assert by_id[child.id].unique_size == top_layer
    assert du.images_size == base_layer + top_layer  # the base layer counted once
    assert du.saved_by_sharing == base_layer
    assert du.images_size_without_sharing == 2 * base_layer + top_layer
    shared = [layer for layer in du.layers if layer.shared]
    assert [layer.digest for layer in shared] == [base.layers[0].digest]
    assert shared[0].images == tuple(sorted((base.id, child.id)))
    assert du.stored == sum(store.blob_size(layer.digest) for layer in du.layers)
    assert du.images_reclaimable == du.images_size  # no containers
    assert du.other_blobs == 0
    store.put_blob(b"orphan")
    assert usage.disk_usage(store).other_blobs == len(b"orphan")


@pytest.mark.parametrize(
    ("pattern", "name", "match"),
    [
        ("tomcat", "tomcat", True),
        ("tom*", "tomcat", True),
        ("*", "team/app", False),  # * never crosses /
        ("*/*", "team/app", True),
        ("t?mcat", "tomcat", True),
        ("[st]omcat", "tomcat", True),
        ("[^t]omcat", "tomcat", False),
        ("[a-c]*", "busybox", True),
        ("\\*", "*", True),
        ("a.b", "axb", False),  # . is literal
    ],
)
def test_reference_patterns_follow_go_path_match(pattern, name, match):
    assert catalog._go_path_match(pattern, name) is match


def test_unterminated_class_is_an_invalid_filter(store):
    with pytest.raises(InvalidArgument, match="unterminated"):
        catalog.list_images(store, ["reference=[abc"])


def test_chain_ids():
    a, b = imgcore.sha256(b"a"), imgcore.sha256(b"b")
    assert model.chain_ids([]) == []
    assert model.chain_ids([a]) == [a]
    assert model.chain_ids([a, b]) == [a, imgcore.sha256(f"{a} {b}".encode())]


def test_index_entries_without_blobs_do_not_break_listing(store, tomcat):
    ghost = Descriptor("application/vnd.oci.image.manifest.v1+json", imgcore.sha256(b"ghost"), 5)
    store.update_index(lambda ms: [*ms, ghost.with_annotations({REF_NAME: "docker.io/library/ghost:1"}).to_json()])
    rows = catalog.list_images(store)
    assert {r.repository for r in rows} == {"tomcat", "new_tomcat", "ghost"}
    assert [r.image.error for r in rows if r.repository != "ghost"] == ["", ""]
    ghost_row = next(r for r in rows if r.repository == "ghost")
    assert "sha256:" in ghost_row.image.error  # listed with why it cannot be read, not hidden (issue 10)
    assert ghost_row.size == 0


def _multi_platform(store, ref):
    """An OCI index over two platform manifests: this host's and one for another architecture."""
    from imgcore.models import OCI_INDEX, Platform, canonical_json

    host = make_image(store, None, {"host": b"1"})
    other = make_image(store, None, {"other": b"2"})
    store.remove_from_index(host.digest)
    store.remove_from_index(other.digest)
    here = Platform.host()
    foreign = Platform("linux", "s390x" if here.architecture != "s390x" else "ppc64le")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {**other.manifest_desc.to_json(), "platform": foreign.to_json()},
            {**host.manifest_desc.to_json(), "platform": here.to_json()},
        ],
    }
    desc = store.put_manifest(canonical_json(index), OCI_INDEX)
    store.tag(ref, desc)
    return desc, host, other


def test_a_tag_on_a_multi_platform_index_resolves_to_this_hosts_image(store):
    desc, host, other = _multi_platform(store, "multi:1")
    assert_valid_image(store, "multi:1")
    img = catalog.resolve(store, "multi:1")
    assert img.id == host.id
    assert img.digest == desc.digest  # what the tag points at
    assert img.manifest_desc.digest == host.digest
    assert catalog.inspect(store, "multi:1")["Descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert catalog.inspect(store, "multi:1")["RepoDigests"] == []
    catalog.record_repo_digest(store, host.id, "multi", desc.digest)  # what a pull of the index records
    assert catalog.inspect(store, "multi:1")["RepoDigests"] == [f"multi@{desc.digest}"]
    assert [r.digest for r in catalog.list_images(store)] == [desc.digest]
    assert [r.tag for r in catalog.list_images(store)] == ["1"]
    assert catalog.resolve(store, f"multi@{desc.digest}").id == host.id
    assert collect.mark(store) >= {desc.digest, host.digest, other.digest, host.id, other.id}
    records = collect.remove_image(store, "multi:1")
    deleted = {r.what for r in records}
    assert {desc.digest, host.digest, other.digest, host.id, other.id} <= deleted
    assert store.list_blobs() == []


def test_rmi_by_name_at_digest(store, tomcat):
    base, child = tomcat
    records = collect.remove_image(store, f"new_tomcat@{child.digest}")
    assert [str(r) for r in records[:2]] == ["Untagged: new_tomcat:1.0", f"Deleted: {child.id}"]
    assert_valid_image(store, "tomcat")
    assert base.id == catalog.resolve(store, "tomcat").id


def test_prune_keeps_what_a_live_lease_holds_and_sweeps_it_after(store):
    """A writer's lease, taken before its first blob, keeps the blob from prune until the lease is dropped."""
    with store.lease("test writer") as lease:
        lease.hold(sha256(b"a layer whose manifest is not tagged yet"))
        in_flight = store.put_blob(b"a layer whose manifest is not tagged yet")
        report = collect.prune(store)
        assert in_flight.digest not in report.deleted_blobs
        assert store.has_blob(in_flight.digest)
    assert in_flight.digest in collect.prune(store).deleted_blobs  # an orphan once the writer gave up


def test_a_dead_writers_lease_is_dropped(store):
    """A lease whose process died (its flock released) protects nothing and is removed by the next collection."""
    import subprocess
    import sys

    script = (
        "import os, sys; from imgcore.store import ContentStore; s = ContentStore(sys.argv[1]); "
        "l = s.lease('dies'); l.hold('sha256:' + 'ab' * 32); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", script, str(store.root)], check=True)
    assert len(list(store.paths.leases.iterdir())) == 1
    collect.prune(store)
    assert list(store.paths.leases.iterdir()) == []
