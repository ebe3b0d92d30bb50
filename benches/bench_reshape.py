"""Reshape and move benchmark (issue 13): ``flatten`` and ``squash`` of the corpus app image against
``buildah commit --squash`` and the pure-Python twin; then the registry-side measurements (copy, sync).

The image is the corpus's two-layer ``app`` (../shared/corpus/make_corpus.sh builds /tmp/imgcore-corpus; base
layer 63 MB + app layer 123 MB gzip, 470 MB of files), loaded into a fresh imgcore store and into buildah's
storage (``--storage-driver vfs``), both on one journaled ext4 on a loop device (``--dir DIR`` for any
directory). Best of ``--repeat`` runs, each a full command line (``python -m imgcore ...``, ``buildah ...``):

- ``flatten`` / ``squash --last 1`` cold: the flattened rootfs cache (``imgcore/rootfs/``) removed before each
  run, so the time includes extracting both layers, writing the merged layer (gzip on all cores), the re-hash of
  every blob and diff_id, and the tag; warm: that cache kept (as after a ``create`` with the copy driver);
- ``buildah commit --squash``: on a working container made beforehand with ``buildah from`` (untimed; vfs copies
  the whole tree there, which imgcore's cold figure includes); ``buildah from + commit --squash`` is also shown;
- ``--compression zstd`` and ``none`` (cold): buildah's squashed layer is an uncompressed tar in its storage
  (``application/vnd.oci.image.layer.v1.tar``; it compresses on push), so ``none`` is the like-for-like figure;
  imgcore's default writes a gzip blob ready to push, and the compression is most of its time;
- the pure twin: ``imgcore.pure.unpack_layers`` + ``imgcore.pure.write_layer`` of the same layers (no store).

Target: flatten and squash faster than buildah (like for like: uncompressed). Needs root, Debian's ``buildah``
(``apt-get install buildah``; a bench dependency only, not CI's) and the corpus. Run:
``python benches/bench_reshape.py [--repeat 3]``.

The structure is a list of measurement functions run by :func:`main`; each gets the shared :class:`Bench` and
returns table rows. The registry-side section (``copy``, ``sync``) is marked below for its own functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imgcore
import imgcore.models
import imgcore.pure
from _common import Row, journaled_ext4, print_table

CORPUS = Path(os.environ.get("IMGCORE_CORPUS", "/tmp/imgcore-corpus"))
LAYOUT = CORPUS / "oci"
PY = sys.executable


@dataclass
class Bench:
    """What every measurement shares: the scratch directory, the loaded stores, the repeat count."""

    work: Path
    repeat: int
    store: Path
    buildah: list[str]
    mbytes: float
    notes: list[str] = field(default_factory=list)

    def ic(self, *args: str) -> str:
        r = subprocess.run([PY, "-m", "imgcore", "--root", str(self.store), *args], check=True, capture_output=True,
                           text=True)  # fmt: skip
        return r.stdout.strip()

    def best(self, run: Callable[[], object], before: Callable[[], object] | None = None) -> float:
        """Best of ``repeat`` runs of ``run``; ``before`` (untimed) prepares each one."""
        out = float("inf")
        for _ in range(self.repeat):
            if before is not None:
                before()
            subprocess.run(["sync"], check=False)
            t0 = time.perf_counter()
            run()
            out = min(out, time.perf_counter() - t0)
        return out


def _layers(store: imgcore.Store) -> list[imgcore.models.Descriptor]:
    return list(store.image("app").manifest.layers)


def _drop_rootfs_cache(b: Bench) -> None:
    cache = b.store / "imgcore" / "rootfs"
    for p in cache.iterdir() if cache.is_dir() else ():
        shutil.rmtree(p, ignore_errors=True)


def _tree_of_layer(blob: Path, dest: Path) -> dict[str, tuple[int, int]]:
    """path -> (mode, size) of a layer applied onto an empty directory (for the once-before-timing check)."""
    dest.mkdir()
    imgcore.extract_layer(blob, dest, allow_devices=True)
    out = {}
    for p in dest.rglob("*"):
        st = p.lstat()
        out[str(p.relative_to(dest))] = (st.st_mode, st.st_size if p.is_file() else 0)
    shutil.rmtree(dest)
    return out


# -- flatten and squash ---------------------------------------------------------------------------------------


def measure_flatten(b: Bench) -> list[Row]:
    """imgcore flatten (cold, warm) against buildah commit --squash and the pure twin."""
    # Asserted once before timing: the flattened layer is the image's merged tree (as `imgcore layer`s see it).
    flat_id = b.ic("flatten", "app", "-t", "app:flat")
    store = imgcore.Store(b.store)
    flat = store.image("app:flat")
    assert flat.id == flat_id
    assert len(flat.manifest.layers) == 1
    merged = {
        r[0]
        for r in imgcore.layer_index([store.content.blob_path(d.digest) for d in store.image("app").manifest.layers])
    }
    got = _tree_of_layer(store.content.blob_path(flat.manifest.layers[0].digest), b.work / "check")
    assert set(got) == merged, f"flatten lost {sorted(merged - set(got))[:5]}, added {sorted(set(got) - merged)[:5]}"
    case = "flatten app (2 layers -> 1)"
    theirs = _buildah_rows(b, case)
    ref = theirs[0].seconds if theirs else None
    rows = []
    cold = b.best(lambda: b.ic("flatten", "app", "-t", "app:flat"), lambda: _drop_rootfs_cache(b))
    rows.append(Row(case, "imgcore flatten, cold", cold, b.mbytes, ref))
    warm = b.best(lambda: b.ic("flatten", "app", "-t", "app:flat"))
    rows.append(Row(case, "imgcore flatten, rootfs cached", warm, b.mbytes, ref))
    # buildah keeps its layers uncompressed in its own storage; imgcore's store keeps compressed blobs
    for comp in ("zstd", "none"):
        t = b.best(lambda c=comp: b.ic("flatten", "app", "--compression", c), lambda: _drop_rootfs_cache(b))
        rows.append(Row(case, f"imgcore flatten --compression {comp}, cold", t, b.mbytes, ref))
    # determinism across runs and thread counts: the same image ID under one core
    pinned = subprocess.run(["taskset", "-c", "0", PY, "-m", "imgcore", "--root", str(b.store), "flatten", "app"],
                            check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert pinned == flat_id, "flatten on one core gave another image"
    return rows + theirs + [_pure_flatten(b, ref)]


def measure_squash(b: Bench) -> list[Row]:
    """imgcore squash --last 1 (the app layer alone, onto the kept base) and squash of everything."""
    b.ic("squash", "app", "--last", "1", "-t", "app:sq1")
    theirs = _buildah_rows(b, "squash app (everything)")
    ref = theirs[0].seconds if theirs else None
    rows = []
    t = b.best(lambda: b.ic("squash", "app", "--last", "1", "-t", "app:sq1"), lambda: _drop_rootfs_cache(b))
    rows.append(Row("squash app --last 1 (base kept)", "imgcore squash, cold", t, b.mbytes, ref))
    t = b.best(lambda: b.ic("squash", "app", "--last", "1", "--compression", "none"), lambda: _drop_rootfs_cache(b))
    rows.append(Row("squash app --last 1 (base kept)", "imgcore squash --compression none, cold", t, b.mbytes, ref))
    t_all = b.best(lambda: b.ic("squash", "app", "-t", "app:sqall"), lambda: _drop_rootfs_cache(b))
    rows.append(Row("squash app (everything)", "imgcore squash, cold", t_all, b.mbytes, ref))
    t = b.best(lambda: b.ic("squash", "app", "--compression", "none"), lambda: _drop_rootfs_cache(b))
    rows.append(Row("squash app (everything)", "imgcore squash --compression none, cold", t, b.mbytes, ref))
    return rows + theirs


_buildah_cache: dict[str, tuple[float, float]] = {}


def _buildah_rows(b: Bench, case: str) -> list[Row]:
    """buildah commit --squash of the same image, measured once and shown under each case."""
    if not b.buildah:
        return []
    if "t" not in _buildah_cache:
        bh = b.buildah
        ctr = subprocess.run([*bh, "from", "--pull-never", "app"], check=True, capture_output=True,
                             text=True).stdout.strip()  # fmt: skip

        def rmi() -> None:
            subprocess.run([*bh, "rmi", "-f", "squashed"], capture_output=True, check=False)

        t_commit = b.best(lambda: subprocess.run([*bh, "commit", "-q", "--squash", ctr, "squashed"], check=True,
                                                 capture_output=True), rmi)  # fmt: skip

        def from_commit() -> None:
            c = subprocess.run([*bh, "from", "--pull-never", "app"], check=True, capture_output=True,
                               text=True).stdout.strip()  # fmt: skip
            subprocess.run([*bh, "commit", "-q", "--squash", c, "squashed"], check=True, capture_output=True)
            subprocess.run([*bh, "rm", c], check=True, capture_output=True)

        t_both = b.best(from_commit, rmi)
        _buildah_cache["t"] = (t_commit, t_both)
    t_commit, t_both = _buildah_cache["t"]
    return [
        Row(case, "buildah commit --squash (container made before)", t_commit, b.mbytes, t_commit),
        Row(case, "buildah from + commit --squash", t_both, b.mbytes, t_commit),
    ]


def _pure_flatten(b: Bench, ref: float | None) -> Row:
    store = imgcore.Store(b.store)
    blobs = [store.content.blob_path(d.digest) for d in _layers(store)]
    base = b.work / "pure"

    def clean() -> None:
        shutil.rmtree(base, ignore_errors=True)
        (base / "tree").mkdir(parents=True)
        (base / "empty").mkdir()

    def run() -> None:
        imgcore.pure.unpack_layers(blobs, base / "tree", allow_devices=True)
        imgcore.pure.write_layer(base / "empty", base / "tree", base / "layer.tar.gz")

    reps, b.repeat = b.repeat, 1  # the twin is slow; one run is its figure
    try:
        t = b.best(run, clean)
    finally:
        b.repeat = reps
        shutil.rmtree(base, ignore_errors=True)
    return Row("flatten app (2 layers -> 1)", "pure twin (unpack_layers + write_layer)", t, b.mbytes, ref)


# -- registry side: copy and sync ------------------------------------------------------------------------------
# The registry-side measurements (``copy`` between two repositories of one loopback registry against
# ``skopeo copy docker:// docker://``; a sync of 200 unchanged tags against ``skopeo sync``) go here as their own
# ``measure_*`` functions, added to MEASUREMENTS below.


MEASUREMENTS: list[Callable[[Bench], list[Row]]] = [measure_flatten, measure_squash]


@contextlib.contextmanager
def _scratch(args: argparse.Namespace) -> Iterator[tuple[Path, str]]:
    if args.dir:
        d = Path(tempfile.mkdtemp(prefix="bench-reshape-", dir=args.dir))
        try:
            yield d, f"directory {args.dir}"
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-reshape-"))
    try:
        with journaled_ext4(tmp, 8) as (mnt, desc):
            yield mnt, desc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="work in this directory instead of a loop-mounted ext4")
    ap.add_argument("--no-buildah", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_reshape needs root (device nodes, loop mount, buildah's vfs storage)")
    if not (LAYOUT / "index.json").is_file():
        raise SystemExit(f"{LAYOUT} is missing: build the corpus first (shared/corpus/make_corpus.sh)")
    use_buildah = not args.no_buildah
    if use_buildah and not shutil.which("buildah"):
        raise SystemExit("buildah is required (apt-get install -y buildah), or pass --no-buildah")
    with _scratch(args) as (work, where):
        store = work / "store"
        subprocess.run([PY, "-m", "imgcore", "--root", str(store), "load", "-i", str(LAYOUT)], check=True,
                       capture_output=True)  # fmt: skip
        index = json.loads((LAYOUT / "index.json").read_text())
        app = next(m["digest"] for m in index["manifests"]
                   if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == "app")  # fmt: skip
        subprocess.run([PY, "-m", "imgcore", "--root", str(store), "tag", app, "app"], check=True)
        buildah: list[str] = []
        if use_buildah:
            buildah = ["buildah", "--storage-driver", "vfs", "--root", str(work / "buildah"), "--runroot",
                       str(work / "buildah-run")]  # fmt: skip
            subprocess.run([*buildah, "pull", "-q", f"oci:{LAYOUT}:app"], check=True, capture_output=True)
            subprocess.run([*buildah, "tag", subprocess.run([*buildah, "images", "-q"], check=True,
                            capture_output=True, text=True).stdout.split()[0], "app"], check=True)  # fmt: skip
        mbytes = sum(p.stat().st_size for p in (CORPUS / "app").rglob("*") if p.is_file() and not p.is_symlink()) / 1e6
        bench = Bench(work, args.repeat, store, buildah, mbytes)
        rows: list[Row] = []
        for measure in MEASUREMENTS:
            rows.extend(measure(bench))
        if buildah:
            subprocess.run([*buildah, "rm", "-a"], capture_output=True, check=False)
    note = (f"best of {args.repeat}; {where}; MB/s over the image's {mbytes:,.0f} MB of files; load average "
            f"{os.getloadavg()[0]:.1f}; last column: buildah commit --squash's time / the row's time")  # fmt: skip
    print_table("reshape: flatten and squash of the corpus app image", rows, note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
