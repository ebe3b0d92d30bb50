"""Shared test set-up: hypothesis profiles, tool discovery (fail under CI, skip elsewhere), a fresh store."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("quick", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# IMGCORE_LONG=1: the torture/fuzz form of the suite (tests scale their own loops by LONG as well).
settings.register_profile(
    "long", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True
)
LONG = os.environ.get("IMGCORE_LONG", "").lower() in ("1", "true", "yes")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("long" if LONG else "ci"))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
VECTORS = Path(__file__).parent / "vectors"


def require_tool(name: str) -> str:
    """The tool's path; outside CI a missing tool skips the test, under CI it fails it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (install it with: apt-get install -y {name})"
        if IN_CI:
            pytest.fail(message + " -- required under CI")
        pytest.skip(message)
    return path


def can_mount_overlay() -> str | None:
    """None when root may mount overlayfs here, else the reason it may not."""
    if os.geteuid() != 0:
        return "mounting overlayfs needs root"
    try:
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                return "the kernel has no overlay filesystem"
    except OSError as e:
        return f"cannot read /proc/filesystems: {e}"
    return None


def load_vectors(relpath: str) -> list[list[str]]:
    """Rows of a whitespace-separated vector file under tests/vectors, comments skipped (cryptography style)."""
    rows = []
    for line in (VECTORS / relpath).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split())
    return rows


@pytest.fixture
def store(tmp_path: Path) -> object:
    from imgcore.store import ContentStore

    return ContentStore(tmp_path / "store")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No overlay mount made by a test outlives the run (a leftover would make every later temp-dir cleanup fail)."""
    base = str(session.config._tmp_path_factory.getbasetemp()) if hasattr(session.config, "_tmp_path_factory") else None
    if not base or os.geteuid() != 0:
        return
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(base + "/")), reverse=True):
        subprocess.run(["/usr/bin/umount", "-l", point], check=False, capture_output=True)
