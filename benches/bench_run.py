"""Containers that run: ``imgcore run --rm`` and ``commit`` of a running container, in one run, against bare runc
and podman (Debian's, with runc, cgroupfs and vfs storage, on the same busybox image).

1. ``imgcore run --rm IMAGE sh -c :`` against ``runc run`` on a ready bundle (the floor: what any runtime-based
   tool pays) and against ``podman run --rm`` (target: at most 150 ms over runc, and faster than podman);
2. ``imgcore commit`` of a running container with a small change against ``podman commit`` (target: faster).

Run as root: ``python benches/bench_run.py [--runs 7]``. Needs runc and podman (``apt-get install podman``).
podman is given ``--ulimit nofile=N:N`` (this machine's hard limit) and ``nproc=4096:4096``: its defaults are refused
here, where root has no CAP_SYS_RESOURCE.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PY = sys.executable
CMD = ["sh", "-c", ":"]


def best(runs: int, fn: Callable[[], object]) -> float:
    out = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return out


def sh(*cmd: str | Path, capture: bool = False) -> str:
    r = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True)
    return r.stdout if capture else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_run needs root (runc)")
    for tool in ("runc", "podman"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required (apt-get install -y {tool})")

    from imgcore.demo import _base_rootfs_tar
    from imgcore.runtime.spec import RunOptions, build_spec, write_bundle

    tmp = Path(tempfile.mkdtemp(prefix="bench-run-", dir=args.tmp))
    root = tmp / "store"
    ic = [PY, "-m", "imgcore", "--root", str(root)]
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limits = ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]
    podman = ["podman", "--root", str(tmp / "podman"), "--runroot", str(tmp / "podman-run"), "--storage-driver",
              "vfs", "--cgroup-manager", "cgroupfs", "--runtime", shutil.which("runc") or "runc",
              "--events-backend", "none"]  # fmt: skip
    prun = [*podman, "run", "--rm", "--network", "none", *limits]
    rows: list[tuple[str, float, float, str, str]] = []
    try:
        rootfs_tar = tmp / "rootfs.tar.gz"
        _base_rootfs_tar(rootfs_tar)
        sh(*ic, "import", rootfs_tar, "mini:1")
        sh(*podman, "import", rootfs_tar, "mini:1")
        # A ready bundle for bare runc: the same rootfs, extracted, with imgcore's spec.
        bundle_root = tmp / "bundle-rootfs"
        bundle_root.mkdir()
        sh("tar", "-xzf", rootfs_tar, "-C", bundle_root)
        cfg = json.loads(sh(*ic, "inspect", "-f", "{{json .}}", "mini:1", capture=True))
        spec = build_spec({"config": cfg.get("Config") or {}}, bundle_root,
                          RunOptions(argv=tuple(CMD), container_id="benchrunc", network="none"))  # fmt: skip
        cdir = tmp / "cdir"
        cdir.mkdir()
        bundle = write_bundle(cdir, spec)
        runc_root = tmp / "runc-root"

        def bare() -> None:
            sh("runc", "--root", runc_root, "run", "--bundle", bundle, "benchrunc")

        def imgcore_run() -> None:
            sh(*ic, "run", "--rm", "--network", "none", "mini:1", *CMD)

        def podman_run() -> None:
            sh(*prun, "mini:1", *CMD)

        for warm in (bare, imgcore_run, podman_run):
            warm()
        t_runc = best(args.runs, bare)
        t_ic = best(args.runs, imgcore_run)
        t_pm = best(args.runs, podman_run)
        rows.append(("run --rm IMAGE sh -c :", t_ic, t_runc, "runc run (ready bundle)", "<= +150 ms"))
        rows.append(("run --rm IMAGE sh -c :", t_ic, t_pm, "podman run --rm", "faster"))

        # commit of a running container with a small change
        def ic_commit_round(i: int) -> float:
            cid = sh(*ic, "run", "-d", "--network", "none", "mini:1", "sleep", "1000", capture=True).strip()
            sh(*ic, "exec", cid, "sh", "-c", f"echo {i} > /root/changed")
            t0 = time.perf_counter()
            sh(*ic, "commit", cid, f"snap:{i}")
            dt = time.perf_counter() - t0
            sh(*ic, "rm", "-f", cid)
            return dt

        def pm_commit_round(i: int) -> float:
            cid = sh(
                *podman, "run", "-d", "--network", "none", *limits, "mini:1", "sleep", "1000", capture=True
            ).strip()
            sh(*podman, "exec", cid, "sh", "-c", f"echo {i} > /root/changed")
            t0 = time.perf_counter()
            sh(*podman, "commit", "-q", cid, f"snap:{i}")
            dt = time.perf_counter() - t0
            sh(*podman, "rm", "-f", "-t", "0", cid)
            return dt

        t_icc = min(ic_commit_round(i) for i in range(args.runs))
        t_pmc = min(pm_commit_round(i) for i in range(args.runs))
        rows.append(("commit of a running container (+1 file)", t_icc, t_pmc, "podman commit", "faster"))
    finally:
        subprocess.run([*podman, "rm", "-a", "-f"], capture_output=True, check=False)
        subprocess.run(["runc", "--root", str(tmp / "runc-root"), "delete", "-f", "benchrunc"], capture_output=True,
                       check=False)  # fmt: skip
        left = subprocess.run([*ic, "ps", "-a", "-q"], capture_output=True, text=True, check=False).stdout.split()
        for cid in left:
            subprocess.run([*ic, "rm", "-f", cid], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n## containers that run (best of {args.runs}; load average {os.getloadavg()[0]:.1f})")
    print(f"{'case':44} {'imgcore':>9} {'other':>9}  {'ratio':>7}  {'difference':>10}  other / target")
    for case, ours, other, what, target in rows:
        print(f"{case:44} {ours:9.3f} {other:9.3f}  {other / ours:6.2f}x  {1000 * (ours - other):+8.0f} ms  "
              f"{what} / {target}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
