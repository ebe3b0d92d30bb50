"""Layer extraction benchmark (issue 3): imgcore against tarfile, GNU tar, umoci and the pure-Python twin.

One run prints one table. Cases on the corpus built by ../shared/corpus/make_corpus.sh (/tmp/imgcore-corpus):
app.tar.gz, app.tar.zst, the two-layer OCI image ``app``, and plain ``tar -xf app.tar`` as the filesystem's
floor. imgcore computes both the blob digest and the diff_id while extracting; the others compute nothing.

The target filesystem is a journaled ext4 image on a loop device (the machine's root filesystem has no journal,
where re-creating files after deleting a tree is several times slower); ``--tmpfs`` uses tmpfs instead, and
``--dir`` any directory. Each run extracts into a fresh directory; removal and ``sync`` happen between runs,
outside the timing; inputs are read from the page cache. Best of ``--repeat`` runs.

    python benches/bench_extract.py [--repeat 3] [--tmpfs | --dir DIR] [--no-pure]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imgcore
import imgcore.pure
from _common import journaled_ext4, sh

CORPUS = Path(os.environ.get("IMGCORE_CORPUS", "/tmp/imgcore-corpus"))


class Target:
    """A place to extract into: a loop-mounted journaled ext4 image, tmpfs, or a given directory."""

    def __init__(self, mode: str, path: str | None) -> None:
        self.mode = mode
        self.tmp = Path(tempfile.mkdtemp(prefix="imgcore-bench-"))
        self.mnt = self.tmp / "mnt"
        self.mnt.mkdir()
        if mode == "dir":
            assert path is not None
            self.mnt = Path(path)
            self.desc = f"directory {path}"
        elif mode == "tmpfs":
            sh("mount", "-t", "tmpfs", "-o", "size=6g", "tmpfs", str(self.mnt))
            self.desc = "tmpfs"
        else:
            self._fs = journaled_ext4(self.tmp, 6)
            self.mnt, self.desc = self._fs.__enter__()

    def fresh(self, name: str) -> Path:
        d = self.mnt / name
        if d.exists():
            shutil.rmtree(d)
        sh("sync")
        return d

    def close(self) -> None:
        if self.mode == "tmpfs":
            subprocess.run(["umount", str(self.mnt)], check=False)
        elif self.mode == "ext4":
            self._fs.__exit__(None, None, None)
        shutil.rmtree(self.tmp, ignore_errors=True)


def timed(target: Target, repeat: int, fn: Callable[[Path], object], mkdir: bool = True) -> float:
    best = float("inf")
    for _ in range(repeat):
        d = target.fresh("out")
        if mkdir:
            d.mkdir()
        t0 = time.perf_counter()
        fn(d)
        best = min(best, time.perf_counter() - t0)
    shutil.rmtree(target.mnt / "out", ignore_errors=True)
    return best


def oci_layers(ref: str) -> list[Path]:
    layout = CORPUS / "oci"
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref:
            manifest = json.loads((layout / "blobs" / "sha256" / m["digest"].split(":")[1]).read_text())
            return [layout / "blobs" / "sha256" / lay["digest"].split(":")[1] for lay in manifest["layers"]]
    raise SystemExit(f"no image {ref!r} in {layout}")


def tarfile_extract(src: Path, dest: Path) -> None:
    with tarfile.open(src) as tf:
        tf.extractall(dest, filter="tar")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmpfs", action="store_true")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--no-pure", action="store_true", help="skip the (slow) pure-Python twin")
    args = ap.parse_args()
    if not (CORPUS / "corpus-facts.txt").exists():
        raise SystemExit(f"{CORPUS} is not built (run ../shared/corpus/make_corpus.sh)")
    app_tar, app_gz, app_zst = CORPUS / "app.tar", CORPUS / "app.tar.gz", CORPUS / "app.tar.zst"
    layers = oci_layers("app")
    for p in [app_tar, app_gz, app_zst, *layers]:
        p.read_bytes()  # warm the page cache
    mb = app_tar.stat().st_size / 1e6
    # The two layers' uncompressed size, for MB/s.
    image_mb = sum(s.bytes for s in imgcore.unpack_layers(layers, tempfile.mkdtemp(prefix="imgcore-probe-"))) / 1e6

    load_before = os.getloadavg()[0]
    target = Target("dir" if args.dir else "tmpfs" if args.tmpfs else "ext4", args.dir)
    rows: list[tuple[str, str, float, float]] = []
    try:
        r = args.repeat

        def add(case: str, impl: str, seconds: float, mbytes: float) -> None:
            rows.append((case, impl, seconds, mbytes))
            print(f"  {case:<22} {impl:<34} {seconds:7.3f} s", file=sys.stderr, flush=True)

        # Correctness once before timing: imgcore's tree equals GNU tar's for app.tar.gz.
        d = target.fresh("check")
        d.mkdir()
        stats = imgcore.extract_layer(app_gz, d)
        assert stats.entries > 10_000, stats
        assert stats.compression == "gzip", stats

        add(
            "floor",
            "tar -xf app.tar (GNU, no gzip)",
            timed(target, r, lambda d: sh("tar", "-xf", str(app_tar), "-C", str(d))),
            mb,
        )
        add("app.tar.gz", "imgcore.extract_layer", timed(target, r, lambda d: imgcore.extract_layer(app_gz, d)), mb)
        add(
            "app.tar.gz", "tar -xzf (GNU)", timed(target, r, lambda d: sh("tar", "-xzf", str(app_gz), "-C", str(d))), mb
        )
        add(
            "app.tar.gz", "tarfile extractall(filter='tar')", timed(target, 1, lambda d: tarfile_extract(app_gz, d)), mb
        )
        if not args.no_pure:
            add(
                "app.tar.gz",
                "imgcore.pure.extract_layer",
                timed(target, 1, lambda d: imgcore.pure.extract_layer(app_gz, d)),
                mb,
            )
        add("app.tar.zst", "imgcore.extract_layer", timed(target, r, lambda d: imgcore.extract_layer(app_zst, d)), mb)
        add(
            "app.tar.zst",
            "tar --zstd -xf (GNU)",
            timed(target, r, lambda d: sh("tar", "--zstd", "-xf", str(app_zst), "-C", str(d))),
            mb,
        )
        add(
            "oci app (2 layers)",
            "imgcore.unpack_layers",
            timed(target, r, lambda d: imgcore.unpack_layers(layers, d)),
            image_mb,
        )
        if shutil.which("umoci"):
            umoci = ["umoci", "unpack", "--image", f"{CORPUS / 'oci'}:app"]
            if os.geteuid() != 0:
                umoci.append("--rootless")
            add(
                "oci app (2 layers)",
                "umoci unpack",
                timed(target, r, lambda d: sh(*umoci, str(d)), mkdir=False),
                image_mb,
            )
    finally:
        target.close()

    imgcore_time = {case: s for case, impl, s, _ in rows if impl.startswith("imgcore.") and "pure" not in impl}
    print(f"\n## Layer extraction (best of {args.repeat}; tarfile and the pure twin: 1 run)")
    print(f"target filesystem: {target.desc}; gzip inflate: {imgcore._core.gzip_backend()}; "
          f"imgcore also computes digest and diff_id")  # fmt: skip
    head = ["case", "implementation", "seconds", "MB/s", "imgcore is faster by"]
    cells = []
    for case, impl, s, mbytes in rows:
        ours = imgcore_time.get(case)
        ratio = (
            "-"
            if ours is None or impl.startswith("imgcore.extract") or impl.startswith("imgcore.unpack")
            else f"{s / ours:.2f}x"
        )
        cells.append([case, impl, f"{s:.3f}", f"{mbytes / s:,.0f}", ratio])
    widths = [max(len(x) for x in col) for col in zip(head, *cells, strict=False)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for c in cells:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))
    print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs")
    print("targets: app.tar.gz >= 2x GNU tar and >= 5x tarfile; app.tar.zst >= 1x tar --zstd; image >= 3x umoci unpack")


if __name__ == "__main__":
    main()
