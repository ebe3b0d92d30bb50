"""``-c``/``--change``: Dockerfile instructions applied to an image config, as ``docker commit --change`` and
``docker import --change`` accept them.

Invariants: the input config is never modified (a new dict is returned); an instruction that is not one of
:data:`CHANGE_INSTRUCTIONS`, or a malformed argument, raises :class:`~imgcore.errors.InvalidArgument` naming it.
"""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Sequence
from typing import Any

from imgcore.errors import InvalidArgument

__all__ = ["CHANGE_INSTRUCTIONS", "apply_changes"]

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
"""The Dockerfile instructions ``commit -c`` and ``import -c`` accept (docker's own list)."""


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
        raise InvalidArgument(f"{what} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = arg.strip().partition(" ")
        if not value.strip():
            raise InvalidArgument(f"{what} {arg!r}: expected key=value")
        return [(key, value.strip())]
    out = []
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k:
            raise InvalidArgument(f"{what} {arg!r}: expected key=value, got {w!r}")
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
            raise InvalidArgument(
                f"invalid change {change!r}: {instr or 'empty'} is not one of {', '.join(CHANGE_INSTRUCTIONS)}"
            )
        if not arg.strip():
            raise InvalidArgument(f"invalid change {change!r}: {instr} requires an argument")
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
                    raise InvalidArgument(f"invalid change {change!r}: bad port {p!r}")
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
