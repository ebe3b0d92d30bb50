"""docs/tutorial.md runs: its ``python`` blocks are executed in order, in one namespace, in a fresh store.

So the tutorial cannot rot: a renamed method, a changed result or a wrong claim in one of its ``assert`` lines
fails here. The blocks run as root would type them (``exec`` uses chroot as root); section 7 pushes to and
pulls from Debian's ``docker-registry`` on loopback, started here and named in ``IMGCORE_TUTORIAL_REGISTRY``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import imgcore
from tests.conftest import require_tool
from tests.integration.conftest import start_registry

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(markdown: str) -> list[str]:
    """The code of every fenced ``python`` block, in order."""
    return BLOCK.findall(markdown)


def test_tutorial_has_the_seed_workflow() -> None:
    code = "\n".join(python_blocks(TUTORIAL.read_text()))
    for step in ("import_rootfs(", "store.create(", ".exec(", "cp -r webapps.dist/* webapps", ".commit(",
                 'message="newtomcat"', 'author="xxx"', "store.images()", ".history", "disk_usage()", ".push(",
                 ".pull("):  # fmt: skip
        assert step in code, f"the tutorial lost a step: {step}"


def test_tutorial_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("busybox")
    registry = start_registry(tmp_path / "registry")
    try:
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        monkeypatch.setenv("IMGCORE_ROOT", str(tmp_path / "store"))
        monkeypatch.setenv("IMGCORE_TUTORIAL_REGISTRY", registry.host)
        namespace: dict[str, object] = {"__name__": "tutorial"}
        blocks = python_blocks(TUTORIAL.read_text())
        assert len(blocks) >= 10
        for i, block in enumerate(blocks, 1):
            exec(compile(block, f"{TUTORIAL}:block{i}", "exec"), namespace)
    finally:
        registry.stop()
        for container in imgcore.Store(tmp_path / "store").containers():  # a failed block may leave overlays
            container.remove()
    # What the last block leaves: the two base images, and the second store holds the pulled one.
    assert (tmp_path / "store" / "index.json").is_file()
    assert (work / "second-store" / "index.json").is_file()
