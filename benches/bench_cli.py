"""CLI start-up and pull benchmark (issue 8 items 5 and 6): the commands as a user types them, each a fresh process.

One command, one table::

    python benches/bench_cli.py [--runs 7] [--images 1000] [--jobs 3] [--no-ext4]

Cases, best of ``--runs``:

1. ``imgcore --version`` against ``python3 -c pass`` (target: within 20 ms);
2. ``imgcore images`` on a store of ``--images`` images against ``python3 -c pass`` (target: within 150 ms);
3. ``imgcore pull`` of a second image whose base layer is already stored against ``skopeo copy docker://...
   oci:...`` into a layout that has the first image, on a loopback docker-registry (target: >= 1.2x skopeo).

Everything is generated here (no corpus needed): a base layer of 48 MiB of files (half random, half zeros) and a
second image with the same base plus a new 32 MiB layer, as bench_pull's second image. After the table, the
imports that ``--version`` and ``images`` pay for, from ``python3 -X importtime`` (cumulative, best of 5 runs).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import journaled_ext4
from bench_pull import ENV, registry, sh

PY = sys.executable


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(seed: int, files: int, prefix: str) -> tuple[bytes, bytes]:
    rnd = random.Random(seed)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(files):
            data = rnd.randbytes(256 * 1024) + bytes(256 * 1024)
            info = tarfile.TarInfo(f"{prefix}/file{i:03d}.bin")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    tar = buf.getvalue()
    return tar, gzip.compress(tar, compresslevel=1, mtime=0)


def make_layout(dest: Path) -> None:
    """An OCI layout with ``app`` (one 48 MiB base layer) and ``app2`` (the same base plus a 32 MiB layer)."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        d = _sha(data)
        (blobs / d.split(":", 1)[1]).write_bytes(data)
        return {"digest": d, "size": len(data)}

    gz_type = "application/vnd.oci.image.layer.v1.tar+gzip"
    base_tar, base_gz = _layer(1, 96, "usr/lib/base")
    new_tar, new_gz = _layer(2, 64, "srv/app2")
    base = {"mediaType": gz_type, **put(base_gz)}
    new = {"mediaType": gz_type, **put(new_gz)}
    manifests = []
    for tag, layers, diff_ids in (
        ("app", [base], [_sha(base_tar)]),
        ("app2", [base, new], [_sha(base_tar), _sha(new_tar)]),
    ):
        config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "history": [{"created_by": f"bench layer {i}"} for i in range(len(layers))]}  # fmt: skip
        cfg = {"mediaType": "application/vnd.oci.image.config.v1+json", **put(json.dumps(config).encode())}
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": cfg, "layers": layers}  # fmt: skip
        m = put(json.dumps(manifest).encode())
        manifests.append({"mediaType": manifest["mediaType"], **m,
                          "annotations": {"org.opencontainers.image.ref.name": tag}})  # fmt: skip
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def best(runs: int, fn: Callable[[], None], setup: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(runs):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def importtime(args: list[str], top: int = 14) -> list[tuple[str, float, float]]:
    """``(module, self ms, cumulative ms)`` of the costliest imports after ``site``, best of 5 runs each."""
    best_cum: dict[str, tuple[float, float]] = {}
    for _ in range(5):
        r = subprocess.run([PY, "-X", "importtime", *args], capture_output=True, text=True, env=ENV, check=False)
        after_site = False
        for line in r.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
            if not m:
                continue
            name, self_us, cum_us, depth = m.group(4), int(m.group(1)), int(m.group(2)), len(m.group(3))
            if name == "site" and depth == 0:
                after_site = True
                continue
            if not after_site:
                continue
            key = f"{'  ' * (depth // 2)}{name}"
            old = best_cum.get(key)
            if old is None or cum_us < old[1] * 1000:
                best_cum[key] = (self_us / 1000, cum_us / 1000)
    rows = sorted(((k, s, c) for k, (s, c) in best_cum.items()), key=lambda x: -x[2])
    return rows[:top]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--no-ext4", action="store_true", help="write stores to --tmp as it is, not a journaled ext4")
    ap.add_argument("--skip-pull", action="store_true")
    args = ap.parse_args()

    from tests.images_helpers import make_image

    import imgcore
    from imgcore.image import catalog
    from imgcore.store import ContentStore

    sh(PY, "-m", "compileall", "-q", Path(imgcore.__file__).parent)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-", dir=args.tmp))
    py = [PY, "-m", "imgcore"]
    rows: list[tuple[str, float, float, str, str]] = []  # case, imgcore s, other s, other, target
    try:
        t_pass = best(args.runs * 2, lambda: sh(PY, "-c", "pass"))
        t_ver = best(args.runs * 2, lambda: sh(*py, "--version"))
        rows.append(("imgcore --version", t_ver, t_pass, "python3 -c pass", "within 20 ms"))

        store = ContentStore(tmp / "many")
        t0 = time.perf_counter()
        base = make_image(store, "base:1", {f"usr/lib/f{i}": bytes([i % 256]) * 4096 for i in range(20)})
        for i in range(args.images - 1):
            make_image(store, f"app{i}:1", {f"app/{i}": str(i).encode() * 10}, parent=base)
        build = time.perf_counter() - t0
        listing = subprocess.run([*py, "--root", str(store.root), "images"], capture_output=True, text=True,
                                 env=ENV, check=True).stdout.splitlines()  # fmt: skip
        assert len(listing) == args.images + 1, f"imgcore images listed {len(listing) - 1} images"
        t_img = best(args.runs, lambda: sh(*py, "--root", str(store.root), "images"))
        rows.append((f"imgcore images ({args.images} images)", t_img, t_pass, "python3 -c pass", "within 150 ms"))

        if not args.skip_pull:
            for tool in ("skopeo", "/usr/bin/docker-registry"):
                if not shutil.which(tool):
                    raise SystemExit(f"{tool} is required (or pass --skip-pull)")
            with contextlib.ExitStack() as stack, registry(tmp) as host:
                layout = tmp / "layout"
                make_layout(layout)
                flags = ["--dest-tls-verify=false"]
                sh("skopeo", "copy", "--quiet", *flags, f"oci:{layout}:app", f"docker://{host}/bench/app:latest")
                sh("skopeo", "copy", "--quiet", *flags, f"oci:{layout}:app2", f"docker://{host}/bench/app2:latest")
                ref, ref2 = f"{host}/bench/app:latest", f"{host}/bench/app2:latest"
                work = tmp
                if os.geteuid() == 0 and shutil.which("mkfs.ext4") and not args.no_ext4:
                    work, _ = stack.enter_context(journaled_ext4(tmp / "fs", 2))
                store_dir, oci_dir = work / "store", work / "skopeo-oci"
                pull = [*py, "--root", str(store_dir), "pull", "-q", "-j", str(args.jobs)]
                skopeo = ["skopeo", "copy", "--quiet", "--src-tls-verify=false"]

                def prime() -> None:
                    for p in (store_dir, oci_dir):
                        shutil.rmtree(p, ignore_errors=True)
                    sh(*pull, ref)
                    sh(*skopeo, f"docker://{ref}", f"oci:{oci_dir}:app")

                prime()
                sh(*pull, ref2)
                want = json.loads((layout / "index.json").read_text())["manifests"][1]["digest"]
                got = catalog.resolve(ContentStore(store_dir), ref2).digest
                assert got == want, f"imgcore pull stored {got}, expected {want}"
                assert not ContentStore(store_dir).fsck()
                t_pull = best(args.runs, lambda: sh(*pull, ref2), prime)
                t_sko = best(args.runs, lambda: sh(*skopeo, f"docker://{ref2}", f"oci:{oci_dir}:app2"), prime)
                rows.append(("pull 2nd image, base stored (+32 MiB layer)", t_pull, t_sko, "skopeo copy", ">= 1.2x"))
        ver_imports = importtime(["-m", "imgcore", "--version"])
        img_imports = importtime(["-m", "imgcore", "--root", str(store.root), "images"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nbench_cli: best of {args.runs} (start-up cases {args.runs * 2}), {os.cpu_count()} cores; "
          f"store of {args.images} images built in {build:.0f} s")  # fmt: skip
    print(f"{'case':<46} {'imgcore':>9} {'other':>9} {'ratio':>7} {'delta':>9}  {'other':<16} target")
    for name, mine, other, tool, target in rows:
        ratio, delta = other / mine, (mine - other) * 1000
        met = (delta <= 20) if "20 ms" in target else (delta <= 150) if "150" in target else ratio >= 1.2
        print(f"{name:<46} {mine:>8.3f}s {other:>8.3f}s {ratio:>6.2f}x {delta:>+7.0f}ms  {tool:<16} {target}"
              f" {'(met)' if met else '(NOT met)'}")  # fmt: skip
    for title, table in (("imgcore --version", ver_imports), (f"imgcore images ({args.images})", img_imports)):
        print(f"\nimports after site for `{title}` (python3 -X importtime, best of 5; ms self / cumulative):")
        for name, self_ms, cum_ms in table:
            print(f"  {self_ms:6.1f} {cum_ms:7.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
