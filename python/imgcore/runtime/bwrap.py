"""The unprivileged fallback: the same OCI spec run by bubblewrap, as far as bubblewrap allows.

Invariants:

- Input is the spec :func:`imgcore.runtime.spec.write_bundle` wrote (bind sources absolute); output is a bwrap
  command line run by absolute path with ``imgcore._host.host_env()``. The container's environment is
  given with ``--clearenv`` + ``--setenv``: nothing of imgcore's or the image's reaches bwrap itself.
- Kept: the rootfs as ``/``, pid/ipc/uts (+ network unless the spec shares the host's) namespaces, the hostname,
  a fresh ``/proc``, a minimal ``/dev`` (bwrap's: null zero full random urandom tty, a private devpts),
  ``/dev/shm`` and ``/dev/mqueue``, ``/sys`` read-only, the spec's binds in order (``ro`` kept), docker's masked
  paths (a masked file is ``/dev/null`` bound ``nodev``: opening it is refused rather than empty), the working
  directory, the argv, ``--new-session`` without a tty, ``--die-with-parent``.
- Like runc, bwrap creates missing mountpoints in the rootfs: the same paths as
  :data:`imgcore.runtime.spec.RUNTIME_MOUNTPOINTS` (measured: ``/dev /proc /sys /etc/hosts /etc/hostname
  /etc/resolv.conf``) plus volume destinations; ``/dev/shm`` and ``/dev/mqueue`` land in bwrap's own ``/dev``
  tmpfs. Unprivileged it can only create them in a rootfs the user owns.
- Lost, and said so in :attr:`BwrapCommand.warnings`: user switching (unprivileged, the process is the invoking
  user mapped to the spec's uid/gid inside a user namespace: files keep their host owners and the process has no
  real privilege; as root bwrap cannot switch either and the process stays root); capabilities (none inside the
  sandbox without root), the device cgroup, rlimits and cgroupsPath. The read-only /proc paths are moot without
  real root inside and are not remounted.
- :func:`run_foreground` (``run`` without ``-d``, without root) is the monitor's part for bubblewrap: it holds
  ``CDIR/monitor.lock`` while the sandbox runs and records ``state.json`` (running, then exited with the code,
  ``128+N`` for a signal), so ``ps``/``inspect``/``wait`` read it as they read a monitored container. There is no
  detached mode, attach or log (no process outlives the command): ``start``/``run -d`` without root say so.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from imgcore._host import host_env
from imgcore.errors import InvalidArgument
from imgcore.runtime._state import foreground

__all__ = ["BwrapCommand", "bwrap_command", "run_foreground"]


@dataclass(frozen=True)
class BwrapCommand:
    """``argv`` to run (``argv[0]`` is bwrap's absolute path) and what the fallback could not do."""

    argv: list[str]
    warnings: tuple[str, ...]


def bwrap_command(spec: Mapping[str, Any], bwrap: str, *, unprivileged: bool | None = None) -> BwrapCommand:
    """The bubblewrap command line equivalent to OCI ``spec`` (see the module docstring for what is kept).

    ``unprivileged`` (default: not running as root) adds the user namespace that maps the caller to the spec's
    uid/gid.
    """
    if unprivileged is None:
        unprivileged = os.geteuid() != 0
    if not Path(bwrap).is_absolute():
        raise InvalidArgument(f"bwrap {bwrap!r}: must be an absolute path")
    process = spec["process"]
    rootfs = spec["root"]["path"]
    namespaces = {ns.get("type") for ns in spec.get("linux", {}).get("namespaces", [])}
    warnings: list[str] = []
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if "network" in namespaces:
        argv.append("--unshare-net")
    uid, gid = int(process["user"]["uid"]), int(process["user"]["gid"])
    if unprivileged:
        argv += ["--unshare-user", "--uid", str(uid), "--gid", str(gid)]
        warnings.append(
            f"bubblewrap without root cannot switch users: the process runs as the invoking user mapped to "
            f"{uid}:{gid} in a user namespace (files keep their host owners; no capabilities)"
        )
    elif uid != 0 or gid != 0:
        warnings.append(f"bubblewrap cannot switch to user {uid}:{gid} here; the process runs as root")
    warnings.append("bubblewrap fallback: no device cgroup, rlimits or cgroup; install runc and run as root for those")
    if spec.get("hostname"):
        argv += ["--hostname", str(spec["hostname"])]
    argv += ["--bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys",
             "--tmpfs", "/dev/shm", "--mqueue", "/dev/mqueue"]  # fmt: skip
    for m in spec.get("mounts", []):
        if m.get("type") != "bind":
            continue
        source = str(m["source"])
        if not Path(source).is_absolute():
            raise InvalidArgument(f"bwrap: bind source {source!r} is not absolute (write the bundle first)")
        argv += ["--ro-bind" if "ro" in m.get("options", []) else "--bind", source, str(m["destination"])]
    for path in spec.get("linux", {}).get("maskedPaths", []):
        # Only what exists: bwrap would have to create the mountpoint, impossible under /proc and /sys.
        if Path(path).is_dir():
            argv += ["--tmpfs", path, "--remount-ro", path]
        elif Path(path).exists():
            argv += ["--ro-bind", "/dev/null", path]
    argv += ["--chdir", str(process.get("cwd") or "/"), "--clearenv"]
    for item in process.get("env", []):
        name, sep, value = str(item).partition("=")
        if sep:
            argv += ["--setenv", name, value]
    if not process.get("terminal"):
        argv.append("--new-session")
    argv += ["--", *[str(a) for a in process["args"]]]
    return BwrapCommand(argv, tuple(warnings))


def run_foreground(
    cdir: Path,
    cid: str,
    bwrap: str,
    *,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    warn: Callable[[str], None] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Runs the container whose bundle is ``CDIR/bundle`` under bubblewrap in the foreground, recording its
    state as a monitor would (see the module docstring); returns when it exits, with docker's exit code. What
    the fallback cannot do is passed to ``warn`` first."""
    cdir = Path(cdir)
    spec = json.loads((cdir / "bundle" / "config.json").read_bytes())
    command = bwrap_command(spec, bwrap)
    if warn is not None:
        for w in command.warnings:
            warn(w)
    with foreground(cdir, cid, bwrap) as code:
        proc = subprocess.run(command.argv, env=host_env(), stdin=stdin, stdout=stdout, stderr=stderr, check=False)
        code.append(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)
    return subprocess.CompletedProcess(proc.args, code[-1], proc.stdout, proc.stderr)
