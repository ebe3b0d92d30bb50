"""``imgcore analyze``'s output cache (cli/_output_cache.py): a second analysis prints what the first printed,
with the same exit status, without importing numpy; a damaged entry is a miss, recomputed and rewritten; the key
follows the image's tags and the options; output too big to keep is only streamed; old entries are evicted."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgcore.cli import _output_cache, main
from imgcore.image.catalog import tag
from imgcore.store import ContentStore
from tests.images_helpers import make_image
from tests.strategies import TarEntry, build_tar


def _image(store: ContentStore) -> None:
    base = make_image(store, "base:1", {"etc/a": b"x" * 1000, "usr/bin/tool": b"y" * 5000})
    tar = build_tar([TarEntry.dir("etc"), TarEntry.file("etc/a", b"x" * 1000, mode=0o600),
                     TarEntry.file("new", b"n" * 700)])  # fmt: skip
    make_image(store, "app:1", {}, parent=base, tar=tar)


def _run(store: ContentStore, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--root", str(store.root), "analyze", *args])
    return code, capsys.readouterr().out


def _entries(store: ContentStore) -> list[Path]:
    d = store.paths.analysis_output
    return sorted(d.iterdir()) if d.is_dir() else []


def test_second_analysis_prints_the_same_without_numpy(store: ContentStore, capsys: pytest.CaptureFixture[str]) -> None:
    _image(store)
    first = _run(store, capsys, "app:1")
    assert first[0] == 0
    assert "dive:" in first[1]
    assert len(_entries(store)) == 1
    assert _run(store, capsys, "app:1") == first
    # The CI rules' failing exit status is kept with the report.
    ci = _run(store, capsys, "app:1", "--ci")
    assert ci[0] == 1
    assert "Result:FAIL" in ci[1]
    assert _run(store, capsys, "app:1", "--ci") == ci
    js = _run(store, capsys, "app:1", "--json")
    assert len(_entries(store)) == 3
    # A fresh process: the cached report is printed and numpy is never imported.
    code = ("import sys; from imgcore.cli import main; rc = main(sys.argv[1:]); "
            "assert 'numpy' not in sys.modules, 'numpy imported'; sys.exit(rc)")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for args, (want_code, want_out) in ((["app:1"], first), (["app:1", "--json"], js), (["app:1", "--ci"], ci)):
        proc = subprocess.run([sys.executable, "-c", code, "--root", str(store.root), "analyze", *args],
                              capture_output=True, text=True, env=env)  # fmt: skip
        assert (proc.returncode, proc.stdout) == (want_code, want_out), proc.stderr


def test_key_follows_tags_and_options(store: ContentStore, capsys: pytest.CaptureFixture[str]) -> None:
    _image(store)
    _, out = _run(store, capsys, "app:1")
    assert "drop" not in out
    _, dropped = _run(store, capsys, "app:1", "--drop", "/etc/*")
    assert "drop /etc/*: -" in dropped
    tag(store, "app:1", "app:2")
    assert _run(store, capsys, "app:1")[1] == out
    assert len(_entries(store)) == 3  # the image's tags changed: another key (the same report)
    _, base = _run(store, capsys, "base:1")
    tag(store, "base:1", "app:1")  # app:1 now names the base image: its report, not the cached one
    _, moved = _run(store, capsys, "app:1")
    assert moved != out
    assert moved.split("\n", 1)[1] == base.split("\n", 1)[1]
    n = len(_entries(store))
    _run(store, capsys, "app:2", "--no-cache")
    assert len(_entries(store)) == n  # --no-cache neither reads nor writes the cache


@pytest.mark.parametrize("damage", ["body", "header", "length", "truncated", "empty", "symlink"])
def test_damaged_entry_is_recomputed(
    store: ContentStore, capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    _image(store)
    want = _run(store, capsys, "app:1", "--ci")
    (entry,) = _entries(store)
    raw = entry.read_bytes()
    head, body = raw.split(b"\n", 1)
    fake = b"dive: efficiency 100 %\n"
    if damage == "body":
        entry.write_bytes(head + b"\n" + body.replace(b"FAIL", b"PASS"))
    elif damage == "header":
        entry.write_bytes(head.replace(b" 1 ", b" 0 ", 1) + b"\n" + body)  # exit status changed
    elif damage == "length":
        entry.write_bytes(head + b"\n" + body + b"x")
    elif damage == "truncated":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        entry.write_bytes(b"")
    else:
        # A whole, validly sealed entry elsewhere: it must not be followed.
        with _output_cache.Recorder(io.StringIO(), tmp_path) as r:
            r.write(fake.decode())
            r.save("f" * 64, 0)
        outside = tmp_path / ("f" * 64)
        assert _output_cache.read(tmp_path, outside.name) == (0, fake.decode())
        entry.unlink()
        entry.symlink_to(outside)
    assert _run(store, capsys, "app:1", "--ci") == want
    (again,) = _entries(store)
    assert not again.is_symlink()
    assert again.read_bytes() == raw


def test_big_output_is_streamed_not_kept_and_old_entries_go(
    store: ContentStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _image(store)
    monkeypatch.setattr(_output_cache, "MAX_BYTES", 100)
    code, out = _run(store, capsys, "app:1", "--json")
    assert code == 0
    assert len(out) > 100
    assert '"fileList"' in out
    assert _entries(store) == []
    monkeypatch.undo()
    monkeypatch.setattr(_output_cache, "MAX_ENTRIES", 2)
    for top in ("1", "2", "3"):
        _run(store, capsys, "app:1", "--top", top)
    assert len(_entries(store)) == 2
    tmp = store.paths.analysis_output / ".tmp-another-writer"
    tmp.write_bytes(b"")
    _run(store, capsys, "app:1", "--top", "4")
    assert tmp.exists()  # another writer's temporary file is never evicted
