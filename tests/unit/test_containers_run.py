"""Run-related logic that needs no runtime: which changes are the runtime's, docker ps's STATUS words."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pytest

from imgcore._core import Change
from imgcore.cli.containers import _ps_matches, _split_cp, _status
from imgcore.containers.manager import Container, _without_runtime_paths
from imgcore.errors import InvalidArgument
from imgcore.runtime._state import State

NOW = _dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=_dt.UTC)


def C(kind: str, path: str, meta: bool = False) -> Change:
    return Change(kind, path, meta)


def test_runtime_mountpoints_and_the_directories_they_alone_changed_are_left_out() -> None:
    changes = [C("C", "/etc", True), C("A", "/etc/hosts"), C("A", "/etc/hostname"), C("A", "/sys"),
               C("C", "/usr", True), C("C", "/usr/local", True), C("A", "/usr/local/vol"),
               C("C", "/srv", True), C("A", "/srv/real")]  # fmt: skip
    made = {"/etc/hosts", "/etc/hostname", "/sys", "/usr/local/vol"}
    assert _without_runtime_paths(changes, made) == [C("C", "/srv", True), C("A", "/srv/real")]
    # a real change beside a mountpoint keeps its parent
    kept = _without_runtime_paths([C("C", "/etc", True), C("A", "/etc/added"), C("A", "/etc/hosts")], made)
    assert kept == [C("C", "/etc", True), C("A", "/etc/added")]
    # nothing recorded: nothing removed (a user's own /etc/hosts stays)
    assert _without_runtime_paths(changes, set()) == changes


def _at(seconds_ago: float) -> str:
    when = NOW - _dt.timedelta(seconds=seconds_ago)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@pytest.mark.parametrize(
    ("state", "text"),
    [
        (State("created"), "Created"),
        (State("running", started_at=_at(5)), "Up 5 seconds"),
        (State("running", started_at=_at(0.2)), "Up Less than a second"),
        (State("paused", started_at=_at(120)), "Up 2 minutes (Paused)"),
        (State("exited", exit_code=0, finished_at=_at(3)), "Exited (0) 3 seconds ago"),
        (State("exited", exit_code=137, finished_at=_at(3600)), "Exited (137) About an hour ago"),
    ],
)
def test_ps_status_is_dockers(state: State, text: str) -> None:
    assert _status(state, NOW) == text


def test_ps_filters(tmp_path: Path) -> None:
    exited = State("exited", exit_code=3)
    c = Container(id="ab12" + "0" * 60, name="web-1", image="box:1", manifest_digest="sha256:" + "0" * 64,
                  image_id="sha256:" + "1" * 64, created="", driver="copy", path=tmp_path, chain_ids=())  # fmt: skip
    assert _ps_matches(c, exited, ["status=exited"])
    assert _ps_matches(c, exited, ["status=running", "status=exited"])
    assert not _ps_matches(c, exited, ["status=running"])
    assert _ps_matches(c, exited, ["exited=3"])
    assert not _ps_matches(c, exited, ["exited=0"])
    assert _ps_matches(c, exited, ["name=web", "status=exited"])  # a search in the name, as docker's
    assert _ps_matches(c, exited, ["name=^web-1$"])
    assert not _ps_matches(c, exited, ["name=db"])
    assert _ps_matches(c, exited, ["id=ab12"])
    assert not _ps_matches(c, exited, ["id=12ab"])
    with pytest.raises(InvalidArgument, match="invalid filter 'nope'"):
        _ps_matches(c, exited, ["nope=1"])
    with pytest.raises(InvalidArgument, match=r"invalid filter name=\(: "):
        _ps_matches(c, exited, ["name=("])


def test_cp_arguments() -> None:
    assert _split_cp("web:/usr/local") == ("web", "/usr/local")
    assert _split_cp("web:") == ("web", "/")
    assert _split_cp("/host/a:b") == (None, "/host/a:b")
    assert _split_cp("./a:b") == (None, "./a:b")
    assert _split_cp("-") == (None, "-")
    assert _split_cp("plain") == (None, "plain")
