"""imgcore.analysis: the per-layer table cache (a second analysis reads no blob; a hostile cache file is read
again from the blob), content-true figures, what-ifs, comparisons, store-wide duplicates, and the command."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imgcore
import imgcore.pure.analysis
from imgcore.analysis import _rows, analyze, find_digest, store_files
from imgcore.analysis.dive import InefficientPaths
from imgcore.analysis.figures import Rewrites, Wasted, WastedPaths
from imgcore.analysis.tables import LayerTable, cache_path, load_tables
from imgcore.cli import _analyze_report, main
from imgcore.cli._analyze_report import _file_entries
from imgcore.errors import BlobNotFound
from imgcore.image.model import Image
from imgcore.store import ContentStore
from tests.images_helpers import make_image
from tests.strategies import TarEntry, build_tar

TOOL = b"y" * 5000


def _images(store: ContentStore) -> tuple[Image, Image]:
    base = make_image(store, "base:1", {"etc/a": b"x" * 1000, "usr/bin/tool": TOOL, "opt/big/f1": b"z" * 3000,
                                        "opt/big/f2": b"w" * 2000})  # fmt: skip
    tar = build_tar([
        TarEntry.dir("etc"), TarEntry.file("etc/a", b"x" * 1000, mode=0o600),  # chmod: a metadata-only copy
        TarEntry.dir("usr"), TarEntry.dir("usr/bin"), TarEntry.file("usr/bin/tool", TOOL),  # touch-like copy
        TarEntry.dir("opt"), TarEntry.file("opt/.wh.big"),  # a directory deleted
        TarEntry.dir("copy"), TarEntry.file("copy/tool", TOOL),  # a duplicate by content at another path
        TarEntry.file("new", b"n" * 700),
    ])  # fmt: skip
    return base, make_image(store, "app:1", {}, parent=base, tar=tar)


def test_figures(store: ContentStore) -> None:
    base, app = _images(store)
    a = analyze(app)
    # dive counts every copy of a path seen twice, the kept one included.
    assert a.dive.wasted_bytes == 2 * 5000 + 2 * 1000
    assert a.dive.inefficient == (("/usr/bin/tool", 2, 10000), ("/etc/a", 2, 2000))
    assert a.dive.size_bytes == 11000 + 11700
    # Content-true: hidden copies once (tool, a, the deleted directory's files), the kept copies never.
    assert a.wasted_bytes == 5000 + 1000 + 3000 + 2000
    assert {(w.path, w.copies, w.wasted_bytes) for w in a.wasted} == {
        ("/usr/bin/tool", 2, 5000), ("/etc/a", 2, 1000), ("/opt/big/f1", 1, 3000), ("/opt/big/f2", 1, 2000),
    }  # fmt: skip
    assert a.duplicates == (5000, 1)  # /usr/bin/tool and /copy/tool
    assert [(r.path, r.layer, r.size, r.changed) for r in a.rewrites] == [
        ("/usr/bin/tool", 1, 5000, ("mtime",)), ("/etc/a", 1, 1000, ("mode", "mtime")),
    ]  # fmt: skip
    assert a.fold_savings() == 6000
    assert a.squash_savings(2) == 11000
    assert a.squash_savings(1) == 0
    assert a.drop_savings("/opt/*") == (5000, 2)
    assert a.drop_savings("*.nothing") == (0, 0)
    top = a.layers[1]
    assert (top.added, top.deleted, top.metadata_only, top.files) == (3, 1, 2, 4)
    assert top.compression == "gzip"
    assert top.compressed_bytes == app.layers[1].size
    assert top.bytes > top.file_bytes
    c = a.compare(analyze(base))
    assert [p for p, _ in c.added] == ["/copy", "/copy/tool", "/new"]
    assert [p for p, _ in c.removed] == ["/opt/big", "/opt/big/f1", "/opt/big/f2"]
    assert [(p, w) for p, _, _, w in c.changed] == [("/etc/a", "metadata")]
    assert c.shared_layers == (base.diff_ids[0],)
    files = a.layer_files(1)
    assert files[1] == {"path": "/etc/a", "kind": "file", "change": "metadata", "size": 1000, "mode": 0o600,
                        "uid": 0, "gid": 0, "mtime": 1_700_000_000,
                        "sha256": "sha256:" + hashlib.sha256(b"x" * 1000).hexdigest()}  # fmt: skip
    assert {f["change"] for f in files} >= {"added", "deleted", "metadata", "same"}
    assert imgcore.Store(store.root).analyze("app:1").dive == a.dive


def test_second_analysis_reads_no_blob(store: ContentStore) -> None:
    _, app = _images(store)
    first = analyze(app)
    for layer in app.layers:
        assert cache_path(store, layer.digest).is_file()
        store.blob_path(layer.digest).unlink()
    again = analyze(app)
    assert again.dive == first.dive
    assert again.wasted_bytes == first.wasted_bytes
    with pytest.raises(BlobNotFound):
        analyze(app, cache=False)


def _rewrite_npz(target: Path, **changes: np.ndarray) -> None:
    with np.load(target) as z:
        cols = {k: z[k] for k in z.files}
    cols.update(changes)
    buf = io.BytesIO()
    np.savez(buf, **cols)  # type: ignore[arg-type]
    target.write_bytes(buf.getvalue())


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "path-index", "link-index", "dtype", "offsets", "digest", "pickle", "lengths", "shape"],
)
def test_hostile_cache_is_read_again(store: ContentStore, damage: str) -> None:
    _, app = _images(store)
    digest = app.layers[1].digest
    want = analyze(app)
    path = cache_path(store, digest)
    if damage == "garbage":
        path.write_bytes(b"not a zip")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "path-index":
        _rewrite_npz(path, path=np.full(len(want.tables[1]), 10**6, dtype=np.uint32))
    elif damage == "link-index":
        _rewrite_npz(path, link=np.full(len(want.tables[1]), 10**6, dtype=np.int32))
    elif damage == "dtype":
        _rewrite_npz(path, size=want.tables[1].size.astype(np.float64))
    elif damage == "offsets":
        _rewrite_npz(path, offsets=want.tables[1].offsets[::-1].copy())
    elif damage == "digest":
        _rewrite_npz(path, digest=np.asarray(app.layers[0].digest))
    elif damage == "pickle":
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("evil.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
                       + b" " * 50 + b"\n" + b"\x80\x04K\x01.")  # fmt: skip
    elif damage == "shape":  # a header declaring far more data than the member holds (numpy would allocate it)
        raw = path.read_bytes()
        at = raw.index(b"'shape': (") + len(b"'shape': (")
        end = raw.index(b",", at)
        path.write_bytes(raw[:at] + b"9" * (end - at) + raw[end:])
    elif damage == "lengths":
        _rewrite_npz(path, mode=np.zeros(1, dtype=np.uint32))
    tables = load_tables(store, [digest])
    assert tables[0].digest == digest
    assert np.array_equal(tables[0].path, want.tables[1].path)
    assert np.array_equal(tables[0].size, want.tables[1].size)
    # The damaged file was replaced by a good one.
    assert load_tables(store, [digest])[0].names() == want.names[1]


def test_store_files_and_find_digest(store: ContentStore) -> None:
    _, app = _images(store)
    other = make_image(store, "other:1", {"srv/tool": TOOL, "srv/x": b"q" * 10})
    images = [app, other]
    sf = store_files(store, images)
    assert sf.layers == 3
    # TOOL is stored in three distinct layers (base, app's top, other): two copies too many.
    tool = "sha256:" + hashlib.sha256(TOOL).hexdigest()
    assert sf.top[0][:3] == (tool, 5000, 3)
    assert set(sf.top[0][3]) == {"docker.io/library/app:1", "docker.io/library/other:1"}
    hits = find_digest(store, images, tool)
    assert ("docker.io/library/other:1", "/srv/tool", 0, other.layers[0].digest) in hits
    assert {h[1] for h in hits} == {"/usr/bin/tool", "/copy/tool", "/srv/tool"}
    with pytest.raises(ValueError, match="not a sha256"):
        find_digest(store, images, "sha256:abcd")


def test_cli_text_json_ci(store: ContentStore, capsys: pytest.CaptureFixture[str]) -> None:
    _images(store)
    root = ["--root", str(store.root)]
    assert main([*root, "analyze", "app:1", "--drop", "/opt/*"]) == 0
    out = capsys.readouterr().out
    assert "dive:          efficiency 78.3394 %   wasted 12000 bytes" in out
    assert "drop /opt/*: -5kB (2 files)" in out
    assert "/usr/bin/tool" in out.split("Top wasted paths:")[1]
    assert main([*root, "analyze", "app:1", "--json", "--against", "base:1"]) == 0
    raw = capsys.readouterr().out
    assert raw.count('"fileList"') == 2  # one per layer, streamed in
    doc = json.loads(raw)
    assert doc["dive"]["inefficientBytes"] == 12000
    assert doc["dive"]["efficiencyScore"] == 0.7833935018050542
    assert doc["content"]["wastedBytes"] == 11000
    assert [f["path"] for f in doc["layers"][1]["fileList"]][:2] == ["/etc", "/etc/a"]
    assert doc["against"]["sharedLayers"] == [doc["layers"][0]["diffId"]]
    # dive's CI rules: default thresholds fail this image (exit 1); loosened, it passes.
    assert main([*root, "analyze", "app:1", "--ci"]) == 1
    out = capsys.readouterr().out
    assert (
        "  FAIL: lowestEfficiency: image efficiency is too low (efficiency=0.7833935018050542 < threshold=0.9)" in out
    )
    assert "  SKIP: highestWastedBytes: rule disabled" in out
    assert "Result:FAIL [Total:3] [Passed:0] [Failed:2] [Warn:0] [Skipped:1]" in out
    args = ["--lowest-efficiency", "0.5", "--highestUserWastedPercent", "2", "--highest-wasted-bytes", "12kB"]
    assert main([*root, "analyze", "app:1", "--ci", *args]) == 1
    assert "CI Misconfigured" in capsys.readouterr().out
    args[3] = "disabled"
    assert main([*root, "analyze", "app:1", "--ci", *args]) == 0
    assert "Result:PASS [Total:3] [Passed:2] [Failed:0] [Warn:0] [Skipped:1]" in capsys.readouterr().out
    args[5] = "11999"
    assert main([*root, "analyze", "app:1", "--ci", *args]) == 1
    assert "too many bytes wasted (wasted-bytes=12000 > threshold=11999)" in capsys.readouterr().out
    assert main([*root, "analyze", "--store"]) == 0
    assert "of file content is stored more than once" in capsys.readouterr().out
    tool = "sha256:" + hashlib.sha256(TOOL).hexdigest()
    assert main([*root, "analyze", "--find-digest", tool]) == 0
    assert "/copy/tool" in capsys.readouterr().out
    assert main([*root, "analyze", "--find-digest", "sha256:" + "0" * 64]) == 1
    capsys.readouterr()
    assert main([*root, "df", "--files"]) == 0
    assert "of file content is stored more than once" in capsys.readouterr().out
    assert main([*root, "df", "--files", "--digest", tool]) == 0
    assert "/copy/tool" in capsys.readouterr().out


def test_removing_an_image_drops_its_cached_tables(store: ContentStore) -> None:
    _, app = _images(store)
    analyze(app)
    top = cache_path(store, app.layers[1].digest)
    assert top.is_file()
    imgcore.Store(store.root).remove("app:1")
    assert not top.exists()  # the blob went, its table with it
    assert cache_path(store, app.layers[0].digest).is_file()  # base:1 still holds the bottom layer


def test_streamed_file_lists_are_what_json_dumps_writes(store: ContentStore) -> None:
    _, app = _images(store)
    a = analyze(app)
    for i in range(len(a.tables)):
        texts = list(_file_entries(a, i))
        assert texts == [json.dumps(e) for e in a.layer_files(i)]


def _wide(store: ContentStore) -> Image:
    """300 files, half rewritten unchanged with another mode (metadata-only), half with new content."""
    base = make_image(store, "wide:0", {f"d/f{i:03}": b"x%d" % i for i in range(300)})
    tar = build_tar([
        TarEntry.dir("d"),
        *(TarEntry.file(f"d/f{i:03}", b"x%d" % i, mode=0o600) for i in range(150)),
        *(TarEntry.file(f"d/f{i:03}", b"new %d" % i) for i in range(150, 300)),
    ])  # fmt: skip
    return make_image(store, "wide:1", {}, parent=base, tar=tar)


def _count_items(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Records the size of every chunk of items (or their fields) the per-path sequences make, and fails any
    decoding of a whole string table (``LayerTable.names``)."""
    made: dict[str, list[int]] = {"wasted": [], "rewrites": [], "dive": []}
    for cls, key in ((WastedPaths, "wasted"), (Rewrites, "rewrites"), (InefficientPaths, "dive")):

        def fields(self: Any, start: int, stop: int, _orig: Any = cls.fields, _key: str = key) -> Any:
            out = _orig(self, start, stop)
            made[_key].append(len(out))
            return out

        monkeypatch.setattr(cls, "fields", fields)

    def no_names(self: LayerTable) -> list[bytes]:
        raise AssertionError("a report decoded a whole string table")

    monkeypatch.setattr(LayerTable, "names", no_names)
    return made


def test_text_report_makes_only_the_rows_it_shows(
    store: ContentStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Memory stays the table's: the text report makes the top rows it prints, nothing per path beyond them.
    _wide(store)
    made = _count_items(monkeypatch)
    assert main(["--root", str(store.root), "analyze", "wide:1", "--top", "3", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "(150 files)" in out  # the count of metadata-only rewrites, from the columns
    assert sum(made["wasted"]) == 3
    assert made["rewrites"] == []
    assert made["dive"] == []


def test_json_report_streams_every_list_a_chunk_at_a_time(
    store: ContentStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _wide(store)
    monkeypatch.setattr(_rows, "CHUNK", 64)
    monkeypatch.setattr(_analyze_report, "CHUNK", 64)
    made = _count_items(monkeypatch)
    assert main(["--root", str(store.root), "analyze", "wide:1", "--json", "--no-cache"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sum(made["wasted"]) == sum(made["rewrites"]) * 2 == sum(made["dive"]) == 300
    assert max(max(v) for v in made.values()) == 64  # never more than a chunk of items at a time
    monkeypatch.undo()
    # What was streamed is the document itself, with each layer's full file list.
    a = analyze(image)
    want = _analyze_report.to_json(a, argparse.Namespace(squash=None, drop=None, top=20), None)
    for layer in want["layers"]:
        layer["fileList"] = a.layer_files(layer["index"])
    assert doc == json.loads(json.dumps(want))
    assert a.wasted[0] == Wasted("/d/f100", 2, 4, (0, 1))  # most wasted first (x100..x299), then by path
    assert list(a.wasted[-2:]) == [w for w in a.wasted][-2:]
    assert a.rewrites == tuple(a.rewrites)


def _columns(names: list[bytes]) -> dict[str, Any]:
    """One layer's columns: a file per name (the string table holds exactly ``names``)."""
    n = len(names)
    strings = b"".join(p + b"\0" for p in names)
    offsets = np.cumsum([0] + [len(p) + 1 for p in names[:-1]]).astype(np.uint64)
    return {
        "path": np.arange(n, dtype=np.uint32), "kind": np.zeros(n, dtype=np.uint8),
        "size": np.ones(n, dtype=np.uint64), "mode": np.zeros(n, dtype=np.uint32),
        "uid": np.zeros(n, dtype=np.uint32), "gid": np.zeros(n, dtype=np.uint32),
        "mtime": np.zeros(n, dtype=np.int64), "sha256": np.zeros(32 * n, dtype=np.uint8),
        "link": np.full(n, -1, dtype=np.int32), "xattr_hash": np.zeros(n, dtype=np.uint64),
        "strings": np.frombuffer(strings, dtype=np.uint8).copy(), "offsets": offsets,
        "xattrs": np.zeros(n, dtype=np.uint8),
    }  # fmt: skip


def test_path_ids_follow_text_order() -> None:
    # Rust and the twin number paths in the order Python sorts their texts (invalid UTF-8 bytes as
    # surrogateescape's U+DC80..U+DCFF), so sorting by id sorts wasted paths and rewrites by path.
    names = [b"a\xc0", "a\u00e9".encode(), b"a-b", b"a/b", b"a", "a\U0001f600".encode(), b"a\xff", b"b"]
    n = len(names)
    cols = _columns(names)
    order = sorted(range(n), key=lambda i: names[i].decode(errors="surrogateescape"))
    want = np.argsort(order).astype(np.uint32)
    for image_pass in (imgcore._core.image_pass, imgcore.pure.analysis.image_pass):
        assert np.array_equal(image_pass([cols])[5][0], want), image_pass


def test_file_list_json_is_what_json_dumps_writes() -> None:
    # Names json.dumps escapes: quotes, backslashes, control characters, DEL, non-ASCII, beyond the BMP, and
    # bytes that are not UTF-8 (written as surrogateescape's \udcXX); links, xattrs, hidden rows, every kind.
    names = [
        b'q"\\b',
        b"c\n\r\t\x08\x0c\x01\x7f",
        "\u00e9\u4e2d".encode(),
        "\U0001f600".encode(),
        b"x\xc0\xff",
        b"plain",
    ]
    n = len(names)
    cols = _columns(names)
    cols["kind"] = np.array([0, 1, 2, 3, 7, 0], dtype=np.uint8)
    cols["link"] = np.array([-1, -1, 4, 0, -1, -1], dtype=np.int32)
    cols["xattrs"] = np.array([0, 3, 0, 0, 0, 17], dtype=np.uint8)
    cols["mtime"] = np.array([0, -5, 1, 2, 3, 1_700_000_000], dtype=np.int64)
    cols["sha256"] = np.arange(32 * n, dtype=np.uint8)
    changes = np.array([1, 2, 3, 4, 5, 9], dtype=np.uint8)
    hidden = np.array([-1, 2, -1, 0, -1, 1], dtype=np.int32)
    kinds = ("file", "dir", "symlink", "hardlink", "char", "block", "fifo", "whiteout", "opaque", "other")
    change = {1: "added", 2: "modified", 3: "deleted", 4: "opaque", 5: "metadata", 6: "same"}
    want = []
    for r in range(n):
        e: dict[str, Any] = {"path": "/" + names[r].decode(errors="surrogateescape"), "kind": kinds[cols["kind"][r]],
                             "change": change.get(int(changes[r]), ""), "size": 1, "mode": 0, "uid": 0, "gid": 0,
                             "mtime": int(cols["mtime"][r])}  # fmt: skip
        if cols["kind"][r] == 0:
            e["sha256"] = "sha256:" + cols["sha256"][32 * r : 32 * r + 32].tobytes().hex()
        if cols["link"][r] >= 0:
            e["link"] = names[cols["link"][r]].decode(errors="surrogateescape")
        if cols["xattrs"][r]:
            e["xattrs"] = int(cols["xattrs"][r])
        if hidden[r] != -1:
            e["hidden_by"] = int(hidden[r])
        want.append(json.dumps(e))
    for file_list in (imgcore._core.file_list_json, imgcore.pure.analysis.file_list_json):
        assert file_list(cols, changes, hidden, 0, n) == ", ".join(want), file_list
        assert file_list(cols, changes, hidden, 2, 4) == ", ".join(want[2:4])
        assert file_list(cols, changes, hidden, 3, 3) == ""
        with pytest.raises(ValueError, match="outside"):
            file_list(cols, changes, hidden, 2, n + 1)
