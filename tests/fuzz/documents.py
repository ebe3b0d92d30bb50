"""Strategies for valid OCI/Docker documents, the seeds the fuzz targets mutate."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from imgcore import models as m

hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
digests = hexes.map(lambda h: "sha256:" + h)
sizes = st.integers(min_value=0, max_value=2**63 - 1)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12)
annotations = st.dictionaries(words, st.text(max_size=10), max_size=3)
platforms = st.fixed_dictionaries(
    {"os": st.sampled_from(["linux", "windows"]), "architecture": st.sampled_from(["amd64", "arm64", "arm"])},
    optional={"variant": st.sampled_from(["v7", "v8"]), "os.version": words, "os.features": st.lists(words)},
)


def descriptors(media_types: list[str], *, platform: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, st.SearchStrategy[Any]] = {"annotations": annotations, "urls": st.lists(words, max_size=2)}
    if platform:
        optional["platform"] = platforms
    return st.fixed_dictionaries(
        {"mediaType": st.sampled_from(media_types), "digest": digests, "size": sizes}, optional=optional
    )


manifests = st.fixed_dictionaries(
    {
        "schemaVersion": st.just(2),
        "config": descriptors([m.OCI_CONFIG, m.DOCKER_CONFIG]),
        "layers": st.lists(descriptors(sorted(m.LAYER_MEDIA_TYPES)), max_size=4),
    },
    optional={
        "mediaType": st.sampled_from(sorted(m.MANIFEST_TYPES)),
        "annotations": annotations,
        "subject": descriptors([m.OCI_MANIFEST]),
        "artifactType": st.just("application/x-thing"),
    },
)

indexes = st.fixed_dictionaries(
    {"schemaVersion": st.just(2), "manifests": st.lists(descriptors([m.OCI_MANIFEST], platform=True), max_size=4)},
    optional={"mediaType": st.sampled_from(sorted(m.INDEX_TYPES)), "annotations": annotations},
)

times = st.sampled_from(["2024-01-02T03:04:05Z", "2015-10-31T22:22:56.015925234Z", "2024-01-02T03:04:05+01:00"])
string_lists = st.lists(st.text(max_size=10), max_size=3)
container_configs = st.fixed_dictionaries(
    {},
    optional={
        "User": st.text(max_size=5),
        "Env": string_lists,
        "Cmd": st.none() | string_lists,
        "Entrypoint": st.none() | string_lists,
        "ExposedPorts": st.dictionaries(st.sampled_from(["80/tcp", "53/udp"]), st.just({}), max_size=2),
        "Volumes": st.none() | st.dictionaries(st.sampled_from(["/data", "/var"]), st.just({}), max_size=2),
        "WorkingDir": st.text(max_size=5),
        "Labels": st.none() | st.dictionaries(words, st.text(max_size=5), max_size=3),
        "StopSignal": st.just("SIGTERM"),
        "ArgsEscaped": st.booleans(),
        "Healthcheck": st.fixed_dictionaries({"Test": string_lists, "Interval": st.integers(0, 10**10)}),
    },
)
history = st.fixed_dictionaries(
    {},
    optional={
        "created": times,
        "created_by": st.text(max_size=10),
        "comment": st.text(max_size=5),
        "empty_layer": st.booleans(),
    },
)
configs = st.fixed_dictionaries(
    {
        "architecture": st.sampled_from(["amd64", "arm64"]),
        "os": st.just("linux"),
        "rootfs": st.fixed_dictionaries({"type": st.just("layers"), "diff_ids": st.lists(digests, max_size=4)}),
    },
    optional={"created": times, "config": container_configs, "history": st.lists(history, max_size=3)},
)

file_names = st.one_of(hexes.map(lambda h: f"blobs/sha256/{h}"), hexes.map(lambda h: f"{h}/layer.tar"))
save_entries = st.fixed_dictionaries(
    {
        "Config": hexes.map(lambda h: f"{h}.json") | hexes.map(lambda h: f"blobs/sha256/{h}"),
        "RepoTags": st.none() | st.lists(st.sampled_from(["busybox:latest", "x/y:1", "localhost:5000/a:b"])),
        "Layers": st.lists(file_names, max_size=4),
    },
    optional={"LayerSources": st.dictionaries(digests, descriptors([m.DOCKER_FOREIGN_LAYER]), max_size=2)},
)
save_manifests = st.lists(save_entries, min_size=1, max_size=3)
repositories = st.dictionaries(words, st.dictionaries(words, hexes, min_size=1, max_size=2), min_size=1, max_size=3)
