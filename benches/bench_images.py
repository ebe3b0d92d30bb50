"""Image commands benchmark (issue 4): ``import`` of the corpus's app rootfs against umoci and shell pipelines,
and the listing/GC commands on a store of many images, timed as the commands users type.

Cases (each checks its result once before it is timed):
1. a plain rootfs tar imported as a gzip layer: ``imgcore import app.tar`` vs ``umoci new`` + ``umoci raw
   add-layer`` (umoci gzips it too) vs the floor ``gzip -1 | sha256sum`` plus ``sha256sum`` of the tar;
2. a gzip'd rootfs imported as it is (diff_id from the decompressed stream): ``imgcore import app.tar.gz`` vs the
   floor ``gzip -dc | sha256sum`` plus ``sha256sum`` of the blob;
3. ``imgcore images``, ``imgcore df`` and ``imgcore image prune -a -f`` on a store of N small images.

    python benches/bench_images.py [--corpus /tmp/imgcore-corpus] [--images 300] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import imgcore
from _common import Row, best_of, have, print_table, run_cmd
from imgcore.image import catalog, importer
from imgcore.store import ContentStore


def imgcore_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "imgcore", "--root", str(root), *args]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/tmp/imgcore-corpus")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgcore-bench-images-", dir=args.dir))
    corpus = Path(args.corpus)
    rows: list[Row] = []
    try:
        tar, tgz = corpus / "app.tar", corpus / "app.tar.gz"
        if tar.is_file() and tgz.is_file():
            mb = tar.stat().st_size / 1e6
            diff_id = imgcore.sha256_file(tar)
            # 1. plain tar -> gzip layer
            n = 0

            def ours_plain() -> None:
                nonlocal n
                n += 1
                root = work / f"s-plain-{n}"
                subprocess.run(imgcore_cmd(root, "import", str(tar), "app:1"), check=True, stdout=subprocess.DEVNULL)
                shutil.rmtree(root)

            check = ContentStore(work / "check")
            img = importer.import_image(check, tar, "app:1")
            assert img.config.diff_ids == [diff_id]
            case = f"import app.tar ({mb:.0f} MB) as a gzip layer"
            ours = best_of(ours_plain, args.repeat)
            rows.append(Row(case, "imgcore import (gzip -1, Python zlib)", ours, mb, ours))
            if have("umoci"):
                m = 0

                def umoci_plain() -> None:
                    nonlocal m
                    m += 1
                    layout = work / f"umoci-{m}"
                    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
                    subprocess.run(["umoci", "new", "--image", f"{layout}:app"], check=True)
                    subprocess.run(["umoci", "raw", "add-layer", "--image", f"{layout}:app", str(tar)], check=True)
                    shutil.rmtree(layout)

                rows.append(Row(case, "umoci new + raw add-layer", best_of(umoci_plain, args.repeat), mb, ours))
            floor = f"gzip -1 -c {tar} | sha256sum >/dev/null && sha256sum {tar} >/dev/null"
            rows.append(Row(case, "floor: gzip -1 | sha256sum; sha256sum", best_of(run_cmd(floor), 1), mb, ours))
            # 2. gzip'd tar stored as is
            k = 0

            def ours_gz() -> None:
                nonlocal k
                k += 1
                root = work / f"s-gz-{k}"
                subprocess.run(imgcore_cmd(root, "import", str(tgz), "app:1"), check=True, stdout=subprocess.DEVNULL)
                shutil.rmtree(root)

            img = importer.import_image(check, tgz, "app:2")
            assert img.config.diff_ids == [diff_id]
            assert img.layers[0].digest == imgcore.sha256_file(tgz)
            case = f"import app.tar.gz ({tgz.stat().st_size / 1e6:.0f} MB) as it is"
            ours = best_of(ours_gz, args.repeat)
            rows.append(Row(case, "imgcore import (Python zlib inflate + Rust sha256)", ours, mb, ours))
            floor = f"gzip -dc {tgz} | sha256sum >/dev/null && sha256sum {tgz} >/dev/null"
            rows.append(Row(case, "floor: gzip -dc | sha256sum; sha256sum", best_of(run_cmd(floor), 1), mb, ours))
        else:
            print(f"(corpus not found at {corpus}: import cases skipped)")

        # 3. listing and GC on many images
        store = ContentStore(work / "many")
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.images_helpers import make_image

        base = make_image(store, "base:1", {f"usr/lib/f{i}": bytes([i % 256]) * 4096 for i in range(50)})
        for i in range(args.images):
            make_image(store, f"app{i}:1" if i % 5 else None, {f"app/{i}": str(i).encode() * 100}, parent=base)
        assert len(catalog.list_images(store)) == args.images + 1
        case = f"{args.images + 1} images"
        t = best_of(run_cmd(imgcore_cmd(store.root, "images")), args.repeat)
        rows.append(Row(f"{case}: imgcore images", "imgcore images", t, None, None))
        t = best_of(run_cmd(imgcore_cmd(store.root, "df", "-v")), args.repeat)
        rows.append(Row(f"{case}: imgcore df -v", "imgcore df -v", t, None, None))
        if have("umoci"):
            t = best_of(run_cmd(["umoci", "ls", "--layout", str(store.root)]), args.repeat)
            rows.append(Row(f"{case}: list tags", "umoci ls (tags only)", t, None, None))
        t = best_of(run_cmd(imgcore_cmd(store.root, "image", "prune", "-a", "-f")), 1)
        assert store.list_blobs() == []
        rows.append(Row(f"{case}: imgcore image prune -a -f", "imgcore prune (all)", t, None, None))
        print_table(
            "image commands (issue 4)",
            rows,
            "speed-up: the first row of each case is imgcore; >1x means faster than imgcore",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
