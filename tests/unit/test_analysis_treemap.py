"""The ``--html`` treemap's directory sizes come from the merged tree (no Python object per path) and equal
what the final tree's files add up to, directory by directory (cut at three components)."""

from __future__ import annotations

from imgcore.analysis import Analysis, analyze
from imgcore.analysis.html import directory_sizes
from imgcore.store import ContentStore
from tests.images_helpers import make_image
from tests.strategies import TarEntry, build_tar


def _from_final_files(a: Analysis) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path, info in a.final_files().items():
        if info[0] != "file" or not info[1]:
            continue
        parts = path.strip("/").split("/")
        key = "/" + "/".join(parts[: min(len(parts) - 1, 3)]) if len(parts) > 1 else "/"
        sizes[key] = sizes.get(key, 0) + info[1]
    return sizes


def test_directory_sizes_add_up_the_final_files(store: ContentStore) -> None:
    base = make_image(store, "base:1", {"top": b"t" * 7, "a/f": b"x" * 100, "a/b/c/d/e": b"y" * 300,
                                        "a/b/c/g": b"z" * 50, "a/b/h": b"h" * 20, "gone/x": b"g" * 999,
                                        "a/b/c/empty": b""})  # fmt: skip
    tar = build_tar([TarEntry.file("a/b/c/g", b"w" * 60), TarEntry.file(".wh.gone"),
                     TarEntry.file("n/m/o/p/q", b"q" * 5)])  # fmt: skip
    app = make_image(store, "app:1", {}, parent=base, tar=tar)
    a = analyze(app)
    want = _from_final_files(a)
    assert want == {"/": 7, "/a": 100, "/a/b": 20, "/a/b/c": 360, "/n/m/o": 5}
    assert directory_sizes(a) == want
