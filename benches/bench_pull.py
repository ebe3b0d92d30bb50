"""Pull benchmark: imgcore against skopeo (and skopeo + umoci unpack) from a loopback docker-registry.

One command, one table::

    python benches/bench_pull.py [--runs 3] [--jobs 3]

It starts Debian's docker-registry on a free loopback port (plain HTTP, storage in a temp dir), pushes the corpus's
two-layer app image (/tmp/imgcore-corpus/oci:app, 186 MB) with skopeo, builds a second image that shares the base
layer (base + a new 32 MB layer) and pushes it too, then times, best of ``--runs``:

1. ``imgcore pull`` into an empty store vs ``skopeo copy docker://... oci:<empty dir>:app``;
2. ``imgcore pull --unpack`` vs ``skopeo copy`` followed by ``umoci unpack`` (needs ``imgcore.extract_layer``);
3. the second image into a store/layout that already has the app image (only the new layer moves).

Each command is a fresh process, as a user would run it. The result of every imgcore run is checked (manifest
digest, every blob re-hashed) before its time counts.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import journaled_ext4

CORPUS = Path("/tmp/imgcore-corpus")
LAYOUT = CORPUS / "oci"


# NOTE: a normal install has byte-compiled modules; this workplace sets PYTHONDONTWRITEBYTECODE, which would make
# every imgcore run recompile its modules (about 35 ms). The benchmark byte-compiles imgcore first and lets it cache.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def sh(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> None:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env or ENV, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}")


@contextlib.contextmanager
def registry(tmp: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp / "registry.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp / 'registry-data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_second_image(dest: Path) -> tuple[Path, str]:
    """An OCI layout with image ``app2``: the corpus's base layer plus a new deterministic 32 MB layer."""
    shutil.copytree(LAYOUT, dest, copy_function=os.link)
    index = json.loads((LAYOUT / "index.json").read_text())
    base_desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "base")
    base = json.loads(_blob(LAYOUT, base_desc["digest"]).read_bytes())
    config = json.loads(_blob(LAYOUT, base["config"]["digest"]).read_bytes())
    rnd = random.Random(42)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(64):
            data = rnd.randbytes(256 * 1024) + bytes(256 * 1024)
            info = tarfile.TarInfo(f"srv/app2/file{i:03d}.bin")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    tar = buf.getvalue()
    gz = gzip.compress(tar, compresslevel=6, mtime=0)
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _sha(gz), "size": len(gz)}
    _blob(dest, layer["digest"]).write_bytes(gz)
    config["rootfs"]["diff_ids"] = [*config["rootfs"]["diff_ids"], _sha(tar)]
    config["history"] = [*config.get("history", []), {"created_by": "bench second image"}]
    cfg_raw = json.dumps(config).encode()
    _blob(dest, _sha(cfg_raw)).write_bytes(cfg_raw)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha(cfg_raw),
                   "size": len(cfg_raw)},
        "layers": [*base["layers"], layer],
    }  # fmt: skip
    m_raw = json.dumps(manifest).encode()
    _blob(dest, _sha(m_raw)).write_bytes(m_raw)
    index["manifests"].append({"mediaType": manifest["mediaType"], "digest": _sha(m_raw), "size": len(m_raw),
                               "annotations": {"org.opencontainers.image.ref.name": "app2"}})  # fmt: skip
    (dest / "index.json").write_text(json.dumps(index))
    return dest, _sha(m_raw)


def best(runs: int, setup: Callable[[], None], fn: Callable[[], None], check: Callable[[], None]) -> float:
    times = []
    for _ in range(runs):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        check()
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="scratch directory (default: a temp dir under /tmp)")
    ap.add_argument("--no-ext4", action="store_true", help="write to --tmp as it is, not to a journaled ext4")
    args = ap.parse_args()
    for tool in ("skopeo", "umoci", "/usr/bin/docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required")
    if not (LAYOUT / "index.json").exists():
        raise SystemExit(f"{LAYOUT} is missing: build the corpus first (shared/corpus/make_corpus.sh)")

    import imgcore
    from imgcore.image import catalog
    from imgcore.store import ContentStore

    has_extract = hasattr(imgcore, "extract_layer")
    sh(sys.executable, "-m", "compileall", "-q", Path(imgcore.__file__).parent)
    tmp = Path(tempfile.mkdtemp(prefix="bench-pull-", dir=args.tmp))
    py = [sys.executable, "-m", "imgcore"]
    rows: list[tuple[str, float, float | None, str]] = []
    try:
        with contextlib.ExitStack() as stack, registry(tmp) as host:
            flags = ["--dest-tls-verify=false"]
            sh("skopeo", "copy", "--quiet", *flags, f"oci:{LAYOUT}:app", f"docker://{host}/corpus/app:latest")
            layout2, app2_digest = make_second_image(tmp / "layout2")
            sh("skopeo", "copy", "--quiet", *flags, f"oci:{layout2}:app2", f"docker://{host}/corpus/app2:latest")
            index = json.loads((LAYOUT / "index.json").read_text())
            app_digest = next(m["digest"] for m in index["manifests"]
                              if m["annotations"]["org.opencontainers.image.ref.name"] == "app")  # fmt: skip
            ref, ref2 = f"{host}/corpus/app:latest", f"{host}/corpus/app2:latest"
            work, fs_note = tmp, f"directory {tmp} (root filesystem)"
            if os.geteuid() == 0 and shutil.which("mkfs.ext4") and not args.no_ext4:
                work, fs_note = stack.enter_context(journaled_ext4(tmp / "fs", 6))
            print(f"stores, skopeo's layout and bundles on: {fs_note}")
            store_dir, oci_dir, bundle = work / "store", work / "skopeo-oci", work / "bundle"

            def clean() -> None:
                for p in (store_dir, oci_dir, bundle):
                    shutil.rmtree(p, ignore_errors=True)

            def check_store(digest: str) -> Callable[[], None]:
                def check() -> None:
                    store = ContentStore(store_dir)
                    got = catalog.resolve(store, ref if digest == app_digest else ref2).digest
                    if got != digest or store.fsck():
                        raise SystemExit(f"imgcore pull produced a wrong store: {got} {store.fsck()}")

                return check

            def nothing() -> None:
                pass

            pull = [*py, "--root", str(store_dir), "pull", "-q", "-j", str(args.jobs)]
            skopeo = ["skopeo", "copy", "--quiet", "--src-tls-verify=false"]
            t_imgcore = best(args.runs, clean, lambda: sh(*pull, ref), check_store(app_digest))
            t_skopeo = best(args.runs, clean, lambda: sh(*skopeo, f"docker://{ref}", f"oci:{oci_dir}:app"), nothing)
            rows.append(("pull app (186 MB, 2 layers) into empty store", t_imgcore, t_skopeo, "skopeo copy"))

            def skopeo_umoci() -> None:
                sh(*skopeo, f"docker://{ref}", f"oci:{oci_dir}:app")
                sh("umoci", "unpack", "--rootless", "--image", f"{oci_dir}:app", bundle)

            t_su = best(args.runs, clean, skopeo_umoci, nothing)
            if has_extract:
                t_unpack = best(args.runs, clean, lambda: sh(*pull, "--unpack", ref), check_store(app_digest))
                rows.append(("pull --unpack app", t_unpack, t_su, "skopeo copy + umoci unpack"))
            else:
                rows.append(("pull --unpack app (no imgcore.extract_layer yet)", float("nan"), t_su,
                             "skopeo copy + umoci unpack"))  # fmt: skip

            def prime() -> None:
                clean()
                sh(*pull, ref)
                sh(*skopeo, f"docker://{ref}", f"oci:{oci_dir}:app")

            t2_imgcore = best(args.runs, prime, lambda: sh(*pull, ref2), check_store(app2_digest))
            t2_skopeo = best(args.runs, prime, lambda: sh(*skopeo, f"docker://{ref2}", f"oci:{oci_dir}:app2"), nothing)
            rows.append(("second image sharing the base layer (+32 MB layer)", t2_imgcore, t2_skopeo, "skopeo copy"))

            # The same through the library, in this process: what is left once the interpreter is up.
            from imgcore.transfer import pull as pulling

            def lib_pull() -> None:
                pulling.pull(ref2, store=ContentStore(store_dir), jobs=args.jobs)

            t2_lib = best(args.runs, prime, lib_pull, check_store(app2_digest))
            rows.append(("  same, imgcore.transfer.pull.pull() in-process", t2_lib, t2_skopeo, "skopeo copy"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nbench_pull: best of {args.runs}, loopback docker-registry, -j {args.jobs}")
    print(f"{'case':<52} {'imgcore':>9} {'other':>9} {'speed-up':>9}  other tool")
    for name, mine, other, tool in rows:
        ratio = other / mine if other and mine == mine else float("nan")
        mb = 186.0 / mine if "186" in name and mine == mine else None
        extra = f"  ({mb:.0f} MB/s)" if mb else ""
        print(f"{name:<52} {mine:>8.2f}s {other:>8.2f}s {ratio:>8.2f}x  {tool}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
