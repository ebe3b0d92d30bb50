"""Registry-to-registry benchmark: ``imgcore copy`` and ``imgcore sync`` against skopeo on loopback docker-registry.

One command, one table::

    python benches/bench_copy.py [--runs 3]

It starts Debian's docker-registry on free loopback ports (plain HTTP, storage in a temp dir) and pushes, with
skopeo, the corpus's two-layer app image (/tmp/imgcore-corpus/oci:app, 186 MB) when the corpus is built, or else a
generated four-layer image of about 100 MB (incompressible data, so the bytes on the wire are the image's).
Then, best of ``--runs`` (imgcore and the other tool taking turns), each command a fresh process as a user
would run it:

1. copy between two repositories of one registry, each run to a fresh repository: ``imgcore copy`` against
   ``skopeo copy docker:// docker://``. Both mount the blobs cross-repository (skopeo learns where blobs live
   from its blob-info cache), so this measures what a user gets, manifests and round trips included;
2. copy to a second registry, started fresh for every run (nothing to mount, no cache to reuse): every byte streams
   from one registry into the other;
3. a sync of 200 unchanged tags: ``imgcore sync`` against ``skopeo sync --src docker --dest docker``, both run
   once beforehand so that nothing has changed when timed.

Every imgcore result is checked (the destination's digest is the source's) before its time counts.
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
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pull import ENV, LAYOUT, best, registry, sh

SYNC_TAGS = 200


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(dest: Path, layers: int = 4, layer_mb: int = 25) -> tuple[Path, str, int]:
    """An OCI layout with image ``app``: ``layers`` gzip layers of ``layer_mb`` MB of seeded random bytes each."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    rnd = random.Random(7)
    descs, diff_ids, total = [], [], 0
    for n in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for i in range(layer_mb):
                data = rnd.randbytes(1 << 20)
                info = tarfile.TarInfo(f"layer{n}/file{i:03d}.bin")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tf.addfile(info, io.BytesIO(data))
        tar = buf.getvalue()
        gz = gzip.compress(tar, compresslevel=1, mtime=0)
        (blobs / _sha(gz).split(":", 1)[1]).write_bytes(gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _sha(gz), "size": len(gz)})
        diff_ids.append(_sha(tar))
        total += len(gz)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "config": {}}).encode()  # fmt: skip
    (blobs / _sha(config).split(":", 1)[1]).write_bytes(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha(config),
                   "size": len(config)},
        "layers": descs,
    }).encode()  # fmt: skip
    (blobs / _sha(manifest).split(":", 1)[1]).write_bytes(manifest)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _sha(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "app"}}]}))  # fmt: skip
    return dest, _sha(manifest), total


Step = Callable[[], None]


def duel(runs: int, setup: Step, mine: Step, theirs: Step, check: Step) -> tuple[float, float]:
    """Best of ``runs`` for each, the two taking turns, so that a machine whose load comes and goes (other
    jobs on a shared host) weighs on both alike."""
    a = b = float("inf")
    for _ in range(runs):
        a = min(a, best(1, setup, mine, check))
        b = min(b, best(1, setup, theirs, check))
    return a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="scratch directory (default: a temp dir under /tmp)")
    ap.add_argument("--generated", action="store_true", help="use the generated image even if the corpus is built")
    args = ap.parse_args()
    for tool in ("skopeo", "/usr/bin/docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required")

    import imgcore
    from imgcore.transfer import remote

    sh(sys.executable, "-m", "compileall", "-q", Path(imgcore.__file__).parent)
    tmp = Path(tempfile.mkdtemp(prefix="bench-copy-", dir=args.tmp))
    py = [sys.executable, "-m", "imgcore"]
    rows: list[tuple[str, float, float, str]] = []
    counter = iter(range(1_000_000))
    try:
        if (LAYOUT / "index.json").exists() and not args.generated:
            layout, tag = LAYOUT, "app"
            index = json.loads((LAYOUT / "index.json").read_text())
            digest = next(m["digest"] for m in index["manifests"]
                          if m["annotations"]["org.opencontainers.image.ref.name"] == "app")  # fmt: skip
            what = "corpus app image (186 MB, 2 layers)"
            mb = 186.0
        else:
            layout, digest, size = make_image(tmp / "layout")
            tag, mb = "app", size / 1e6
            what = f"generated image ({mb:.0f} MB, 4 layers)"
        with contextlib.ExitStack() as stack:
            (tmp / "a").mkdir()
            host = stack.enter_context(registry(tmp / "a"))
            sh("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
               f"docker://{host}/src/app:latest")  # fmt: skip
            clients = stack.enter_context(remote.Clients())
            src = f"{host}/src/app:latest"
            skopeo = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"]
            where: dict[str, str] = {}

            def fresh(registry_host: str) -> Callable[[], None]:
                def setup() -> None:
                    where["dst"] = f"{registry_host}/dst{next(counter)}/app:latest"

                return setup

            def check() -> None:
                got = remote.digest(where["dst"], clients)
                if got != digest:
                    raise SystemExit(f"copy wrote {got}, expected {digest}")

            def copy_imgcore() -> None:
                sh(*py, "copy", "-q", src, where["dst"])

            def copy_skopeo() -> None:
                sh(*skopeo, f"docker://{src}", f"docker://{where['dst']}")

            t_mine, t_skopeo = duel(args.runs, fresh(host), copy_imgcore, copy_skopeo, check)
            rows.append((f"copy in one registry (mounts), {what}", t_mine, t_skopeo, "skopeo copy docker:// docker://"))

            # The same through the library, in this process: what is left once the interpreter is up.
            from imgcore.transfer import copy as copying

            def lib_copy() -> None:
                copying.copy(src, where["dst"], clients=clients)

            t_lib = best(args.runs, fresh(host), lib_copy, check)
            rows.append(("  same, imgcore.transfer.copy.copy() in-process", t_lib, t_skopeo, "skopeo copy"))

            # Two registries: the second started fresh for every run, so nothing can be mounted or remembered.
            second: dict[str, contextlib.ExitStack] = {}

            def fresh_registry() -> None:
                if "stack" in second:
                    second.pop("stack").close()
                s = contextlib.ExitStack()
                d = tmp / f"b{next(counter)}"
                d.mkdir()
                h = s.enter_context(registry(d))
                second["stack"] = s
                where["dst"] = f"{h}/dst/app:latest"

            try:
                t2_mine, t2_skopeo = duel(args.runs, fresh_registry, copy_imgcore, copy_skopeo, check)
            finally:
                if "stack" in second:
                    second.pop("stack").close()
            rows.append((f"copy to another registry (streamed), {what}", t2_mine, t2_skopeo,
                         "skopeo copy docker:// docker://"))  # fmt: skip

            # Sync of 200 unchanged tags: the same small image under 200 tags.
            small = tmp / "small"
            small_layout, _, _ = make_image(small, layers=2, layer_mb=1)
            sh("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{small_layout}:app",
               f"docker://{host}/sync/app:t000")  # fmt: skip
            c = clients.get(host)
            m = c.get_manifest("sync/app", "t000")
            for i in range(1, SYNC_TAGS):
                c.put_manifest("sync/app", f"t{i:03d}", m.raw, m.media_type)
            mine = [*py, "sync", "-q", f"{host}/sync/app", f"{host}/mirror/app"]
            theirs = ["skopeo", "sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
                      "--dest-tls-verify=false", f"{host}/sync/app", f"{host}/skopeo-mirror"]  # fmt: skip
            sh(*mine)
            subprocess.run(theirs, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)

            def nothing() -> None:
                pass

            def check_sync() -> None:
                out = subprocess.run(mine, capture_output=True, text=True, env=ENV, check=True).stdout
                if f"0 copied, {SYNC_TAGS} unchanged" not in out:
                    raise SystemExit(f"sync did not find the tags unchanged: {out}")

            check_sync()

            def sync_skopeo() -> None:
                subprocess.run(theirs, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)

            t3_mine, t3_skopeo = duel(args.runs, nothing, lambda: sh(*mine), sync_skopeo, nothing)
            rows.append((f"sync of {SYNC_TAGS} unchanged tags", t3_mine, t3_skopeo, "skopeo sync --src/--dest docker"))
            from imgcore.transfer import sync as syncing

            def lib_sync() -> None:
                if len(syncing.sync(f"{host}/sync/app", f"{host}/mirror/app", clients=clients).unchanged) != SYNC_TAGS:
                    raise SystemExit("sync did not find the tags unchanged")

            t3_lib = best(args.runs, nothing, lib_sync, nothing)
            rows.append(("  same, imgcore.transfer.sync.sync() in-process", t3_lib, t3_skopeo, "skopeo sync"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nbench_copy: best of {args.runs}, loopback docker-registry, {os.cpu_count()} CPUs")
    print(f"{'case':<62} {'imgcore':>9} {'other':>9} {'speed-up':>9}  other tool")
    for name, mine_t, other, tool in rows:
        rate = f"  ({mb / mine_t:.0f} MB/s)" if name.startswith("copy to another") else ""
        print(f"{name:<62} {mine_t:>8.2f}s {other:>8.2f}s {other / mine_t:>8.2f}x  {tool}{rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
