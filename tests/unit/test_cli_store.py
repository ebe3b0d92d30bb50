"""The store-level commands: blob put/ls/cat/rm, fsck, demo; errors go to stderr with exit 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import imgcore
from imgcore.cli import main
from tests.conftest import require_tool


def run(*args, input=None):
    return subprocess.run([sys.executable, "-m", "imgcore", *args], capture_output=True, input=input, check=False)


def test_blob_commands_and_fsck(tmp_path, capsys):
    root = str(tmp_path / "s")
    f = tmp_path / "f"
    f.write_bytes(b"content")
    assert main(["--root", root, "blob", "put", str(f)]) == 0
    digest = imgcore.sha256(b"content")
    assert capsys.readouterr().out.startswith(f"{digest}\t7\t")
    assert main(["--root", root, "blob", "ls"]) == 0
    assert capsys.readouterr().out == f"{digest}\t7\n"
    assert main(["--root", root, "fsck"]) == 0
    assert "checked 1 blobs" in capsys.readouterr().out
    p = run("--root", root, "blob", "cat", digest)
    assert p.stdout == b"content"
    from imgcore.store import ContentStore

    path = ContentStore(root).blob_path(digest)
    path.chmod(0o644)
    path.write_bytes(b"changed")
    assert main(["--root", root, "fsck"]) == 1
    assert "CORRUPT" in capsys.readouterr().out
    p = run("--root", root, "blob", "cat", digest)
    assert p.returncode == 1
    assert b"corrupt" in p.stderr
    assert main(["--root", root, "blob", "rm", digest]) == 0


def test_put_with_wrong_digest_is_refused(tmp_path):
    root = str(tmp_path / "s")
    p = run("--root", root, "blob", "put", "-", "--digest", imgcore.sha256(b"other"), input=b"data")
    assert p.returncode == 1
    assert p.stderr.startswith(b"Error: ingest sha256:")
    assert b"digest mismatch" in p.stderr
    p = run("--root", root, "blob", "put", "-", "--digest", "sha256:xyz", input=b"data")
    assert p.returncode == 1
    assert b"invalid digest" in p.stderr
    p = run("--root", root, "blob", "put", str(tmp_path / "missing"))
    assert p.returncode == 1
    assert b"No such file" in p.stderr


def test_demo_runs_in_a_fresh_store(tmp_path):
    p = run("demo", "--help")
    assert p.returncode == 0
    if os.geteuid() != 0:  # the demo's containers run under runc (tests/integration/test_demo.py checks its output)
        pytest.skip("the demo runs containers with runc, which needs root")
    for tool in ("busybox", "runc", "docker-registry"):
        require_tool(tool)
    assert main(["--root", str(tmp_path / "demo"), "demo"]) == 0
    assert (tmp_path / "demo" / "store" / "index.json").is_file()
    assert (tmp_path / "demo" / "fresh" / "index.json").is_file()  # the pulled store
