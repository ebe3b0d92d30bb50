"""Thin wrappers over an OCI runtime's command line (runc; crun takes the same arguments).

Invariants:

- The runtime binary is always run by the absolute path found by :func:`imgcore.runtime.host.which` (never the
  caller's or an image's ``PATH``), with ``imgcore._host.host_env()`` as its whole environment, and with a
  private ``--root`` (the store's ``imgcore/runc``; :data:`DEFAULT_ROOT` otherwise), so imgcore's containers never
  mix with another tool's runc state and nothing from an image reaches the helper.
- Container ids given to the runtime are checked against runc's own rule (``[A-Za-z0-9][A-Za-z0-9_.-]*``).
- A failing runtime command raises :class:`RuntimeFailed` carrying the runtime's exit code and its stderr.

Exit codes of ``runc run`` in the foreground (runc 1.1, measured by tests/integration/test_runtime_runc.py):
the container process's own exit status (0-255); 128+N when it is killed by signal N (``runc kill ID KILL`` ->
137; SIGTERM to a pid 1 without a handler is ignored, as in docker). When the process cannot be started at all
(command not found, not executable, ...) runc exits 1 and logs on stderr, logrus-style with escaped quotes::

    time="..." level=error msg="runc run failed: unable to start container process: exec: \\"nope\\":
    executable file not found in $PATH"

(``...: stat /nope: no such file or directory``, ``...: permission denied``).
:func:`start_failure_exit_code` maps those messages to docker's 127/126; the container leaves no runc state.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from imgcore._host import host_env
from imgcore.errors import ImgcoreError, InvalidArgument
from imgcore.runtime._runc_cmd import start_failure_exit_status
from imgcore.runtime.host import RuntimeUnavailable, find_bwrap, which

__all__ = [
    "DEFAULT_ROOT",
    "Runtime",
    "RuntimeFailed",
    "find_runtime",
    "find_sandbox",
    "start_failure_exit_code",
]

#: runc's state directory when the caller gives none (tmpfs: runc state must not outlive a reboot).
DEFAULT_ROOT = Path("/run/imgcore/runc")

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KNOWN_RUNTIMES = ("runc", "crun")
_CAP_STDERR = 64 * 1024


class RuntimeFailed(ImgcoreError):
    """The OCI runtime returned an error. ``exit_code`` is its status, ``stderr`` what it printed."""

    exit_code: int | None
    stderr: str

    def __init__(self, message: str, *, exit_code: int | None = None, stderr: str = "", **attrs: Any) -> None:
        super().__init__(message, exit_code=exit_code, stderr=stderr, **attrs)


def _check_id(cid: str) -> str:
    if not _ID_RE.match(cid) or len(cid) > 1024:
        raise InvalidArgument(f"container id {cid!r}: must match [A-Za-z0-9][A-Za-z0-9_.-]*")
    return cid


def start_failure_exit_code(stderr: str) -> int | None:
    """docker's exit code for a process the runtime could not start, from the runtime's stderr, else None.

    127: the command was not found; 126: found but not executable (permission denied, exec format error,
    a directory). ``runc run`` itself exits 1 in both cases.
    """
    if "unable to start container process" not in stderr and "executable file not found" not in stderr:
        return None
    return start_failure_exit_status(stderr)


@dataclass(frozen=True)
class Runtime:
    """An OCI runtime binary (absolute ``path``), its private state directory ``root`` and its ``kind``."""

    path: Path
    root: Path = DEFAULT_ROOT
    kind: str = "runc"

    def argv(self, *args: str) -> list[str]:
        """The full command line for ``args`` (for the monitor, which spawns ``create``/``run``/``exec`` itself)."""
        return [str(self.path), "--root", str(self.root), *args]

    @property
    def env(self) -> dict[str, str]:
        """The environment to run the runtime with (:func:`host_env`)."""
        return host_env()

    def ensure_root(self) -> None:
        """Creates ``root`` (mode 0700, as runc wants its state private)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        self.ensure_root()
        cmd = self.argv(*args)
        try:
            proc = subprocess.run(
                cmd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeFailed(f"{self.kind} {args[0]}: no answer after {timeout:g}s") from None
        if proc.returncode != 0:
            err = proc.stderr[-_CAP_STDERR:].strip()
            raise RuntimeFailed(f"{self.kind} {' '.join(args)}: {err or f'exit status {proc.returncode}'}",
                                exit_code=proc.returncode, stderr=err)  # fmt: skip
        return proc

    def state(self, cid: str) -> dict[str, Any] | None:
        """runc's ``state`` of ``cid`` (``status``: created/running/paused/stopped), None if it is unknown."""
        try:
            out = self._run("state", _check_id(cid)).stdout
        except RuntimeFailed as e:
            if "does not exist" in e.stderr or "not exist" in e.stderr:
                return None
            raise
        data = json.loads(out)
        if not isinstance(data, dict):
            raise RuntimeFailed(f"{self.kind} state {cid}: not a JSON object")
        return data

    def kill(self, cid: str, signal: str | int = "TERM", *, all_processes: bool = False) -> None:
        """Sends ``signal`` (a name without ``SIG`` or a number) to the container's init (or all, ``--all``)."""
        args = ["kill"] + (["--all"] if all_processes else []) + [_check_id(cid), str(signal)]
        self._run(*args)

    def delete(self, cid: str, *, force: bool = False) -> None:
        """Deletes the container's runtime state (``--force`` kills it first); an unknown id is not an error."""
        try:
            self._run("delete", *(["--force"] if force else []), _check_id(cid))
        except RuntimeFailed as e:
            if "does not exist" not in e.stderr and "not exist" not in e.stderr:
                raise

    def pause(self, cid: str) -> None:
        """Freezes every process of the container (cgroup freezer)."""
        self._run("pause", _check_id(cid))

    def resume(self, cid: str) -> None:
        """Thaws a paused container."""
        self._run("resume", _check_id(cid))

    def ps(self, cid: str) -> list[int]:
        """Host pids of the container's processes."""
        out = self._run("ps", "--format", "json", _check_id(cid)).stdout
        pids = json.loads(out) if out.strip() else []
        if not isinstance(pids, list) or not all(isinstance(p, int) for p in pids):
            raise RuntimeFailed(f"{self.kind} ps {cid}: unexpected output {out[:200]!r}")
        return pids

    def run(
        self,
        bundle: Path,
        cid: str,
        *,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
        timeout: float | None = None,
        extra: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        """``runc run`` in the foreground, the container's stdio passed through; returns when it exits.

        The return code is the container process's exit status (see the module docstring for start failures).
        For a detached, monitored container the monitor spawns :meth:`argv` ``("create", ...)`` itself.
        """
        self.ensure_root()
        cmd = self.argv("run", "--bundle", str(bundle), *extra, _check_id(cid))
        return subprocess.run(cmd, env=self.env, stdin=stdin, stdout=stdout, stderr=stderr, timeout=timeout,
                              check=False)  # fmt: skip


def find_runtime(name: str | None = None, *, root: Path | None = None) -> Runtime:
    """The OCI runtime to use: ``name``, else ``$IMGCORE_RUNTIME``, else ``runc``, found with :func:`which`.

    ``root`` is the runtime's private state directory (``--root``); pass the store's ``imgcore/runc``.
    """
    chosen = name or os.environ.get("IMGCORE_RUNTIME") or "runc"
    try:
        path = which(chosen)
    except RuntimeUnavailable as e:
        raise RuntimeUnavailable(f"oci runtime {chosen!r} not found: {e}") from None
    base = Path(path).name
    kind = base if base in _KNOWN_RUNTIMES else "runc"
    return Runtime(Path(path), Path(root) if root is not None else DEFAULT_ROOT, kind)


def find_sandbox(name: str | None = None, *, root: Path | None = None) -> Runtime | str:
    """A :class:`Runtime` when running as root with runc (or ``name``) installed, else bubblewrap's path.

    Raises :class:`RuntimeUnavailable` naming everything that is missing when neither is usable.
    """
    problems: list[str] = []
    if os.geteuid() == 0:
        try:
            return find_runtime(name, root=root)
        except RuntimeUnavailable as e:
            problems.append(str(e))
    else:
        problems.append("runc needs root (imgcore sets up no rootless runc)")
    bwrap = find_bwrap()
    if bwrap is not None:
        return bwrap
    problems.append("bubblewrap is not installed (apt-get install -y bubblewrap)")
    raise RuntimeUnavailable("cannot run containers: " + "; ".join(problems))
