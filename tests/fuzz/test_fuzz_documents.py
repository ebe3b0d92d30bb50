"""Fuzz the document parsers: arbitrary bytes and mutated valid documents give a valid model or a typed error.

Budgets are small by default (the directory runs in seconds); ``IMGCORE_LONG=1`` multiplies them.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

import imgcore
from imgcore import _json
from imgcore import models as m
from imgcore._core import Digest
from imgcore.errors import InvalidManifest

from . import documents as docs
from ._support import archive_error, budget, check, mutants, raw_hostile

raw_inputs = st.one_of(st.binary(max_size=512), raw_hostile, st.text(max_size=200).map(str.encode))


def _valid_descriptor(d: m.Descriptor) -> None:
    assert isinstance(d.media_type, str)
    assert str(Digest(d.digest)) == d.digest
    assert isinstance(d.size, int)
    assert not isinstance(d.size, bool)
    assert 0 <= d.size < 2**63
    assert d.annotations is None or all(isinstance(k, str) and isinstance(v, str) for k, v in d.annotations.items())
    assert d.urls is None or all(isinstance(u, str) for u in d.urls)
    if d.platform is not None:
        assert isinstance(d.platform.os, str)
        assert isinstance(d.platform.architecture, str)
    assert m.Descriptor.from_json(d.to_json()) == d  # what a model writes back, it reads again


def _valid_manifest(man: m.Manifest, raw: bytes) -> None:
    assert man.raw == raw
    assert man.digest == imgcore.sha256(raw)
    assert man.media_type in m.MANIFEST_TYPES
    for d in (man.config, *man.layers):
        _valid_descriptor(d)


def _valid_index(idx: m.Index, raw: bytes) -> None:
    assert idx.raw == raw
    assert idx.digest == imgcore.sha256(raw)
    assert idx.media_type in m.INDEX_TYPES
    for d in idx.manifests:
        _valid_descriptor(d)


def _valid_config(cfg: m.ImageConfig, raw: bytes) -> None:
    assert cfg.raw == raw
    assert cfg.digest == imgcore.sha256(raw)
    for d in cfg.diff_ids:
        assert str(Digest(d)) == d
    # Every accessor the catalog uses works on any config that parsed.
    assert all(isinstance(h, dict) for h in cfg.history)
    assert cfg.created is None or isinstance(cfg.created, str)
    assert cfg.created_error is None or cfg.created is None
    assert isinstance(cfg.config, dict)
    str(cfg.platform)
    env = cfg.config.get("Env") or []
    assert all(isinstance(e, str) for e in env)
    labels = cfg.config.get("Labels") or {}
    assert all(isinstance(v, str) for v in labels.values())


def _either(raw: bytes) -> m.Manifest | m.Index:
    return m.parse_manifest_or_index(raw)


# ------------------------------------------------------------------------------------------------- manifests


@budget(150)
@given(raw_inputs)
def test_manifest_arbitrary_bytes(raw):
    if (man := check(m.Manifest.from_bytes, raw)) is not None:
        _valid_manifest(man, raw)
    check(_either, raw)


@budget(40)
@given(docs.manifests)
def test_valid_manifests_parse(doc):
    raw = json.dumps(doc).encode()
    man = m.Manifest.from_bytes(raw)
    _valid_manifest(man, raw)
    assert len(man.layers) == len(doc["layers"])
    assert man.config.digest == doc["config"]["digest"]
    assert isinstance(m.parse_manifest_or_index(raw), m.Manifest)


@budget(120)
@given(mutants(docs.manifests))
def test_manifest_mutants(raw):
    if (man := check(m.Manifest.from_bytes, raw)) is not None:
        _valid_manifest(man, raw)
    if isinstance(doc := check(_either, raw), m.Manifest):
        _valid_manifest(doc, raw)


# ------------------------------------------------------------------------------------------------- indexes


@budget(100)
@given(raw_inputs)
def test_index_arbitrary_bytes(raw):
    if (idx := check(m.Index.from_bytes, raw)) is not None:
        _valid_index(idx, raw)


@budget(120)
@given(mutants(docs.indexes))
def test_index_mutants(raw):
    if (idx := check(m.Index.from_bytes, raw)) is not None:
        _valid_index(idx, raw)
        for d in idx.manifests:
            if d.platform is not None:
                assert m.Platform.host().matches(d.platform) in (True, False)
    if isinstance(doc := check(_either, raw), m.Index):
        _valid_index(doc, raw)
    try:
        data = _json.load_object(raw, "index.json")
    except InvalidManifest:
        return
    check(lambda _raw: m.Index.from_data(data, "store: index.json"), raw)


@budget(40)
@given(docs.indexes)
def test_valid_indexes_parse(doc):
    raw = json.dumps(doc).encode()
    _valid_index(m.Index.from_bytes(raw), raw)


# ------------------------------------------------------------------------------------------------- configs


@budget(100)
@given(raw_inputs)
def test_config_arbitrary_bytes(raw):
    if (cfg := check(m.ImageConfig.from_bytes, raw)) is not None:
        _valid_config(cfg, raw)


@budget(40)
@given(docs.configs)
def test_valid_configs_parse(doc):
    raw = json.dumps(doc).encode()
    cfg = m.ImageConfig.from_bytes(raw)
    _valid_config(cfg, raw)
    assert cfg.diff_ids == doc["rootfs"]["diff_ids"]
    assert cfg.created == doc.get("created")


@budget(150)
@given(mutants(docs.configs))
def test_config_mutants(raw):
    if (cfg := check(m.ImageConfig.from_bytes, raw)) is not None:
        _valid_config(cfg, raw)


# ------------------------------------------------------------------------------------------------- docker save


def _valid_entries(entries: tuple[m.SaveManifestEntry, ...]) -> None:
    for e in entries:
        assert isinstance(e.config, str)
        assert all(isinstance(t, str) for t in e.repo_tags)
        assert all(isinstance(n, str) and ".." not in n.split("/") for n in e.layers)
        assert e.config_digest is None or str(Digest(e.config_digest)) == e.config_digest


@budget(100)
@given(raw_inputs)
def test_save_manifest_arbitrary_bytes(raw):
    if (entries := archive_error(m.parse_save_manifest, raw, "manifest.json: ")) is not None:
        _valid_entries(entries)
    archive_error(m.parse_repositories, raw, "repositories: ")


@budget(40)
@given(docs.save_manifests)
def test_valid_save_manifests_parse(doc):
    entries = m.parse_save_manifest(json.dumps(doc).encode())
    assert [list(e.layers) for e in entries] == [d["Layers"] for d in doc]
    assert [list(e.repo_tags) for e in entries] == [d["RepoTags"] or [] for d in doc]


@budget(120)
@given(mutants(docs.save_manifests))
def test_save_manifest_mutants(raw):
    if (entries := archive_error(m.parse_save_manifest, raw, "manifest.json: ")) is not None:
        _valid_entries(entries)


@budget(150)
@given(mutants(docs.repositories))
def test_repositories_mutants(raw):
    repos = archive_error(m.parse_repositories, raw, "repositories: ") or {}
    assert all(isinstance(t, str) and len(i) == 64 for tags in repos.values() for t, i in tags.items())
