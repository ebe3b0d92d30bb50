"""The README's main job runs end to end and shows what the seed promises: a registry on loopback, a pull into a
fresh store with docker's per-layer lines, ``run -d`` of a server checked over HTTP, the seed's exec and commit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import imgcore
from tests.conftest import IN_CI, require_tool

pytestmark = pytest.mark.integration


def _section(out: str, command: str) -> list[str]:
    return out.split(f"$ imgcore {command}\n", 1)[1].split("\n\n", 1)[0].splitlines()


def test_demo_runs_the_seed_scenario(tmp_path):
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the demo runs containers with runc: the CI job runs as root")
        pytest.skip("the demo runs containers with runc, which needs root")
    for tool in ("busybox", "runc", "docker-registry"):
        require_tool(tool)
    r = subprocess.run(
        [sys.executable, "-m", "imgcore", "demo"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "PYTHONPATH": str(Path(imgcore.__file__).resolve().parents[1]),  # this tree's imgcore, not an installed one
        },
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    host = re.search(r"registry (127\.0\.0\.1:\d+),", out).group(1)  # type: ignore[union-attr]
    # the pull into the fresh store, with docker's lines for each of the two layers
    pull = _section(out, f"pull {host}/tomcat")
    assert pull[:2] == ["Using default tag: latest", "latest: Pulling from tomcat"]
    assert len([line for line in pull if re.fullmatch(r"[0-9a-f]{12}: Pull complete", line)]) == 2
    assert pull[-2:] == [f"Status: Downloaded newer image for {host}/tomcat:latest", f"{host}/tomcat:latest"]
    # run -d: the image's command keeps running and serves webapps/ (empty before the seed's copy)
    cid = _section(out, f"run -d --network host {host}/tomcat")[0]
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    short = cid[:12]
    assert re.search(r"GET http://127\.0\.0\.1:\d+/ROOT/index\.html -> 404 ", out)
    assert re.search(rf"\n{short}   {re.escape(host)}/tomcat:latest   \"httpd -f -p 127\.0\.0…\" .* Up ", out)
    # the seed's exec, exactly as written, in the image's WORKDIR; then the server has the apps
    assert f"\n$ imgcore exec {short} sh -c 'cp -r webapps.dist/* webapps'\n# GET " in out
    assert re.search(r"GET http://127\.0\.0\.1:\d+/ROOT/index\.html -> 200: <html><body><h1>Apache Tomcat", out)
    # the commit exactly as the seed types it
    assert re.search(
        rf'\$ imgcore commit -m="newtomcat" -a="xxx" {short} new_tomcat:1\.0\n(.*\n)*?sha256:[0-9a-f]{{64}}', out
    )
    images = _section(out, "images")
    assert images[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert [row.split()[:2] for row in images[1:]] == [["new_tomcat", "1.0"], [f"{host}/tomcat", "latest"]]
    history = _section(out, "history new_tomcat:1.0")
    assert len(history) == 4  # header + 3 layers
    assert "newtomcat" in history[1]
    assert "httpd -f -p 127.0.0.1:" in history[1]  # created_by: the container's command, as docker writes it
    # the copied web apps are in the new image, and the store is sound
    assert _section(out, "run --rm new_tomcat:1.0 ls webapps") == [
        "ROOT",
        "docs",
        "examples",
        "host-manager",
        "manager",
    ]
    assert re.search(rf"\n{short} .* Exited \(137\) ", out)
    assert "0 problem(s)" in out
    assert re.search(r"2 shared by more than one image", out)
    # the registry was stopped
    pid = int(re.search(r"# stopping the registry \(pid (\d+)\)", out).group(1))  # type: ignore[union-attr]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
