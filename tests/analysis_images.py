"""Deterministic images for the analysis tests and the dive golden vectors: each is a list of layer tars (bottom
first) drawn from a seeded generator with the shapes dive and imgcore count differently (rewritten files,
chmod-only copies, whiteouts of files and directories, whiteouts of missing paths, opaque directories,
hardlinks, duplicates by content at other paths).

``python3 -m tests.analysis_images`` (with dive on PATH, ``imgcore`` importable) rewrites
``tests/vectors/analysis/dive.json`` with dive 0.13's own figures for every image.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.strategies import TarEntry, build_tar

__all__ = ["SEEDS", "VECTORS", "stack"]

SEEDS = tuple(range(12))
VECTORS = Path(__file__).parent / "vectors" / "analysis" / "dive.json"


def stack(seed: int) -> list[bytes]:
    """The layer tars of image ``seed``."""
    rnd = random.Random(seed)
    names = ["a", "b", "c", "lib", "bin"]
    files: dict[str, bytes] = {}
    layers: list[bytes] = []
    for li in range(rnd.randint(2, 5)):
        entries: list[TarEntry] = []
        written: set[str] = set()

        def add_dirs(path: str, entries: list[TarEntry] = entries, written: set[str] = written) -> None:
            parts = path.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in written:
                    written.add(d)
                    entries.append(TarEntry.dir(d))

        for _ in range(rnd.randint(1, 8)):
            op = rnd.choice(
                ["new", "new", "rewrite", "chmod", "delete", "deldir", "delmissing", "opaque", "hard", "dup"]
            )
            path = "/".join(rnd.choice(names) for _ in range(rnd.randint(1, 3)))
            if op in ("rewrite", "chmod", "delete", "hard", "dup") and files:
                path = rnd.choice(sorted(files))
            if path in written or any(path.startswith(w + "/") and w in files for w in written):
                continue
            if any(p.startswith(path + "/") for p in files) and op in ("new", "rewrite", "chmod"):
                continue
            add_dirs(path)
            if op == "new" or (op in ("rewrite", "chmod", "delete", "hard", "dup") and path not in files):
                if any(f == d for d in [path] for f in written):
                    continue
                data = rnd.randbytes(rnd.randint(0, 4000))
                entries.append(TarEntry.file(path, data, mtime=1_700_000_000 + li))
                files[path] = data
            elif op == "rewrite":
                data = rnd.randbytes(rnd.randint(1, 4000))
                entries.append(TarEntry.file(path, data, mtime=1_700_000_000 + li))
                files[path] = data
            elif op == "chmod":
                entries.append(TarEntry.file(path, files[path], mode=0o600, mtime=1_700_000_100 + li))
            elif op == "delete":
                parent, _, name = path.rpartition("/")
                entries.append(TarEntry.file(f"{parent}/.wh.{name}" if parent else f".wh.{name}"))
                del files[path]
            elif op == "deldir":
                top = path.split("/")[0]
                entries.append(TarEntry.file(f".wh.{top}"))
                for p in [p for p in files if p == top or p.startswith(top + "/")]:
                    del files[p]
            elif op == "delmissing":
                parent, _, name = path.rpartition("/")
                entries.append(TarEntry.file(f"{parent}/.wh.zz{name}" if parent else f".wh.zz{name}"))
            elif op == "opaque":
                parent = path.rpartition("/")[0] or path
                entries.append(TarEntry.file(f"{parent}/.wh..wh..opq"))
                for p in [p for p in files if p.startswith(parent + "/")]:
                    del files[p]
            elif op == "hard":
                link = path + "-hl"
                if link not in written and not any(p.startswith(link + "/") for p in files):
                    entries.append(TarEntry.file(path, files[path], mtime=1_700_000_000 + li))
                    entries.append(TarEntry.hardlink(link, path))
                    written.add(link)
            elif op == "dup":
                other = f"copy{li}/{path.replace('/', '_')}"
                add_dirs(other)
                entries.append(TarEntry.file(other, files[path]))
                files[other] = files[path]
                written.add(other)
            written.add(path)
        layers.append(build_tar(entries))
    return layers


def _regenerate() -> None:
    from imgcore.store import ContentStore
    from tests.images_helpers import make_image

    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = ContentStore(Path(tmp) / "store")
        for seed in SEEDS:
            image = None
            for i, tar in enumerate(stack(seed)):
                image = make_image(store, f"seed{seed}:{i}", {}, parent=image, tar=tar,
                                   created="2024-01-01T00:00:00Z")  # fmt: skip
            archive, export = Path(tmp) / "a.tar", Path(tmp) / "dive.json"
            subprocess.run([sys.executable, "-m", "imgcore", "--root", str(store.root), "save", "-o", str(archive),
                            f"seed{seed}:{i}"], check=True, capture_output=True)  # fmt: skip
            export.unlink(missing_ok=True)
            subprocess.run(["dive", "--source", "docker-archive", "--ci", "--json", str(export), str(archive)],
                           check=True, capture_output=True)  # fmt: skip
            img = json.loads(export.read_text())["image"]
            out[str(seed)] = {
                "efficiencyScore": img["efficiencyScore"],
                "inefficientBytes": img["inefficientBytes"],
                "sizeBytes": img["sizeBytes"],
                "fileReference": sorted([f["file"], f["count"], f["sizeBytes"]] for f in img["fileReference"]),
            }
    VECTORS.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    _regenerate()
