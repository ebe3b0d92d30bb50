"""Hashing benchmark (issue 2): imgcore's Rust hashing against the pure-Python twin, sha256sum and openssl.

One run prints one table. Cases: one large file (512 MiB by default), 20,000 files of 4 KiB, and verifying a
store of 2,000 blobs (``Store.fsck``) on 1 core and on all cores. Every case checks that all implementations
agree before it is timed. Files are read from the page cache (each case is warmed first), so the figures are
hashing throughput, not disk speed.

    python benches/bench_hash.py [--large-mib 512] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imgcore
import imgcore.pure
from _common import Row, best_of, have, print_table, run_cmd
from imgcore.store import ContentStore

FSCK_WORKER = """
import sys
from imgcore.store import ContentStore
assert ContentStore(sys.argv[1]).fsck() == []
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large-mib", type=int, default=512)
    ap.add_argument("--small-files", type=int, default=20_000)
    ap.add_argument("--blobs", type=int, default=2_000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgcore-bench-hash-", dir=args.dir))
    rows: list[Row] = []

    # 1. one large file
    big = work / "large.bin"
    chunk = os.urandom(1 << 20)
    with big.open("wb") as f:
        for _ in range(args.large_mib):
            f.write(chunk)
    mb = big.stat().st_size / 1e6
    want = imgcore.pure.sha256_file(big)
    assert imgcore.sha256_file(big) == want
    out = subprocess.run(["sha256sum", str(big)], capture_output=True, text=True, check=True).stdout
    assert "sha256:" + out.split()[0] == want
    case = f"1 file, {args.large_mib} MiB"
    pure_t = best_of(lambda: imgcore.pure.sha256_file(big))
    rows.append(Row(case, "pure Python (hashlib)", pure_t, mb, pure_t))
    rows.append(Row(case, "imgcore.sha256_file", best_of(lambda: imgcore.sha256_file(big)), mb, pure_t))
    rows.append(Row(case, "sha256sum", best_of(run_cmd(["sha256sum", str(big)])), mb, pure_t))
    if have("openssl"):
        rows.append(
            Row(case, "openssl dgst -sha256", best_of(run_cmd(["openssl", "dgst", "-sha256", str(big)])), mb, pure_t)
        )
    big.unlink()

    # 2. many small files
    small = work / "small"
    small.mkdir()
    paths = []
    for i in range(args.small_files):
        p = small / f"{i:05d}"
        p.write_bytes(os.urandom(4096))
        paths.append(p)
    mb = len(paths) * 4096 / 1e6
    assert imgcore.sha256_files(paths) == imgcore.pure.sha256_files(paths)
    case = f"{len(paths)} files x 4 KiB"
    pure_t = best_of(lambda: imgcore.pure.sha256_files(paths))
    rows.append(Row(case, "pure Python loop", pure_t, mb, pure_t))
    rows.append(Row(case, "imgcore.sha256_files", best_of(lambda: imgcore.sha256_files(paths)), mb, pure_t))
    rows.append(
        Row(
            case,
            "find | xargs sha256sum",
            best_of(run_cmd(f"cd {small} && find . -type f | xargs sha256sum")),
            mb,
            pure_t,
        )
    )

    # 3. verifying a store of 2,000 blobs
    store = ContentStore(work / "store")
    sizes = [(i * 7919) % (256 * 1024) + 1 for i in range(args.blobs)]
    seed = os.urandom(256 * 1024)
    for i, n in enumerate(sizes):
        store.put_blob(i.to_bytes(4, "big") + seed[: n - 1])
    mb = sum(sizes) / 1e6 + 4 * args.blobs / 1e6
    assert store.fsck() == []
    blob_paths = [store.blob_path(d) for d in store.list_blobs()]
    case = f"fsck, {args.blobs} blobs ({mb:.0f} MB)"

    def pure_fsck() -> None:
        results = imgcore.pure.hash_files(blob_paths)
        assert all(r[0] is not None and r[0].split(":")[1] == p.name for r, p in zip(results, blob_paths, strict=True))

    pure_t = best_of(pure_fsck)
    rows.append(Row(case, "pure Python loop", pure_t, mb, pure_t))
    for threads in (1, os.cpu_count() or 1):
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        t = best_of(run_cmd([sys.executable, "-c", FSCK_WORKER, str(store.root)], env=env))
        rows.append(Row(case, f"imgcore fsck, {threads} thread(s) (incl. start-up)", t, mb, pure_t))
    rows.append(Row(case, "imgcore Store.fsck() in-process", best_of(store.fsck), mb, pure_t))
    blob_dir = store.root / "blobs" / "sha256"
    rows.append(
        Row(case, "sha256sum", best_of(run_cmd(f"cd {blob_dir} && find . -type f | xargs sha256sum")), mb, pure_t)
    )

    print_table(
        "hashing (speed-up = pure-Python time / this time)",
        rows,
        f"machine: {os.cpu_count()} cores; data under {work} (page cache warm)",
    )
    subprocess.run(["rm", "-rf", str(work)], check=True)


if __name__ == "__main__":
    main()
