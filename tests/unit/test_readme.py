"""README.md's library snippet runs as written: the seed's workflow with one ``import imgcore``.

The test only prepares what the snippet names and says it needs: ``rootfs.tar.gz`` in the working directory (a
busybox root with tomcat's ``webapps.dist/`` and empty ``webapps/``) and ``IMGCORE_ROOT`` pointing at a fresh
store. Then it checks what the snippet claims: the new image, its history, the copied web apps.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

import imgcore
from tests.conftest import require_tool

README = Path(__file__).resolve().parents[2] / "README.md"
TOP_COMMANDS = (
    "bash scripts/demo.sh     # installs imgcore (release build) and runs the main job: the image workflow in a fresh"
    " store\n"
    "bash scripts/test.sh     # installs everything and runs the whole suite: Rust fmt/clippy/tests, ruff, mypy,"
    " stubtest, pytest (integration included)\n"
)


def library_snippet() -> str:
    """The first ``python`` block of the README's "The library" section."""
    text = README.read_text()
    section = text[text.index("\n## The library\n") :]
    match = re.search(r"^```python\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert match is not None, "README's library section has no python block"
    return match.group(1)


def make_rootfs(path: Path, busybox: Path) -> None:
    """A tiny tomcat-like root: busybox's sh and cp, web apps in webapps.dist/, an empty webapps/."""

    def add(tar: tarfile.TarFile, name: str, data: bytes | None = None, link: str | None = None) -> None:
        info = tarfile.TarInfo(name)
        info.mode = 0o755 if data is None or name.startswith("bin/") else 0o644
        if link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, link
        elif data is None:
            info.type = tarfile.DIRTYPE
        else:
            info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data is not None else None)

    with tarfile.open(path, "w:gz") as tar:
        for d in ("bin", "etc", "tmp", "usr", "usr/local", "usr/local/tomcat", "usr/local/tomcat/webapps"):
            add(tar, d)
        add(tar, "bin/busybox", busybox.read_bytes())
        for applet in ("sh", "cp", "ls"):
            add(tar, f"bin/{applet}", link="busybox")
        for d in ("webapps.dist", "webapps.dist/ROOT", "webapps.dist/docs"):
            add(tar, f"usr/local/tomcat/{d}")
        add(tar, "usr/local/tomcat/webapps.dist/ROOT/index.html", b"<h1>Apache Tomcat</h1>\n")
        add(tar, "usr/local/tomcat/webapps.dist/docs/index.html", b"<p>docs</p>\n")


def test_top_of_readme_is_the_two_commands() -> None:
    assert README.read_text().startswith("# imgcore\n\n```sh\n" + TOP_COMMANDS + "```\n")


def test_snippet_is_short_with_one_import() -> None:
    code = library_snippet()
    lines = [line for line in code.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith(("import ", "from "))] == ["import imgcore"]
    assert len(lines) <= 14, f"the library snippet grew to {len(lines)} lines"
    for step in ("imgcore.Store(", "store.create(", "cp -r webapps.dist/* webapps", 'message="newtomcat"',
                 'author="xxx"', "store.images()"):  # fmt: skip
        assert step in code


def test_snippet_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    busybox = Path(require_tool("busybox")).resolve()
    make_rootfs(tmp_path / "rootfs.tar.gz", busybox)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMGCORE_ROOT", str(tmp_path / "store"))
    store = imgcore.Store(tmp_path / "store")
    try:
        namespace: dict[str, object] = {"__name__": "readme"}
        exec(compile(library_snippet(), f"{README}:library", "exec"), namespace)
        out = capsys.readouterr().out
        check_results(store, tmp_path, out)
    finally:
        for container in store.containers():  # unmount the overlays before tmp_path goes
            container.remove()


def check_results(store: imgcore.Store, tmp_path: Path, out: str) -> None:
    """What the snippet claims: the new image with its message and author, the copied apps, the shared base."""
    assert store.root == tmp_path / "store"
    new = store.image("new_tomcat:1.0")
    assert (new.history[-1].comment, new.history[-1].author) == ("newtomcat", "xxx")
    assert [i.repo_tags for i in store.images()] == [["new_tomcat:1.0"], ["tomcat:latest"]]
    assert "['new_tomcat:1.0']" in out
    assert "('A', '/usr/local/tomcat/webapps/ROOT/index.html')" in out
    assert "('newtomcat', 'xxx')]" in out
    tomcat = store.image("tomcat:latest")
    assert new.layers[0] == tomcat.layers[0]  # the base layer is the same blob, stored once
    check = store.create("new_tomcat:1.0")
    listing = check.exec(["ls", "webapps"], capture=True)
    assert listing.stdout.split() == [b"ROOT", b"docs"]
