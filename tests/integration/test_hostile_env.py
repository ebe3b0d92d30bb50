"""An image's environment never reaches a host helper (issue 10, item 1).

The image ships fake ``mount``, ``umount``, ``cp``, ``runc``, ``chroot``, ``tar``, ``bwrap`` and ``sh`` (each
appends a line to a marker file on the host) and a real ``LD_PRELOAD`` library whose constructor does the same;
its ``Env`` points ``PATH`` and ``LD_PRELOAD`` at them where the store unpacks its layer (the overlay layer
directory and the copy driver's baseline: predictable paths). The trap is armed first (running ``mount`` on the
host with the image's environment writes the marker), then ``create`` (both drivers), ``start``, ``exec``, an
``exec`` into a never-started container (the chroot fallback), ``run --rm``, ``diff``, ``commit``, ``cp`` both
ways, ``export``, ``stop`` and ``rm`` run on it: the marker must never appear.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import imgcore
from imgcore.image.catalog import resolve
from imgcore.layers.cache import LayerCache
from tests.conftest import IN_CI, require_tool

from .test_run import _rootfs_tar

pytestmark = [pytest.mark.integration, pytest.mark.root]

PYTHONPATH = str(Path(imgcore.__file__).resolve().parents[1])
FAKES = ("mount", "umount", "cp", "runc", "chroot", "tar", "bwrap", "sh", "cat", "ls", "mkdir", "rm", "ln", "file")
PRELOAD_C = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void pwn(void) {
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { write(fd, "LD_PRELOAD ran on the host\n", 27); close(fd); }
}
"""


def _evil_rootfs(tmp: Path, marker: Path) -> Path:
    """busybox's rootfs plus evil/bin/<fake helpers> and evil/lib/evil.so."""
    cc = require_tool("cc")
    src = tmp / "evil.c"
    src.write_text(PRELOAD_C)
    so = tmp / "evil.so"
    subprocess.run([cc, "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(so), str(src)], check=True)
    base = tmp / "base.tar.gz"
    _rootfs_tar(base)
    out = tmp / "evil.tar"
    script = f'#!/bin/sh\necho "$0 $*: ran on the host with the image\'s PATH" >> {marker}\n'.encode()
    with tarfile.open(base) as src_tf, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for m in src_tf.getmembers():
            tf.addfile(m, src_tf.extractfile(m) if m.isfile() else None)

        def add(name: str, data: bytes | None, mode: int = 0o755) -> None:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.mtime = mode, 1_700_000_000
            if data is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))

        for d in ("evil", "evil/bin", "evil/lib"):
            add(d, None)
        for name in FAKES:
            add(f"evil/bin/{name}", script)
        add("evil/lib/evil.so", so.read_bytes())
    return out


def ic(root: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": PYTHONPATH}
    r = subprocess.run([sys.executable, "-m", "imgcore", "--root", str(root), *args], capture_output=True,
                       env=env, timeout=120, check=False, input=input)  # fmt: skip
    out = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                      r.stderr.decode(errors="replace"))  # fmt: skip
    assert r.returncode == 0, f"imgcore {' '.join(args)}: {r.returncode}\n{out.stderr}"
    return out


def test_no_host_helper_runs_with_the_images_path_or_preload(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("runc containers need root (the CI job runs as root)")
        pytest.skip("runc containers need root here")
    require_tool("runc")
    marker = tmp_path / "MARKER"
    rootfs = _evil_rootfs(tmp_path, marker)
    root = tmp_path / "store"
    store = imgcore.Store(root)
    probe = store.import_rootfs(rootfs, "probe:1")
    cache = LayerCache(store.content)
    layer_dir = cache.layer_dir(cache.check(resolve(store.content, "probe:1"))[-1]) / "diff"
    baseline = root / "imgcore" / "rootfs" / cache.baseline_key(resolve(store.content, "probe:1")) / "rootfs"
    evil_path = f"{layer_dir}/evil/bin:{baseline}/evil/bin:/bin"
    preload = f"{layer_dir}/evil/lib/evil.so"
    store.import_rootfs(rootfs, "evil:1", changes=[f"ENV PATH={evil_path}", f"ENV LD_PRELOAD={preload}",
                                                   'CMD ["sleep", "1000"]'])  # fmt: skip
    assert resolve(store.content, "evil:1").config.diff_ids == probe.config.diff_ids  # same layer, same dirs

    ic(root, "create", "--name", "ovl", "evil:1")
    ic(root, "create", "--driver", "copy", "--name", "cpy", "evil:1")
    assert (layer_dir / "evil" / "bin" / "mount").is_file()
    assert (baseline / "evil" / "bin" / "mount").is_file()
    image_env = {"PATH": evil_path, "LD_PRELOAD": preload}
    subprocess.run(["mount"], env=image_env, capture_output=True, check=False)  # the trap works:
    subprocess.run(["/usr/bin/true"], env=image_env, capture_output=True, check=False)
    armed = marker.read_text()
    assert "ran on the host with the image's PATH" in armed
    assert "LD_PRELOAD ran on the host" in armed
    marker.unlink()

    store.container("cpy").exec(["sh", "-c", "echo from the chroot > /tmp/x"])  # never started: chroot fallback
    ic(root, "start", "ovl")
    ic(root, "exec", "ovl", "sh", "-c", "echo hi > /tmp/changed")
    ic(root, "run", "--rm", "evil:1", "sh", "-c", "echo ran")
    ic(root, "diff", "ovl")
    ic(root, "commit", "ovl", "evil:2")
    ic(root, "cp", "ovl:/etc/passwd", str(tmp_path / "passwd"))
    (tmp_path / "in.txt").write_text("to the container\n")
    ic(root, "cp", str(tmp_path / "in.txt"), "ovl:/tmp/")
    ic(root, "cp", str(tmp_path / "in.txt"), "cpy:/tmp/")
    ic(root, "export", "-o", str(tmp_path / "ovl.tar"), "ovl")
    ic(root, "export", "-o", str(tmp_path / "cpy.tar"), "cpy")
    ic(root, "commit", "cpy", "evil:3")
    ic(root, "stop", "-t", "1", "ovl")
    ic(root, "rm", "-f", "ovl", "cpy")
    ic(root, "rmi", "evil:2", "evil:3")
    assert (tmp_path / "passwd").read_bytes().startswith(b"root:x:0:0")
    assert not marker.exists(), f"a host helper ran the image's program: {marker.read_text()}"
