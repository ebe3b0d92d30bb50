"""The monitor's runc invocation: run a runtime command and read runc's own error message from its JSON log.

Invariants: the runtime is run by the absolute path it was given, with ``--root`` and the fixed environment
:data:`RUNC_ENV` (``imgcore._host.host_env()``), never the caller's or an image's; errors are
read from runc's ``--log`` file (``--log-format json``), which holds exactly what runc says on failure.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from imgcore._host import host_env

__all__ = ["MONITOR_ENV", "RUNC_ENV", "Runc", "RuncResult", "last_error", "start_failure_exit_status"]

#: The whole environment runc gets (a fixed system PATH, the C locale for stable messages).
RUNC_ENV = host_env()
_PYTHON_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the imgcore package
#: The monitor's environment, and that of the imgcore it starts (``run -d --rm``): RUNC_ENV and this imgcore.
MONITOR_ENV = {**RUNC_ENV, "PYTHONPATH": str(_PYTHON_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class RuncResult:
    returncode: int
    message: str  # runc's error message (its last error-level log entry, else its stderr), "" on success


@dataclass(frozen=True)
class Runc:
    """An OCI runtime binary (absolute ``path``) and its private state directory ``root``."""

    path: str
    root: str

    def argv(self, *args: str, log: Path | None = None) -> list[str]:
        logopts = ["--log", str(log), "--log-format", "json"] if log is not None else []
        return [self.path, "--root", self.root, *logopts, *args]

    def run(self, *args: str, log: Path | None = None, timeout: float = 60.0) -> RuncResult:
        """Runs ``runc ARGS`` with no stdin, capturing its output; never raises for a non-zero exit."""
        if log is not None:
            with contextlib.suppress(FileNotFoundError):
                log.unlink()
        try:
            proc = subprocess.run(self.argv(*args, log=log), env=RUNC_ENV, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            return RuncResult(-1, f"runc {args[0]}: no answer after {timeout:g}s")
        if proc.returncode == 0:
            return RuncResult(0, "")
        msg = (last_error(log) if log is not None else "") or proc.stderr.strip()[-4096:]
        return RuncResult(proc.returncode, msg or f"runc {args[0]}: exit status {proc.returncode}")


def last_error(log: Path) -> str:
    """The message of runc's last error-level entry in its JSON log, "" when there is none."""
    msg = ""
    try:
        with log.open("rb") as f:
            data = f.read()[-65536:]
    except OSError:
        return ""
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                msg = str(entry.get("msg", ""))
    return msg


def start_failure_exit_status(message: str) -> int:
    """docker's exit status for a container runc could not start, from runc's message.

    127: the command was not found; 126: found but cannot be executed (permission denied, a directory, exec
    format error); 125: anything else (docker's "the daemon failed").
    """
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "unable to start container process" in message:
        return 126
    return 125
