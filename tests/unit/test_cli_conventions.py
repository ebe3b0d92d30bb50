"""docker's command-line conventions: usage errors exit 125, docker's error wording, a closed pipe ends quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imgcore.store import ContentStore


def _imgcore(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgcore", "--root", str(root), *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("argv", [["nosuchcommand"], ["images", "--bogus"], ["tag", "only-one"], []])
def test_usage_errors_exit_125(tmp_path: Path, argv: list[str]) -> None:
    r = _imgcore(tmp_path, *argv)
    assert r.returncode == 125, r.stderr
    assert "usage:" in (r.stderr + r.stdout)


def test_docker_wording_for_a_missing_image(tmp_path: Path) -> None:
    r = _imgcore(tmp_path, "history", "nope")
    assert (r.returncode, r.stderr) == (1, "Error: No such image: nope:latest\n")


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    blob = store.put_blob(b"x" * (8 << 20))
    cmd = f"{sys.executable} -m imgcore --root {tmp_path} blob cat {blob.digest} | head -c 10"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, check=False)
    assert r.stdout == b"x" * 10
    assert r.stderr == b""  # no "Broken pipe", no traceback
    assert r.returncode == 0


def test_version_loads_no_workflow(tmp_path: Path) -> None:
    code = (
        "import sys; from imgcore.cli import main; main(['--version']); "
        "print(len([m for m in sys.modules if m.startswith('imgcore.')]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, count = r.stdout.split()[1], int(r.stdout.split()[-1])
    assert version
    assert count <= 4, "imgcore --version imports only the package, _core, errors and cli"
