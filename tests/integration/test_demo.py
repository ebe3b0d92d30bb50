"""The README's main job runs end to end and shows what the seed promises."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import require_tool

pytestmark = pytest.mark.integration


def test_demo_runs_the_seed_scenario(tmp_path):
    require_tool("busybox")
    r = subprocess.run(
        [sys.executable, "-m", "imgcore", "demo"],
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
        },
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    # the commit exactly as the seed types it
    assert re.search(
        r'\$ imgcore commit -m="newtomcat" -a="xxx" [0-9a-f]{12} new_tomcat:1\.0\nsha256:[0-9a-f]{64}', out
    )
    images = out.split("$ imgcore images\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert images[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert [row.split()[:2] for row in images[1:]] == [["new_tomcat", "1.0"], ["tomcat", "latest"], ["mini-os", "1.0"]]
    history = out.split("$ imgcore history new_tomcat:1.0\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "newtomcat" in history[1]
    assert len(history) == 4  # header + 3 layers
    # the copied web apps are in the new image, and the store is sound
    after = out.split("has the web apps in webapps", 1)[1]
    for app in ("ROOT", "docs", "examples", "host-manager", "manager"):
        assert f"\n{app}\n" in after
    assert "0 problem(s)" in out
    assert re.search(r"2 shared by more than one image", out)
