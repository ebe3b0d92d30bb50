"""The CLI end to end: login/pull/push/logout against the TLS + basic-auth registry, save/load through pipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import OciImage, Registry, skopeo_push

pytestmark = pytest.mark.integration


def imgcore(*args: str, env: dict[str, str], stdin: str | bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run([sys.executable, "-m", "imgcore", *args], input=data, capture_output=True, env=env,
                          check=False, timeout=120)  # fmt: skip


def test_cli_login_pull_push_logout_save_load(oci_image: OciImage, tls_registry: Registry, tmp_path: Path) -> None:
    skopeo_push(oci_image, tls_registry, "cli/app:v1")
    env = {**os.environ, "IMGCORE_CONFIG": str(tmp_path / "cfg"), "IMGCORE_ROOT": str(tmp_path / "store"),
           "DOCKER_CONFIG": str(tmp_path / "no-docker")}  # fmt: skip
    ca = ["--ca-file", str(tls_registry.ca_file)]
    host = tls_registry.host

    bad = imgcore("login", host, "-u", "alice", "--password-stdin", *ca, env=env, stdin="not-the-password\n")
    assert bad.returncode == 1
    assert b"refused the credentials" in bad.stderr
    assert b"not-the-password" not in bad.stderr + bad.stdout

    ok = imgcore("login", host, "-u", "alice", "--password-stdin", *ca, env=env, stdin="s3cret-pw\n")
    assert ok.returncode == 0, ok.stderr
    assert b"Login Succeeded" in ok.stdout
    assert (tmp_path / "cfg" / "config.json").stat().st_mode & 0o777 == 0o600

    pulled = imgcore("pull", f"{host}/cli/app:v1", *ca, env=env)
    assert pulled.returncode == 0, pulled.stderr
    lines = pulled.stdout.decode().splitlines()
    assert lines[-1] == f"{host}/cli/app:v1"
    assert lines[-3] == f"Digest: {oci_image.manifest_digest}"

    quiet = imgcore("pull", "-q", f"{host}/cli/app:v1", *ca, env=env)
    assert quiet.stdout.decode() == f"{host}/cli/app:v1\n"

    pushed = imgcore("push", f"{host}/cli/copy:v2", "--source", f"{host}/cli/app:v1", *ca, env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.decode().splitlines()[-1].startswith(f"v2: digest: {oci_image.manifest_digest} size: ")

    saved = imgcore("save", f"{host}/cli/app:v1", env=env)
    assert saved.returncode == 0, saved.stderr
    env2 = {**env, "IMGCORE_ROOT": str(tmp_path / "store2")}
    loaded = imgcore("load", env=env2, stdin=saved.stdout)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.decode() == f"Loaded image: {host}/cli/app:v1\n"

    out = imgcore("logout", host, env=env)
    assert out.stdout.decode() == f"Removing login credentials for {host}\n"
    denied = imgcore("pull", f"{host}/cli/app:v1", *ca, env=env)
    assert denied.returncode == 1
    assert b"requires authentication" in denied.stderr


def test_cli_pull_unknown_image_is_a_clean_error(registry: Registry, tmp_path: Path) -> None:
    env = {**os.environ, "IMGCORE_ROOT": str(tmp_path / "store"), "IMGCORE_CONFIG": str(tmp_path / "cfg")}
    r = imgcore("pull", f"{registry.host}/nope/nothing:1", env=env)
    assert r.returncode == 1
    assert r.stderr.decode().startswith("Error: get manifest ")
    assert b"manifest unknown" in r.stderr
    assert b"Traceback" not in r.stderr
