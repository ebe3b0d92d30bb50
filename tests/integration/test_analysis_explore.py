"""``imgcore analyze -i``: the textual explorer driven in a real terminal (tmux send-keys / capture-pane): the
layers list, the merged tree as of the selected layer with each entry's mark (+ added, m metadata-only,
- removed, w waste: hidden by a later layer), the filters, layer selection and quitting."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgcore.store import ContentStore
from tests.conftest import require_tool
from tests.images_helpers import make_image
from tests.strategies import TarEntry, build_tar

pytestmark = pytest.mark.integration


class Term:
    def __init__(self, tmux: str, name: str) -> None:
        self.tmux, self.name = tmux, name

    def screen(self) -> str:
        return subprocess.run([self.tmux, "capture-pane", "-t", self.name, "-p"], check=True, capture_output=True,
                              text=True).stdout  # fmt: skip

    def keys(self, *keys: str) -> None:
        subprocess.run([self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on the screen:\n{screen}")
            time.sleep(0.2)


@pytest.fixture
def term(store: ContentStore, tmp_path: Path) -> Iterator[Term]:
    tmux = require_tool("tmux")
    base = make_image(store, "base:1", {"etc/a": b"x" * 1000, "usr/bin/tool": b"y" * 5000, "opt/big/f1": b"z" * 3000})
    tar = build_tar([
        TarEntry.dir("etc"), TarEntry.file("etc/a", b"x" * 1000, mode=0o600),
        TarEntry.dir("opt"), TarEntry.file("opt/.wh.big"),
        TarEntry.dir("copy"), TarEntry.file("copy/tool", b"y" * 5000),
    ])  # fmt: skip
    make_image(store, "app:1", {}, parent=base, tar=tar, created_by="RUN chmod 600 /etc/a")
    name = f"imgcore-explore-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "exited"
    cmd = (f"{shlex.quote(sys.executable)} -m imgcore --root {shlex.quote(str(store.root))} analyze -i app:1; "
           f"echo $? > {shlex.quote(str(done))}; sleep 30")  # fmt: skip
    env = ["-e", f"PYTHONPATH={':'.join(p for p in sys.path if p)}"]
    subprocess.run([tmux, "new-session", "-d", "-s", name, "-x", "150", "-y", "40", *env, cmd], check=True)
    subprocess.run([tmux, "resize-window", "-t", name, "-x", "150", "-y", "40"], check=False)
    t = Term(tmux, name)
    t.done = done  # type: ignore[attr-defined]
    try:
        yield t
    finally:
        subprocess.run([tmux, "kill-session", "-t", name], check=False)


def test_explorer_layers_tree_filters_and_quit(term: Term) -> None:
    screen = term.wait_for("filter: all")
    # Both layers are listed with their counts and commands; the top layer is selected.
    assert "make_image base:1" in screen
    assert "RUN chmod 600 /etc/a" in screen
    assert "layer 1:" in screen
    assert "copy/" in screen
    term.keys("e")
    screen = term.wait_for("+ tool")
    assert "m a  1kB" in screen  # the chmod copy: metadata-only
    assert "- big" in screen  # the whiteout of /opt/big
    term.keys("r")
    screen = term.wait_for("filter: removed")
    assert "copy/" not in screen
    assert "opt/" in screen
    term.keys("k")  # layer 0
    screen = term.wait_for("layer 0:")
    term.keys("w", "e")
    screen = term.wait_for("w f1")  # /opt/big/f1, deleted by layer 1
    assert "w a  1kB" in screen  # /etc/a, copied again by layer 1's chmod
    assert "usr/" not in screen
    assert "copy/" not in screen
    term.keys("q")
    deadline = time.monotonic() + 20
    done: Path = term.done  # type: ignore[attr-defined]
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done.read_text().strip() == "0"
