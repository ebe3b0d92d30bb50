"""Every writer raced against garbage collection, as separate ``imgcore`` processes (issue 8 item 2).

Each round copies a template store, then starts a writer (pull, pull --unpack, load, commit with either driver,
import, tag, create) and a collector (``prune``, ``prune -a``, ``rmi -f`` of an image sharing the writer's base)
as two ``python3 -m imgcore --root R ...`` processes, one of them started up to 0.3 s after the other (random), so
the rounds interleave differently. After each round: the writer succeeded or failed with a clear error; every tag
and index entry is a whole image; every container has its image's blobs; ``fsck`` is clean (:func:`check_store`).
Where the collector may not remove the writer's result (``prune`` keeps tagged images, ``rmi -f v2`` only untags
v2 while another tag or a container holds it, ``prune -a`` keeps containers), a successful writer's result must
still be there.

Rounds per pair: 2 by default, 30 with ``IMGCORE_LONG=1``, or ``$IMGCORE_RACE_ROUNDS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgcore.containers.manager import Containers
from imgcore.image.catalog import resolve
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
    world,  # noqa: F401  (fixture)
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_mounts_left")]

ROUNDS = rounds("IMGCORE_RACE_ROUNDS", 2, 30)


@dataclass(frozen=True)
class Writer:
    name: str
    template: Callable[[World], Path]
    prepare: Callable[[World, Path], None]  # in-process set-up of the round's store
    args: Callable[[World], tuple[str, ...]]
    result: Callable[[World, ContentStore], None]  # asserts what a successful writer left


def _nothing(w: World, root: Path) -> None:
    pass


def _tagged(ref: str) -> Callable[[World, ContentStore], None]:
    def check(w: World, store: ContentStore) -> None:
        assert_valid_image(store, ref)

    return check


def _pulled(w: World, store: ContentStore) -> None:
    assert_valid_image(store, w.v1)


def _commit_container(driver: str) -> Callable[[World, Path], None]:
    def prepare(w: World, root: Path) -> None:
        container_with_change(root, w.v1, driver, "c")

    return prepare


def _committed_on_v1(w: World, store: ContentStore) -> None:
    assert_valid_image(store, "committed:1")
    assert len(resolve(store, "committed:1").layers) == 3  # v1's two layers and the container's change


def _created(w: World, store: ContentStore) -> None:
    names = [c.name for c in Containers(store).list()]
    assert names == ["made"], names


WRITERS = [
    Writer("pull", lambda w: w.only_v2, _nothing, lambda w: ("pull", "-q", w.v1), _pulled),
    Writer("pull-unpack", lambda w: w.only_v2, _nothing, lambda w: ("pull", "-q", "--unpack", w.v1), _pulled),
    Writer("load", lambda w: w.only_v2, _nothing, lambda w: ("load", "-q", "-i", str(w.archive)), _pulled),
    Writer(
        "commit-overlay",
        lambda w: w.both,
        _commit_container("overlay"),
        lambda w: ("commit", "c", "committed:1"),
        _committed_on_v1,
    ),
    Writer(
        "commit-copy",
        lambda w: w.both,
        _commit_container("copy"),
        lambda w: ("commit", "c", "committed:1"),
        _committed_on_v1,
    ),
    Writer(
        "import",
        lambda w: w.only_v2,
        _nothing,
        lambda w: ("import", str(w.rootfs_tar), "imported:1"),
        _tagged("imported:1"),
    ),
    Writer("tag", lambda w: w.both, _nothing, lambda w: ("tag", w.v2, "tagged:1"), _tagged("tagged:1")),
    Writer("create", lambda w: w.both, _nothing, lambda w: ("create", "--name", "made", w.v2), _created),
]

COLLECTORS: dict[str, Callable[[World], tuple[str, ...]]] = {
    "prune": lambda w: ("prune", "-f"),
    "prune-a": lambda w: ("prune", "-a", "-f"),
    "rmi-f": lambda w: ("rmi", "-f", w.v2),
}


def _keeps_result(writer: str, collector: str) -> bool:
    """Whether the collector must leave a successful writer's result in place whatever the order."""
    if collector == "prune":
        return True
    if collector == "prune-a":
        return writer in ("create",)  # a container is never pruned; every unused image may be
    # rmi -f v2: tag's and create's source is v2; a tag made first survives (rmi untags v2 only), a container too
    return True


@pytest.mark.parametrize("collector", sorted(COLLECTORS))
@pytest.mark.parametrize("writer", WRITERS, ids=[w.name for w in WRITERS])
def test_writer_races_collector(world: World, writer: Writer, collector: str, tmp_path: Path) -> None:  # noqa: F811
    rnd = seeded_random(f"{writer.name} vs {collector}")
    outcomes = {"ok": 0, "failed": 0}
    for i in range(ROUNDS):
        root = copy_store(writer.template(world), tmp_path / f"r{i}")
        writer.prepare(world, root)
        wargs, gargs = writer.args(world), COLLECTORS[collector](world)
        delay = rnd.uniform(-0.3, 0.3)  # > 0: the collector starts later, < 0: the writer does
        wp = None if delay < 0 else start(root, *wargs)
        time.sleep(abs(delay))
        gp = start(root, *gargs)
        wp = wp or start(root, *wargs)
        wo, go = finish(wp, wargs), finish(gp, gargs)
        context = f"round {i}, collector {delay:+.3f}s after the writer"
        assert go.returncode == 0 or clear_failure(go), f"{context}: collector:\n{go}"
        assert wo.returncode == 0 or clear_failure(wo), f"{context}: writer:\n{wo}"
        check_store(root)
        if wo.returncode == 0:
            outcomes["ok"] += 1
            if _keeps_result(writer.name, collector):
                writer.result(world, ContentStore(root))
        else:
            outcomes["failed"] += 1
        if i == ROUNDS - 1 and ROUNDS > 2:  # a second collection of what survived finds nothing it may not take
            again = imgcore(root, *gargs)
            assert again.returncode == 0 or clear_failure(again), str(again)
            check_store(root)
    print(f"{writer.name} vs {collector}: {ROUNDS} rounds, {outcomes}")


def test_two_creates_of_one_name(world: World, tmp_path: Path) -> None:  # noqa: F811
    """Two ``create --name dup`` at once: exactly one succeeds, one container named dup exists."""
    for i in range(ROUNDS):
        root = copy_store(world.both, tmp_path / f"r{i}")
        args = ("create", "--name", "dup", world.v1)
        procs = [start(root, *args), start(root, *args)]
        outs = [finish(p, args) for p in procs]
        ok = [o for o in outs if o.returncode == 0]
        assert len(ok) == 1, "\n".join(map(str, outs))
        lost = next(o for o in outs if o.returncode != 0)
        assert clear_failure(lost), str(lost)
        assert 'name "/dup" is already in use' in lost.stderr, str(lost)
        containers = Containers(ContentStore(root)).list()
        assert [c.name for c in containers] == ["dup"]
        assert containers[0].id.startswith(ok[0].stdout.strip())
        check_store(root)
