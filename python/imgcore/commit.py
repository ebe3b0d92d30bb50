"""``commit``: a container's changes -> layer blob -> config -> manifest -> tag.

The layer is written by the Rust diff engine (``imgcore.write_layer``) straight into the store's ingest directory,
digest and diff_id computed in the same pass, then moved into ``blobs/``. The new config extends the base
image's ``rootfs.diff_ids`` and ``history``; the image ID is the sha256 of the config bytes, as docker's is. An
empty change adds a history entry marked ``empty_layer`` and no layer.
"""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imgcore import images
from imgcore.containers import Container, Containers, image_of, now_rfc3339
from imgcore.errors import ImgcoreError
from imgcore.models import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    Descriptor,
    ImageConfig,
    Manifest,
)
from imgcore.reference import parse
from imgcore.store import Store

__all__ = ["CommitResult", "apply_changes", "commit"]

CHANGE_INSTRUCTIONS = (
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)
_OCI_LAYER_TYPES = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER}


@dataclass(frozen=True)
class CommitResult:
    image_id: str
    manifest: Descriptor
    layer: Descriptor | None
    diff_id: str | None
    changes: int
    tag: str | None


def _json_or_shell(arg: str) -> list[str]:
    """Dockerfile's two forms: ``["a", "b"]`` (exec) or ``a b`` (shell, run by ``/bin/sh -c``)."""
    stripped = arg.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", stripped]


def _pairs(arg: str, what: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` or the legacy single ``k v`` form."""
    words = shlex.split(arg)
    if not words:
        raise ImgcoreError(f"{what} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = arg.strip().partition(" ")
        if not value.strip():
            raise ImgcoreError(f"{what} {arg!r}: expected key=value")
        return [(key, value.strip())]
    out = []
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k:
            raise ImgcoreError(f"{what} {arg!r}: expected key=value, got {w!r}")
        out.append((k, v))
    return out


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """Applies ``-c`` Dockerfile instructions (as ``docker commit --change`` accepts them) to a config's
    ``config`` section; returns a new dict."""
    cfg = copy.deepcopy(config)
    for change in changes:
        instr, _, arg = change.strip().partition(" ")
        instr = instr.upper()
        if instr not in CHANGE_INSTRUCTIONS:
            raise ImgcoreError(
                f"invalid change {change!r}: {instr or 'empty'} is not one of {', '.join(CHANGE_INSTRUCTIONS)}"
            )
        if not arg.strip():
            raise ImgcoreError(f"invalid change {change!r}: {instr} requires an argument")
        if instr == "CMD":
            cfg["Cmd"] = _json_or_shell(arg)
        elif instr == "ENTRYPOINT":
            cfg["Entrypoint"] = _json_or_shell(arg)
            cfg.pop("Cmd", None) if not cfg.get("Cmd") else None
        elif instr == "ENV":
            env = list(cfg.get("Env") or [])
            for k, v in _pairs(arg, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            cfg["Env"] = env
        elif instr == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(arg, "LABEL"))
            cfg["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in arg.split():
                port, _, proto = p.partition("/")
                if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
                    raise ImgcoreError(f"invalid change {change!r}: bad port {p!r}")
                ports[f"{int(port)}/{proto or 'tcp'}"] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            paths = _json_or_shell(arg)
            for v in paths[2:] if paths[:2] == ["/bin/sh", "-c"] else paths:
                for one in v.split():
                    vols[one] = {}
            cfg["Volumes"] = vols
        elif instr == "WORKDIR":
            cfg["WorkingDir"] = arg.strip()
        elif instr == "USER":
            cfg["User"] = arg.strip()
        elif instr == "STOPSIGNAL":
            cfg["StopSignal"] = arg.strip()
        elif instr == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), arg.strip()]
    return cfg


def commit(
    store: Store,
    containers: Containers,
    container: Container,
    repo_tag: str | None = None,
    *,
    message: str | None = None,
    author: str | None = None,
    changes: Sequence[str] = (),
    compression: str = "gzip",
    paranoid: bool = False,
    source_date_epoch: int | None = None,
) -> CommitResult:
    """Turns ``container``'s changes into a new image, tagged ``repo_tag`` when given."""
    from imgcore import write_layer

    ref = parse(repo_tag) if repo_tag else None
    if compression not in _OCI_LAYER_TYPES:
        raise ImgcoreError(f"commit: unknown compression {compression!r} (gzip, zstd or none)")
    image = image_of(store, container)
    base_cfg = dict(image.config.data)
    new_config_section = apply_changes(dict(base_cfg.get("config") or {}), changes)

    if container.driver == "overlay":
        base: Any = [str(p) for p in containers.lowerdirs(container)]
        target = container.upper
    else:
        base = str(containers.ensure_rootfs(image))
        target = container.rootfs
    # Held from the first blob to the tag, so a concurrent prune cannot sweep the new, still untagged blobs.
    with images.writing(store):
        out = store.temp_path(".layer")
        try:
            result = write_layer(
                base,
                str(target),
                str(out),
                overlay=container.driver == "overlay",
                paranoid=paranoid,
                compression=compression,
                source_date_epoch=source_date_epoch,
            )
            n_changes = len(result.changes)
            layer_desc: Descriptor | None = None
            if n_changes:
                stored = store.adopt_file(out, result.digest)
                docker = image.manifest.media_type == DOCKER_MANIFEST
                media_type = DOCKER_LAYER_GZIP if docker and compression == "gzip" else _OCI_LAYER_TYPES[compression]
                layer_desc = Descriptor(media_type, stored.digest, stored.size)
                images.record_layer_size(store, stored.digest, result.uncompressed_size)
        finally:
            out.unlink(missing_ok=True)

        created = now_rfc3339()
        cfg: dict[str, Any] = copy.deepcopy(base_cfg)
        cfg["created"] = created
        cfg["config"] = new_config_section
        # docker's image JSON keeps the last commit's author and message at the top level too (inspect shows them).
        for key, value in (("author", author), ("comment", message)):
            if value:
                cfg[key] = value
            else:
                cfg.pop(key, None)
        cmd = image.config.config.get("Cmd") or []
        entry: dict[str, Any] = {"created": created, "created_by": " ".join(cmd) if cmd else "imgcore commit"}
        if author:
            entry["author"] = author
        if message:
            entry["comment"] = message
        rootfs = dict(cfg.get("rootfs") or {"type": "layers"})
        diff_ids = list(rootfs.get("diff_ids") or [])
        if layer_desc is not None:
            diff_ids.append(result.diff_id)
        else:
            entry["empty_layer"] = True
        rootfs["diff_ids"] = diff_ids
        rootfs["type"] = "layers"
        cfg["rootfs"] = rootfs
        cfg["history"] = [*(cfg.get("history") or []), entry]
        config = ImageConfig.from_dict(cfg)

        docker = image.manifest.media_type == DOCKER_MANIFEST
        cfg_desc = store.put_blob(config.raw)
        cfg_desc = Descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, cfg_desc.digest, cfg_desc.size)
        layers = list(image.manifest.layers) + ([layer_desc] if layer_desc else [])
        manifest = Manifest.build(
            cfg_desc, layers, media_type=DOCKER_MANIFEST if docker else "application/vnd.oci.image.manifest.v1+json"
        )
        man_desc = store.put_manifest(manifest.raw, manifest.media_type)
        if ref is not None:
            store.tag(ref, man_desc)
        else:
            store.add_untagged(man_desc)
    return CommitResult(
        config.digest,
        man_desc,
        layer_desc,
        result.diff_id if layer_desc else None,
        n_changes,
        str(ref) if ref else None,
    )
