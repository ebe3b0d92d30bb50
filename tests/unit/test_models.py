"""Manifest, index, config and descriptor models: parsing, validation, digests from raw bytes."""

from __future__ import annotations

import json

import pytest

import imgcore
from imgcore import models as m
from imgcore.errors import InvalidManifest, UnsupportedMediaType

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
        (_manifest(mediaType="application/x-evil"), UnsupportedMediaType, "unsupported media type"),
        (_manifest(layers="x"), InvalidManifest, "layers must be a list"),
        (_manifest(layers=[{"digest": "sha256:bad", "size": 1}]), InvalidManifest, "manifest layer 0"),
        (_manifest(layers=[{"digest": LAYER["digest"], "size": -1}]), InvalidManifest, "non-negative"),
        (_manifest(layers=[{"digest": LAYER["digest"]}]), InvalidManifest, "missing field 'size'"),
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
    with pytest.raises(InvalidManifest, match="diff_ids"):
        m.ImageConfig.from_bytes(b'{"rootfs": {}}')
    with pytest.raises(InvalidManifest, match="bad diff_id"):
        m.ImageConfig.from_bytes(b'{"rootfs": {"diff_ids": ["nope"]}}')
