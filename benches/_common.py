"""Shared helpers for the benchmark scripts: timing (best of N), tables, tool lookup."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    case: str
    impl: str
    seconds: float
    mbytes: float | None = None
    baseline: float | None = None

    def cells(self) -> list[str]:
        rate = f"{self.mbytes / self.seconds:,.0f}" if self.mbytes else "-"
        ratio = f"{self.baseline / self.seconds:.2f}x" if self.baseline else "-"
        return [self.case, self.impl, f"{self.seconds:.3f}", rate, ratio]


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_cmd(cmd: list[str] | str, **kw: object) -> Callable[[], None]:
    def go() -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, shell=isinstance(cmd, str), **kw)  # type: ignore[call-overload]

    return go


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def print_table(title: str, rows: list[Row], note: str = "") -> None:
    head = ["case", "implementation", "seconds", "MB/s", "speed-up vs imgcore's baseline"]
    cells = [r.cells() for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *cells, strict=False)]
    print(f"\n## {title}")
    if note:
        print(note)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for c in cells:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))


def sh(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def journaled_ext4(workdir: Path, size_gb: int) -> Iterator[tuple[Path, str]]:
    """A fresh ext4 with a journal on a loop device, mounted under ``workdir`` (needs root).

    These machines' root filesystem is ext4 without a journal, where creating files soon after deleting a tree
    is several times slower; benchmarks write here instead, as a user's disk would be."""
    img, mnt = workdir / "fs.img", workdir / "mnt"
    mnt.mkdir(parents=True, exist_ok=True)
    with img.open("wb") as f:
        f.truncate(size_gb << 30)
    sh("mkfs.ext4", "-q", "-F", "-O", "has_journal", img)
    sh("mount", "-o", "loop", img, mnt)
    try:
        yield mnt, f"ext4 with a journal (data=ordered) on a loop device, {size_gb} GiB image under {workdir}"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        img.unlink(missing_ok=True)
