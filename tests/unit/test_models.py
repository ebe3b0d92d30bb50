"""Manifest, index, config and descriptor models: parsing, validation, digests from raw bytes."""

from __future__ import annotations

import json

import pytest

import imgcore
from imgcore import models as m
from imgcore.errors import InvalidArchive, InvalidArgument, InvalidManifest, UnsupportedMediaType

CFG = {"mediaType": m.OCI_CONFIG, "digest": "sha256:" + "1" * 64, "size": 10}
LAYER = {"mediaType": m.OCI_LAYER_GZIP, "digest": "sha256:" + "2" * 64, "size": 20}


def _manifest(**over):
    doc = {"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": CFG, "layers": [LAYER]}
    doc.update(over)
    return json.dumps(doc, indent=3).encode()


def test_manifest_digest_is_of_the_raw_bytes():
    raw = _manifest()
    man = m.Manifest.from_bytes(raw)
    assert man.digest == imgcore.sha256(raw)
    assert man.layers[0].digest == LAYER["digest"]
    assert man.config.size == 10
    assert m.Manifest.from_bytes(json.dumps(json.loads(raw)).encode()).digest != man.digest


def test_manifest_build_is_deterministic():
    cfg = m.Descriptor.from_json(CFG)
    lay = m.Descriptor.from_json(LAYER)
    a = m.Manifest.build(cfg, [lay])
    b = m.Manifest.build(cfg, [lay])
    assert a.raw == b.raw
    assert m.parse_manifest_or_index(a.raw) == a


@pytest.mark.parametrize(
    ("raw", "err", "why"),
    [
        (b"nope", InvalidManifest, "not valid JSON"),
        (b"[]", InvalidManifest, "JSON object"),
        (_manifest(schemaVersion=1), InvalidManifest, "schemaVersion"),
        (_manifest(schemaVersion=2.0), InvalidManifest, "schemaVersion: must be 2, got 2.0"),
        (_manifest(mediaType="application/x-evil"), UnsupportedMediaType, "unsupported media type"),
        (_manifest(mediaType=[m.OCI_MANIFEST]), InvalidManifest, "mediaType: expected a string, got an array"),
        (_manifest(layers="x"), InvalidManifest, "layers: expected an array of descriptors"),
        (_manifest(layers=[{"digest": "sha256:bad", "size": 1}]), InvalidManifest, r"layers\[0\]\.digest: invalid"),
        (_manifest(layers=[{"digest": LAYER["digest"], "size": -1}]), InvalidManifest, "non-negative"),
        (_manifest(layers=[{"digest": LAYER["digest"]}]), InvalidManifest, r'layers\[0\]: missing field "size"'),
        (_manifest(layers=[{**LAYER, "size": None}]), InvalidManifest, r"layers\[0\]\.size: must not be null"),
        (_manifest(layers=[{**LAYER, "size": True}]), InvalidManifest, "size: expected a non-negative integer"),
        (_manifest(layers=[{**LAYER, "size": 1.5}]), InvalidManifest, "size: expected a non-negative integer"),
        (_manifest(layers=[{**LAYER, "size": 2**63}]), InvalidManifest, "size: expected a non-negative integer"),
        (_manifest(layers=[{**LAYER, "mediaType": 7}]), InvalidManifest, r"layers\[0\]\.mediaType: expected a string"),
        (_manifest(layers=[{**LAYER, "urls": "http://x"}]), InvalidManifest, r"urls: expected an array of strings"),
        (_manifest(layers=[{**LAYER, "urls": [1]}]), InvalidManifest, r"urls\[0\]: expected a string, got 1"),
        (_manifest(layers=[{**LAYER, "annotations": {"a": 1}}]), InvalidManifest, r"annotations\.a: expected a str"),
        (_manifest(annotations=["a"]), InvalidManifest, "annotations: expected an object of strings"),
        (_manifest(config=None), InvalidManifest, "config: must not be null"),
        (_manifest(config="sha256:" + "1" * 64), InvalidManifest, "config: expected an object, got"),
        (_manifest(subject={"digest": "x"}), InvalidManifest, "subject.digest: invalid digest"),
    ],
)
def test_bad_manifests(raw, err, why):
    with pytest.raises(err, match=why):
        m.Manifest.from_bytes(raw)


def test_index_resolves_platforms():
    def desc(arch, variant=None):
        plat = {"os": "linux", "architecture": arch}
        if variant:
            plat["variant"] = variant
        return {
            "mediaType": m.OCI_MANIFEST,
            "digest": "sha256:" + arch[0] * 64 if arch[0] in "abcdef" else "sha256:" + "9" * 64,
            "size": 1,
            "platform": plat,
        }

    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": m.DOCKER_MANIFEST_LIST,
            "manifests": [desc("amd64"), desc("arm64", "v8"), desc("arm", "v7")],
        }
    ).encode()
    idx = m.parse_manifest_or_index(raw)
    assert isinstance(idx, m.Index)
    assert idx.for_platform(m.Platform.parse("linux/amd64")).platform.architecture == "amd64"
    assert idx.for_platform(m.Platform.parse("linux/arm64")).platform.variant == "v8"
    assert idx.for_platform(m.Platform.parse("linux/arm/v7")).platform.variant == "v7"
    with pytest.raises(InvalidManifest, match="no manifest for platform linux/s390x"):
        idx.for_platform(m.Platform.parse("linux/s390x"))
    with pytest.raises(ValueError, match="os/arch"):
        m.Platform.parse("linux")


def test_config_diff_ids_and_image_id():
    cfg = m.ImageConfig.from_dict(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "3" * 64]}}
    )
    assert cfg.diff_ids == ["sha256:" + "3" * 64]
    assert cfg.digest == imgcore.sha256(cfg.raw)
    with pytest.raises(InvalidManifest, match='rootfs: missing field "diff_ids"'):
        m.ImageConfig.from_bytes(b'{"rootfs": {"type": "layers"}}')
    with pytest.raises(InvalidManifest, match=r"rootfs\.diff_ids\[0\]: invalid digest"):
        m.ImageConfig.from_bytes(b'{"rootfs": {"type": "layers", "diff_ids": ["nope"]}}')


def test_bad_manifest_names_the_document_by_digest():
    raw = _manifest(layers=[LAYER, LAYER, LAYER, {**LAYER, "size": "12"}])
    with pytest.raises(InvalidManifest) as info:
        m.Manifest.from_bytes(raw)
    assert str(info.value) == (
        f'manifest {imgcore.sha256(raw)}: layers[3].size: expected a non-negative integer, got "12"'
    )
    with pytest.raises(InvalidManifest, match=r"^pull x: layers\[3\]\.size"):
        m.Manifest.from_bytes(raw, where="pull x")


def test_manifest_raw_bytes_are_kept_and_extra_fields_ignored():
    raw = _manifest(artifactType="application/x-thing", unknown={"deep": [1, 2]})
    man = m.Manifest.from_bytes(bytearray(raw))
    assert man.raw == raw
    assert man.digest == imgcore.sha256(raw)
    with pytest.raises(InvalidManifest, match="expected the document's bytes, got str"):
        m.Manifest.from_bytes(raw.decode())  # type: ignore[arg-type]


def test_null_optional_fields_read_as_absent():
    man = m.Manifest.from_bytes(_manifest(annotations=None, layers=[{**LAYER, "urls": None, "annotations": None}]))
    assert man.annotations is None
    assert man.layers[0].urls is None


def _index(*manifests, **over):
    doc = {"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": list(manifests)}
    doc.update(over)
    return json.dumps(doc).encode()


PLAT = {**CFG, "mediaType": m.OCI_MANIFEST, "platform": {"os": "linux", "architecture": "amd64"}}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (_index(manifests="x"), "manifests: expected an array of descriptors"),
        (_index({**PLAT, "platform": "linux/amd64"}), r"manifests\[0\]\.platform: expected an object"),
        (_index({**PLAT, "platform": {"os": "linux"}}), r'manifests\[0\]\.platform: missing field "architecture"'),
        (_index({**PLAT, "platform": {"os": 1, "architecture": "x"}}), r"platform\.os: expected a string, got 1"),
        (_index({**PLAT, "platform": {**PLAT["platform"], "variant": ["v8"]}}), r"platform\.variant: expected a"),
        (_index({**PLAT, "platform": {**PLAT["platform"], "os.features": "x"}}), r'platform\["os.features"\]'),
        (_index(PLAT, mediaType={"x": 1}), "mediaType: expected a string, got an object"),
    ],
)
def test_bad_indexes(raw, why):
    with pytest.raises(InvalidManifest, match=why):
        m.Index.from_bytes(raw)
    with pytest.raises(InvalidManifest, match=why):
        m.parse_manifest_or_index(raw)


def test_index_from_data_checks_a_parsed_layout_index():
    idx = m.Index.from_data({"schemaVersion": 2, "manifests": [PLAT]}, "store /x: index.json")
    assert idx.media_type == m.OCI_INDEX
    with pytest.raises(InvalidManifest, match=r"^store /x: index.json: manifests\[0\]\.size"):
        m.Index.from_data({"schemaVersion": 2, "manifests": [{**PLAT, "size": "1"}]}, "store /x: index.json")


def test_descriptor_constructor_checks_types():
    d = m.Descriptor("", "sha256:" + "1" * 64, 0)
    assert d.size == 0
    with pytest.raises(InvalidManifest, match="negative size"):
        m.Descriptor("x", "sha256:" + "1" * 64, -1)
    with pytest.raises(InvalidManifest, match="digest: invalid digest"):
        m.Descriptor("x", "sha256:nope", 1)
    with pytest.raises(InvalidManifest, match="size: expected a non-negative integer, got true"):
        m.Descriptor("x", "sha256:" + "1" * 64, True)
    with pytest.raises(InvalidManifest, match="media_type: expected a string"):
        m.Descriptor(None, "sha256:" + "1" * 64, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidManifest, match="Descriptor"):
        m.Manifest(m.OCI_MANIFEST, d, ("layer",))  # type: ignore[arg-type]


def _config(**over):
    doc = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    doc.update(over)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (_config(rootfs={"type": "tar", "diff_ids": []}), 'rootfs.type: expected "layers", got "tar"'),
        (_config(rootfs={"diff_ids": []}), 'rootfs: missing field "type"'),
        (_config(rootfs=None), "rootfs: must not be null"),
        (_config(architecture=["amd64"]), "architecture: expected a string, got an array"),
        (_config(config={"Env": "A=1"}), r"config\.Env: expected an array of strings"),
        (_config(config={"Env": ["A=1", 2]}), r"config\.Env\[1\]: expected a string, got 2"),
        (_config(config={"Cmd": "sh"}), r"config\.Cmd: expected an array"),
        (_config(config={"Entrypoint": {}}), r"config\.Entrypoint: expected an array"),
        (_config(config={"ExposedPorts": ["80/tcp"]}), r"config\.ExposedPorts: expected an object"),
        (_config(config={"ExposedPorts": {"80/tcp": 1}}), r'config\.ExposedPorts\["80/tcp"\]: expected an object'),
        (_config(config={"Volumes": {"/data": "x"}}), r'config\.Volumes\["/data"\]: expected an object'),
        (_config(config={"Labels": {"a": 1}}), r"config\.Labels\.a: expected a string, got 1"),
        (_config(config={"User": 0}), r"config\.User: expected a string, got 0"),
        (_config(config={"WorkingDir": ["/"]}), r"config\.WorkingDir: expected a string"),
        (_config(config={"Healthcheck": {"Interval": "1s"}}), r"Healthcheck\.Interval: expected an integer"),
        (_config(config="x"), "config: expected an object"),
        (_config(history={}), "history: expected an array of objects"),
        (_config(history=["x"]), r"history\[0\]: expected an object"),
        (_config(history=[{"created_by": 1}]), r"history\[0\]\.created_by: expected a string"),
        (_config(history=[{"empty_layer": "true"}]), r"history\[0\]\.empty_layer: expected a boolean"),
    ],
)
def test_bad_configs(raw, why):
    with pytest.raises(InvalidManifest, match=why):
        m.ImageConfig.from_bytes(raw)


def test_config_accepts_docker_nulls():
    cfg = m.ImageConfig.from_bytes(
        _config(config={"Env": None, "Cmd": None, "Entrypoint": None, "Labels": None, "Volumes": None, "User": ""})
    )
    assert cfg.config["Cmd"] is None


@pytest.mark.parametrize(
    ("created", "valid"),
    [
        ("2024-01-02T03:04:05Z", True),
        ("2024-01-02T03:04:05.123456789+02:00", True),
        ("1970-01-01T00:00:00Z", True),
        ("2024-13-02T03:04:05Z", False),
        ("2024-02-30T03:04:05Z", False),
        ("2024-01-02 03:04:05", False),
        ("yesterday", False),
        (12, False),
        (["2024-01-02T03:04:05Z"], False),
    ],
)
def test_bad_created_is_exposed_not_raised(created, valid):
    cfg = m.ImageConfig.from_bytes(_config(created=created))
    if valid:
        assert cfg.created == created
        assert cfg.created_error is None
    else:
        assert cfg.created is None
        assert "expected an RFC 3339 time" in (cfg.created_error or "")
    assert m.ImageConfig.from_bytes(_config()).created_error is None


def test_config_where_names_it():
    with pytest.raises(InvalidManifest, match=r"^load x: config\.User: expected a string"):
        m.ImageConfig.from_bytes(_config(config={"User": 1}), where="load x")
    with pytest.raises(InvalidManifest, match=r"^load x: not valid JSON"):
        m.ImageConfig.from_bytes(b"{", where="load x")


def test_platform_parse_errors_are_typed():
    with pytest.raises(InvalidArgument, match="os/arch"):
        m.Platform.parse("linux//")
    with pytest.raises(InvalidArgument):
        m.Platform.parse(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidManifest, match='platform: missing field "os"'):
        m.Platform.from_json({"architecture": "amd64"})


def _save(*entries):
    return json.dumps(list(entries)).encode()


SAVE = {"Config": "blobs/sha256/" + "a" * 64, "RepoTags": ["x:1"], "Layers": ["blobs/sha256/" + "b" * 64]}


def test_save_manifest_parses():
    (entry,) = m.parse_save_manifest(_save(SAVE))
    assert entry.repo_tags == ("x:1",)
    assert entry.layers == ("blobs/sha256/" + "b" * 64,)
    assert entry.config_digest == "sha256:" + "a" * 64
    (legacy,) = m.parse_save_manifest(_save({**SAVE, "Config": "c" * 64 + ".json", "RepoTags": None}))
    assert legacy.repo_tags == ()
    assert legacy.config_digest == "sha256:" + "c" * 64
    assert m.parse_save_manifest(_save({**SAVE, "Config": "config.json"}))[0].config_digest is None
    src = {"sha256:" + "b" * 64: {"mediaType": m.DOCKER_FOREIGN_LAYER, "digest": "sha256:" + "b" * 64, "size": 3}}
    (foreign,) = m.parse_save_manifest(_save({**SAVE, "LayerSources": src}))
    assert foreign.layer_sources is not None
    assert foreign.layer_sources["sha256:" + "b" * 64].size == 3


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{}", "expected a JSON array at the top level, got an object"),
        (_save("x"), r"^manifest.json: \[0\]: expected an object"),
        (_save({**SAVE, "RepoTags": "abc"}), r'\[0\]\.RepoTags: expected an array of strings, got "abc"'),
        (_save({**SAVE, "RepoTags": [1]}), r"\[0\]\.RepoTags\[0\]: expected a string"),
        (_save({**SAVE, "Layers": "l.tar"}), r"\[0\]\.Layers: expected an array"),
        (_save({**SAVE, "Layers": ["../../etc/passwd"]}), r"\[0\]\.Layers\[0\]: expected a relative path"),
        (_save({**SAVE, "Config": "/etc/passwd"}), r"\[0\]\.Config: expected a relative path"),
        (_save({**SAVE, "Config": ["a"]}), r"\[0\]\.Config: expected a string"),
        (_save({"Layers": []}), r'\[0\]: missing field "Config"'),
        (_save({**SAVE, "LayerSources": {"x": {}}}), r"LayerSources\.x: invalid digest"),
        (_save(SAVE, {**SAVE, "Layers": None}), r"\[1\]\.Layers: must not be null"),
    ],
)
def test_bad_save_manifests_are_invalid_archives(raw, why):
    with pytest.raises(InvalidArchive, match=why):
        m.parse_save_manifest(raw)


def test_repositories_file():
    assert m.parse_repositories(b'{"x": {"1": "%s"}}' % (b"a" * 64)) == {"x": {"1": "a" * 64}}
    with pytest.raises(InvalidArchive, match=r'repositories: x\["1"\]: expected a layer ID'):
        m.parse_repositories(b'{"x": {"1": "nope"}}')
    with pytest.raises(InvalidArchive, match=r"repositories: x: expected an object of strings"):
        m.parse_repositories(b'{"x": ["1"]}')
    with pytest.raises(InvalidArchive, match="top level"):
        m.parse_repositories(b"[]")


def test_empty_media_types_read_as_absent():
    d = m.Descriptor.from_json({**LAYER, "mediaType": ""})
    assert d.media_type == ""
    assert m.Descriptor.from_json(d.to_json()) == d
    assert m.Manifest.from_bytes(_manifest(mediaType="")).media_type == m.OCI_MANIFEST
    assert isinstance(m.parse_manifest_or_index(_manifest(mediaType="")), m.Manifest)
    with pytest.raises(InvalidManifest, match=r"layers\[0\]\.mediaType: expected a media type"):
        m.Manifest.from_bytes(_manifest(layers=[{**LAYER, "mediaType": "not a media type"}]))


def test_artifacts_are_told_apart_from_images():
    from imgcore.models import Manifest

    def manifest(config_type: str, artifact_type: str | None = None) -> Manifest:
        config = {"mediaType": config_type, "digest": "sha256:" + "a" * 64, "size": 2}
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config}
        doc["layers"] = []
        if artifact_type:
            doc["artifactType"] = artifact_type
        return Manifest.from_bytes(json.dumps(doc).encode())

    assert not manifest("application/vnd.oci.image.config.v1+json").is_artifact
    assert not manifest("application/vnd.docker.container.image.v1+json").is_artifact
    empty = manifest("application/vnd.oci.empty.v1+json", "application/vnd.example.sbom.v1")
    assert empty.is_artifact
    assert empty.kind == "application/vnd.example.sbom.v1"
    helm = manifest("application/vnd.cncf.helm.config.v1+json")
    assert helm.is_artifact
    assert helm.kind == "application/vnd.cncf.helm.config.v1+json"
    assert manifest("application/vnd.oci.image.config.v1+json", "application/x.signed").is_artifact


def test_attestation_manifests_are_not_picked_nor_listed():
    from imgcore.models import Index, Platform

    def entry(arch: str, os_: str, hexdigit: str, attestation: bool = False) -> dict[str, object]:
        d: dict[str, object] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 9}
        d["digest"] = "sha256:" + hexdigit * 64
        d["platform"] = {"architecture": arch, "os": os_}
        if attestation:
            d["annotations"] = {"vnd.docker.reference.type": "attestation-manifest"}
        return d

    doc = {"schemaVersion": 2, "manifests": [entry("amd64", "linux", "a"), entry("unknown", "unknown", "b", True)]}
    index = Index.from_bytes(json.dumps(doc).encode())
    assert index.for_platform(Platform("linux", "amd64")).digest == "sha256:" + "a" * 64
    with pytest.raises(InvalidManifest, match=r"unknown/unknown \(available: linux/amd64\)$"):
        index.for_platform(Platform("unknown", "unknown"))
