"""SIGKILL at a random moment of each command (issue 10 item 7, bounded): the store stays whole and a rerun works.

For each of pull, commit, load, import, tag, create, prune and rmi: one calibration run (unkilled) measures how
long the command takes, then each try copies a template store, starts ``python3 -m imgcore --root R ...``, kills
it with SIGKILL after a random delay between the interpreter's start-up and the end of that time, and checks:
``fsck`` is clean and every tag, index entry and container is whole (:func:`check_store`, which also looks for
partial blobs under ``blobs/``); every tag from before the command that the command may not remove still
resolves to a valid image; a rerun of the same command succeeds (a ``create --name`` or ``rmi`` that had already
finished fails the second time, clearly).

Tries per command: 2 by default, 50 with ``IMGCORE_LONG=1``, or ``$IMGCORE_CRASH_TRIES``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgcore.containers.manager import Containers
from imgcore.store import ContentStore
from tests.validate import assert_valid_image

from .race_support import (
    World,
    check_store,
    clear_failure,
    container_with_change,
    copy_store,
    finish,
    imgcore,
    no_mounts_left,  # noqa: F401  (fixture)
    rounds,
    seeded_random,
    start,
    tags_of,
    world,  # noqa: F401  (fixture)
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_mounts_left")]

TRIES = rounds("IMGCORE_CRASH_TRIES", 2, 50)


def _container(w: World, root: Path) -> None:
    container_with_change(root, w.v1, "overlay", "c")


def _nothing(w: World, root: Path) -> None:
    pass


@dataclass(frozen=True)
class Command:
    name: str
    template: Callable[[World], Path]
    args: Callable[[World], tuple[str, ...]]
    keeps: Callable[[World], list[str]]  # tags from before that must survive, killed or not
    prepare: Callable[[World, Path], None] = _nothing
    makes: Callable[[World], str | None] = lambda w: None  # the tag a successful run leaves
    done: Callable[[World, ContentStore], bool] | None = None  # the first run got far enough that a second one
    # fails by design (the name is taken, the image is gone), even if it was killed before it could exit


COMMANDS = [
    Command("pull", lambda w: w.only_v2, lambda w: ("pull", "-q", w.v1), lambda w: [w.v2], makes=lambda w: w.v1),
    Command(
        "commit",
        lambda w: w.both,
        lambda w: ("commit", "c", "crashed:1"),
        lambda w: [w.v1, w.v2],
        _container,
        makes=lambda w: "crashed:1",
    ),
    Command(
        "load",
        lambda w: w.only_v2,
        lambda w: ("load", "-q", "-i", str(w.archive)),
        lambda w: [w.v2],
        makes=lambda w: w.v1,
    ),
    Command(
        "import",
        lambda w: w.only_v2,
        lambda w: ("import", str(w.rootfs_tar), "imported:1"),
        lambda w: [w.v2],
        makes=lambda w: "imported:1",
    ),
    Command(
        "tag", lambda w: w.both, lambda w: ("tag", w.v2, "tagged:1"), lambda w: [w.v1, w.v2], makes=lambda w: "tagged:1"
    ),
    Command(
        "create",
        lambda w: w.both,
        lambda w: ("create", "--name", "cc", w.v1),
        lambda w: [w.v1, w.v2],
        done=lambda w, s: any(c.name == "cc" for c in Containers(s).list()),
    ),
    Command("prune", lambda w: w.both, lambda w: ("prune", "-a", "-f"), lambda w: [w.v1], _container),
    Command(
        "rmi",
        lambda w: w.both,
        lambda w: ("rmi", "-f", w.v2),
        lambda w: [w.v1],
        done=lambda w, s: w.v2 not in tags_of(s),
    ),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_sigkill_leaves_a_whole_store(world: World, command: Command, tmp_path: Path) -> None:  # noqa: F811
    rnd = seeded_random(f"crash {command.name}")
    args = command.args(world)
    calib = copy_store(command.template(world), tmp_path / "calibration")
    command.prepare(world, calib)
    t0 = time.monotonic()
    first = imgcore(calib, *args)
    took = time.monotonic() - t0
    assert first.returncode == 0, str(first)
    check_store(calib)
    t0 = time.monotonic()
    assert imgcore(calib, "images").returncode == 0
    startup = time.monotonic() - t0  # kills before imgcore has started its work test little
    killed = 0
    for i in range(TRIES):
        root = copy_store(command.template(world), tmp_path / f"t{i}")
        command.prepare(world, root)
        delay = rnd.uniform(min(startup, took) * 0.8, took * 1.05)
        proc = start(root, *args)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out = finish(proc, args)
        killed += out.returncode == -signal.SIGKILL
        if out.returncode == 0:
            took, startup = delay, min(startup, delay * 0.7)  # the machine is faster than at calibration: aim earlier
        context = f"try {i}: killed after {delay:.3f}s of {took:.3f}s ({out.returncode})"
        assert out.returncode in (0, -signal.SIGKILL), f"{context}\n{out}"
        try:
            check_store(root)
            store = ContentStore(root)
            for tag in command.keeps(world):
                assert_valid_image(store, tag)
            done = command.done is not None and command.done(world, store)
            rerun = imgcore(root, *args)
            if done:
                assert clear_failure(rerun), str(rerun)
            else:
                assert rerun.returncode == 0, str(rerun)
            check_store(root)
            made = command.makes(world)
            if made is not None:
                assert_valid_image(ContentStore(root), made)
        except AssertionError as e:
            raise AssertionError(f"{context}: {e}") from e
    print(f"crash {command.name}: {TRIES} tries, {killed} killed before they exited, the last aimed within {took:.2f}s")
