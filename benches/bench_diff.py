"""Layer-diff benchmark (issue 4 item 7): committing a container's changes as a layer.

One run prints one table. Everything runs on a freshly made, loop-mounted ext4 filesystem with its journal
(``--dir`` to use an existing directory instead; the table says which filesystem was used), from the page
cache (every input is read once before it is timed). The corpus is /tmp/imgcore-corpus (app rootfs: 13,546
entries, 470 MB).

Cases:
- small change (10 files changed, 100 files added) on the app rootfs: imgcore overlay mode (upperdir only),
  imgcore copy mode (parallel walk of both trees), the pure-Python twin in both modes, and ``umoci repack`` of
  an unpacked bundle with the same change (umoci re-walks and re-hashes the whole rootfs);
- the same overlay-mode commit over the much smaller base rootfs (the cost must not depend on the image);
- the app layer (app rootfs against the base rootfs, 302 MB) and the whole app tree as one change (base
  empty), gzip on all cores and zstd, against ``umoci repack`` producing the same layers.

Each imgcore figure is the best of 3 runs, in process; "as a command" adds a fresh interpreter
(``python -c 'import imgcore; imgcore.write_layer(...)'``), which is what a user waits for.

    python benches/bench_diff.py [--dir DIR] [--repeat 3] [--no-pure-whole]
"""

# ruff: noqa: PTH113, PTH114, PTH118
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imgcore
import imgcore.pure
from _common import journaled_ext4, sh

CORPUS = Path("/tmp/imgcore-corpus")


def timed(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def warm(root: Path) -> None:
    """Reads every file once so all implementations start from the page cache."""
    sh("tar", "-cf", "/dev/null", "-C", root, ".")


def small_change(root: Path) -> None:
    """10 regular files changed (appended to), 100 files of 4 KiB added in 10 existing directories."""
    files: list[str] = []
    dirs: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(filenames):
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                files.append(p)
        if dirpath != str(root):
            dirs.append(dirpath)
    for p in files[:: max(1, len(files) // 10)][:10]:
        with open(p, "ab") as f:
            f.write(b"\nchanged by bench_diff\n")
    for i, d in enumerate(dirs[:: max(1, len(dirs) // 10)][:10]):
        for j in range(10):
            Path(d, f"bench-added-{i}-{j}.txt").write_bytes(bytes([65 + j]) * 4096)


@contextlib.contextmanager
def overlay(lower: Path, upper: Path, work: Path, merged: Path) -> Iterator[Path]:
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off"
    sh("mount", "-t", "overlay", "overlay", "-o", opts, merged)
    try:
        yield merged
    finally:
        sh("umount", merged)


def command(base: object, target: Path, out: Path, overlay_mode: bool) -> Callable[[], None]:
    code = (
        f"import imgcore,sys; imgcore.write_layer(eval(sys.argv[1]), sys.argv[2], sys.argv[3], overlay={overlay_mode})"
    )
    return lambda: sh(sys.executable, "-c", code, repr(base), target, out)


class Table:
    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def add(self, case: str, impl: str, secs: float, mb: float | None, umoci: float | None, pure: float | None) -> None:
        self.rows.append(
            [
                case,
                impl,
                f"{secs:.3f}",
                f"{mb / secs:,.0f}" if mb else "-",
                f"{umoci / secs:.1f}x" if umoci else "-",
                f"{pure / secs:.1f}x" if pure else "-",
            ]
        )
        print("  ..", case, impl, f"{secs:.3f}s", file=sys.stderr, flush=True)

    def show(self, title: str, note: str) -> None:
        head = ["case", "implementation", "seconds", "MB/s", "vs umoci", "vs pure twin"]
        widths = [max(len(x) for x in col) for col in zip(head, *self.rows, strict=False)]
        print(f"\n## {title}\n{note}")
        print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
        for r in self.rows:
            print("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None, help="use this directory instead of a fresh loop-mounted ext4")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-pure-whole", action="store_true", help="skip the pure twin on the whole app tree")
    args = ap.parse_args()
    facts = CORPUS / "corpus-facts.txt"
    if not facts.exists():
        sys.exit(f"{facts} is missing: build the corpus first (shared/corpus/make_corpus.sh)")
    for tool in ("umoci", "mkfs.ext4", "tar"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    if os.geteuid() != 0:
        sys.exit("bench_diff needs root (loop and overlay mounts, umoci unpack keeps owners)")
    rep = args.repeat
    table = Table()
    with tempfile.TemporaryDirectory(prefix="imgcore-bench-diff-", dir=args.dir or "/tmp") as tmp:
        stack = contextlib.ExitStack()
        with stack:
            if args.dir:
                root, fs_note = Path(tmp), f"directory {tmp}"
            else:
                root, fs_note = stack.enter_context(journaled_ext4(Path(tmp), 8))
            print(f"setting up on {fs_note} ...", file=sys.stderr, flush=True)
            app, base, empty = root / "app", root / "base", root / "empty"
            sh("cp", "-a", CORPUS / "app", app)
            sh("cp", "-a", CORPUS / "base", base)
            empty.mkdir()
            sh("cp", "-a", CORPUS / "oci", root / "oci")
            out = root / "layer.blob"

            # ---- umoci: small change on an unpacked app bundle
            bundle = root / "bundle"
            t0 = time.perf_counter()
            sh("umoci", "unpack", "--image", f"{root / 'oci'}:app", bundle)
            unpack_s = time.perf_counter() - t0
            small_change(bundle / "rootfs")
            warm(bundle / "rootfs")
            umoci_small = timed(lambda: sh("umoci", "repack", "--image", f"{root / 'oci'}:small", bundle), 2)

            # ---- overlay mode: the same change through an overlay mount over the app rootfs
            upper = root / "ovl" / "upper"
            with overlay(app, upper, root / "ovl" / "work", root / "ovl" / "merged") as merged:
                small_change(merged)
            ovl_changes = imgcore.diff(app, upper, overlay=True)
            assert [c.astuple() for c in ovl_changes] == [
                c.astuple() for c in imgcore.pure.diff(app, upper, overlay=True)
            ]
            n_added = sum(c.kind == "A" for c in ovl_changes)
            assert n_added == 100, n_added
            warm(app)
            pure_ovl = timed(lambda: imgcore.pure.write_layer(app, upper, out, overlay=True), rep)
            rust_ovl = timed(lambda: imgcore.write_layer(app, upper, out, overlay=True), rep)
            cmd_ovl = timed(command(str(app), upper, out, True), rep)
            table.add("small change, app image", "imgcore overlay mode", rust_ovl, None, umoci_small, pure_ovl)
            table.add("small change, app image", "imgcore overlay mode, as a command", cmd_ovl, None, umoci_small, None)
            table.add("small change, app image", "pure twin overlay mode", pure_ovl, None, umoci_small, None)
            start = timed(lambda: sh(sys.executable, "-c", "pass"), rep)
            table.add("(reference)", "interpreter start alone: python -c pass", start, None, umoci_small, None)

            # size independence: the same change over the (smaller) base rootfs
            upper_b = root / "ovlb" / "upper"
            with overlay(base, upper_b, root / "ovlb" / "work", root / "ovlb" / "merged") as merged:
                small_change(merged)
            rust_ovl_b = timed(lambda: imgcore.write_layer(base, upper_b, out, overlay=True), rep)
            table.add("small change, base image", "imgcore overlay mode", rust_ovl_b, None, umoci_small, None)

            # ---- copy mode: a private copy of the app rootfs with the same change
            copy = root / "copy"
            sh("cp", "-a", app, copy)
            small_change(copy)
            rust_changes = imgcore.diff(app, copy)
            assert [c.astuple() for c in rust_changes] == [c.astuple() for c in imgcore.pure.diff(app, copy)]
            warm(copy)
            pure_copy = timed(lambda: imgcore.pure.write_layer(app, copy, out), 1)
            rust_copy = timed(lambda: imgcore.write_layer(app, copy, out), rep)
            cmd_copy = timed(command(str(app), copy, out, False), rep)
            table.add("small change, app image", "imgcore copy mode", rust_copy, None, umoci_small, pure_copy)
            table.add("small change, app image", "imgcore copy mode, as a command", cmd_copy, None, umoci_small, None)
            table.add("small change, app image", "pure twin copy mode", pure_copy, None, umoci_small, None)
            table.add("small change, app image", "umoci repack", umoci_small, None, None, None)

            # ---- the app layer: app rootfs against base rootfs (302 MB of changes)
            bundle2 = root / "bundle2"
            sh("umoci", "unpack", "--image", f"{root / 'oci'}:base", bundle2)
            shutil.rmtree(bundle2 / "rootfs")
            sh("cp", "-a", app, bundle2 / "rootfs")
            warm(bundle2 / "rootfs")
            umoci_app = timed(lambda: sh("umoci", "repack", "--image", f"{root / 'oci'}:app2", bundle2), 1)
            r = imgcore.write_layer(base, app, out)
            mb = r.uncompressed_size / 1e6
            rust_app = timed(lambda: imgcore.write_layer(base, app, out), 2)
            rust_app_zstd = timed(lambda: imgcore.write_layer(base, app, out, compression="zstd"), 2)
            app_case = f"app layer ({mb:.0f} MB tar)"
            table.add(app_case, "imgcore copy mode, gzip", rust_app, mb, umoci_app, None)
            table.add(app_case, "imgcore copy mode, zstd", rust_app_zstd, mb, umoci_app, None)
            table.add(app_case, "umoci repack", umoci_app, mb, None, None)

            # ---- the whole app tree as one change (base empty)
            bundle3 = root / "bundle3"
            sh("umoci", "init", "--layout", root / "eoci")
            sh("umoci", "new", "--image", f"{root / 'eoci'}:e")
            sh("umoci", "unpack", "--image", f"{root / 'eoci'}:e", bundle3)
            shutil.rmtree(bundle3 / "rootfs")
            sh("cp", "-a", app, bundle3 / "rootfs")
            warm(bundle3 / "rootfs")
            umoci_whole = timed(lambda: sh("umoci", "repack", "--image", f"{root / 'eoci'}:whole", bundle3), 1)
            r = imgcore.write_layer(empty, app, out)
            mb = r.uncompressed_size / 1e6
            pure_whole = None if args.no_pure_whole else timed(lambda: imgcore.pure.write_layer(empty, app, out), 1)
            rust_whole = timed(lambda: imgcore.write_layer(empty, app, out), 2)
            rust_whole_zstd = timed(lambda: imgcore.write_layer(empty, app, out, compression="zstd"), 2)
            rust_whole_l1 = timed(lambda: imgcore.write_layer(empty, app, out, level=1), 2)
            whole_case = f"whole app tree ({mb:.0f} MB tar)"
            table.add(whole_case, "imgcore, gzip -6 all cores", rust_whole, mb, umoci_whole, pure_whole)
            table.add(whole_case, "imgcore, gzip -1 all cores", rust_whole_l1, mb, umoci_whole, None)
            table.add(whole_case, "imgcore, zstd -3 all cores", rust_whole_zstd, mb, umoci_whole, None)
            if pure_whole:
                table.add(whole_case, "pure twin, gzip -6", pure_whole, mb, umoci_whole, None)
            table.add(whole_case, "umoci repack", umoci_whole, mb, None, None)
    note = (
        f"filesystem: {fs_note}; {os.cpu_count()} cores; page cache warm; imgcore best of {rep} "
        f"(app layer/whole tree: best of 2), pure twin and umoci best of 1-2.\n"
        f"small change = 10 files changed + 100 files added; umoci unpack of the app image took {unpack_s:.1f} s "
        "(not counted)."
    )
    table.show("layer diff / commit (issue 4 item 7)", note)


if __name__ == "__main__":
    main()
