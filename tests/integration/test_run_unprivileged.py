"""Containers without root: ``run`` (foreground) under bubblewrap, as an unprivileged user types it.

The test drops to ``nobody`` with setpriv and runs Debian's own python3 (the project's interpreter may live in a
directory that nobody cannot read) on a copy of the package that nobody can read. Everything else is as a user
would have it: a store in a directory nobody owns, a busybox image imported there, fresh ``imgcore`` processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgcore
from tests.conftest import IN_CI, require_tool

from .test_run import _rootfs_tar

pytestmark = [pytest.mark.integration, pytest.mark.root]

NOBODY = 65534


@pytest.fixture(scope="module")
def as_nobody() -> Iterator[tuple[list[str], Path]]:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("dropping to an unprivileged user needs root (the CI job runs as root)")
        pytest.skip("needs root to drop to nobody")
    setpriv = require_tool("setpriv")
    require_tool("bwrap")
    python = Path("/usr/bin/python3")
    if not python.exists():
        pytest.fail("Debian's python3 is missing") if IN_CI else pytest.skip("no /usr/bin/python3")
    # not under pytest's basetemp, whose directories only root may enter
    base = Path(tempfile.mkdtemp(prefix="imgcore-unpriv-"))
    base.chmod(0o755)
    pkg = base / "pkg"
    shutil.copytree(Path(imgcore.__file__).parent, pkg / "imgcore", ignore=shutil.ignore_patterns("__pycache__"))
    for p in [pkg, *pkg.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    home = base / "home"
    home.mkdir()
    _rootfs_tar(home / "rootfs.tar.gz")
    for p in [home, *home.rglob("*")]:
        os.chown(p, NOBODY, NOBODY)
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}", f"PYTHONPATH={pkg}", "PYTHONDONTWRITEBYTECODE=1"]
    cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *env, str(python), "-m", "imgcore",
           "--root", str(home / "store")]  # fmt: skip
    r = subprocess.run([*cmd, "import", str(home / "rootfs.tar.gz"), "box:1", "-c", "WORKDIR /usr/local/tomcat",
                        "-c", "ENV A=1"], capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    yield cmd, home
    shutil.rmtree(base, ignore_errors=True)


def _ic(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, check=False)


def test_run_without_root_uses_bubblewrap_in_the_foreground(as_nobody: tuple[list[str], Path]) -> None:
    cmd, _ = as_nobody
    r = _ic(cmd, "run", "--rm", "box:1", "sh", "-c", "pwd; echo $A; echo $$; ls /proc | grep -cE '^[0-9]+$'")
    assert r.returncode == 0, r.stderr
    pwd, a, pid, nprocs = r.stdout.split()
    assert (pwd, a) == ("/usr/local/tomcat", "1")  # WORKDIR and ENV applied
    assert int(pid) <= 2
    assert int(nprocs) < 10
    assert "bubblewrap without root cannot switch users" in r.stderr  # what is lost is said
    assert "CONTAINER ID" in _ic(cmd, "ps", "-a").stdout
    assert len(_ic(cmd, "ps", "-a", "-q").stdout.split()) == 0  # --rm removed it


def test_exit_codes_state_and_what_needs_root(as_nobody: tuple[list[str], Path]) -> None:
    cmd, _ = as_nobody
    assert _ic(cmd, "run", "--name", "three", "box:1", "sh", "-c", "exit 3").returncode == 3
    ps = _ic(cmd, "ps", "-a", "--filter", "name=three", "--format", "{{.Status}}").stdout
    assert ps.startswith("Exited (3)"), ps
    assert _ic(cmd, "wait", "three").stdout.strip() == "3"
    r = _ic(cmd, "run", "-d", "box:1", "sleep", "5")
    assert r.returncode == 125
    assert "needs root and runc" in r.stderr
    assert "bubblewrap is used for `run` in the foreground" in r.stderr
    # the library's exec of a never-started container (create + exec) runs under bubblewrap too
    python = cmd[: cmd.index("-m")]
    script = ("import imgcore, sys; box = imgcore.Store(sys.argv[1]).create('box:1', name='fresh'); "
              "r = box.exec(['sh', '-c', 'pwd; echo $$; echo x > /tmp/made'], capture=True); "
              "print(r.returncode, *r.stdout.decode().split()); print(*(ch.path for ch in box.diff()))")  # fmt: skip
    r = subprocess.run([*python, "-c", script, cmd[-1]], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    code, pwd, pid = first.split()
    assert (code, pwd) == ("0", "/usr/local/tomcat")
    assert int(pid) <= 2
    assert second.split() == ["/tmp", "/tmp/made"]
    r = _ic(cmd, "rm", "three", "fresh")
    assert r.returncode == 0, r.stderr
