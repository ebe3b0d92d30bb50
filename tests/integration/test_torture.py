"""Eight processes at once on one store for a bounded time (issue 10, item 7).

Eight workers (threads here, each running ``imgcore`` commands as separate processes, so about eight imgcore
processes run at any moment) share one store made from the race template (v1 and v2 pulled and unpacked).
Each picks at random, until the time is up (15 s by default, ``$IMGCORE_TORTURE_SECONDS``, or 120 s with
``IMGCORE_LONG=1``): pull v1 or v2 (sometimes ``--unpack``) and tag it with a name of its own; create a
container (either driver), copy a file into it, commit it under a name of its own and remove it; tag one of its
own names again; ``rmi`` one of its own names; ``prune``. Every command succeeds or fails with one clear error.

At the end the store must be whole (:func:`check_store`: fsck clean, every tag and index entry a valid image,
every container's image present, no partial blob), and every name whose creating command reported success and
that no later reported-successful ``rmi`` of the same worker removed must still resolve to a whole image. The
seed is printed (``IMGCORE_RACE_SEED`` replays the choices).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imgcore.containers.manager import Containers
from imgcore.store import ContentStore
from tests.validate import assert_valid_image

from .race_support import (
    LONG,
    Outcome,
    World,
    check_store,
    clear_failure,
    copy_store,
    imgcore,
    no_mounts_left,  # noqa: F401  (fixture)
    seeded_random,
    world,  # noqa: F401  (fixture)
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_mounts_left")]

WORKERS = 8
SECONDS = float(os.environ.get("IMGCORE_TORTURE_SECONDS") or (120 if LONG else 15))


@dataclass
class Ledger:
    """What one worker's successful commands created and removed, in its own order."""

    worker: int
    alive: list[str] = field(default_factory=list)  # names it created and has not removed
    removed: list[str] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)
    containers_left: list[str] = field(default_factory=list)  # an rm that failed (clearly) leaves its container
    counts: dict[str, int] = field(default_factory=dict)


def _worker(w: World, root: Path, ledger: Ledger, seed: int, deadline: float, payload: Path) -> None:
    rng = random.Random(seed)  # one Random per worker: the threads never share one
    n = 0

    def run(kind: str, *args: str) -> bool:
        o = imgcore(root, *args)
        ledger.counts[kind] = ledger.counts.get(kind, 0) + 1
        if o.returncode == 0:
            return True
        assert clear_failure(o), f"worker {ledger.worker}: neither success nor a clear error:\n{o}"
        ledger.failures.append(o)
        return False

    while time.monotonic() < deadline:
        n += 1
        mine = f"local/w{ledger.worker}:{n}"
        op = rng.choice(("pull", "pull", "commit", "tag", "rmi", "prune"))
        if op == "pull":
            ref = rng.choice((w.v1, w.v2))
            unpack = ("--unpack",) if rng.random() < 0.5 else ()
            if run("pull", "pull", "-q", *unpack, ref) and run("tag", "tag", ref, mine):
                ledger.alive.append(mine)
        elif op == "commit":
            name = f"w{ledger.worker}c{n}"
            driver = rng.choice(("copy", "overlay"))
            if not run("create", "create", "--driver", driver, "--name", name, rng.choice((w.v1, w.v2))):
                continue
            if run("cp", "cp", str(payload), f"{name}:/added-{n}.txt") and run("commit", "commit", name, mine):
                ledger.alive.append(mine)
            if not run("rm", "rm", "-f", name):
                ledger.containers_left.append(name)
        elif op == "tag" and ledger.alive:
            if run("tag", "tag", rng.choice(ledger.alive), mine):
                ledger.alive.append(mine)
        elif op == "rmi" and ledger.alive:
            victim = rng.choice(ledger.alive)
            if run("rmi", "rmi", victim):
                ledger.alive.remove(victim)
                ledger.removed.append(victim)
        elif op == "prune":
            run("prune", "prune", "-f")


def test_eight_processes_on_one_store(world: World, tmp_path: Path) -> None:  # noqa: F811
    root = copy_store(world.both, tmp_path / "store")
    payload = tmp_path / "payload.txt"
    payload.write_text("added by a torture worker\n")
    rng = seeded_random("torture")
    ledgers = [Ledger(i) for i in range(WORKERS)]
    deadline = time.monotonic() + SECONDS
    errors: list[BaseException] = []

    def guarded(ledger: Ledger, seed: int) -> None:
        try:
            _worker(world, root, ledger, seed, deadline, payload)
        except BaseException as e:  # reported after the join, with the other workers' results
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(ld, rng.randrange(1 << 30))) for ld in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 600)
    assert not errors, errors[0]
    totals: dict[str, int] = {}
    for ld in ledgers:
        for k, v in ld.counts.items():
            totals[k] = totals.get(k, 0) + v
    print(f"torture: {SECONDS:g}s, commands {totals}, clear failures {sum(len(ld.failures) for ld in ledgers)}")
    assert totals.get("pull", 0) > 0, f"too few commands ran: {totals}"
    assert totals.get("commit", 0) > 0, f"too few commands ran: {totals}"

    check_store(root)
    store = ContentStore(root)
    for ld in ledgers:
        for name in ld.alive:
            assert_valid_image(store, name)  # created by a reported success, never removed by one
    for name in (world.v1, world.v2):
        assert_valid_image(store, name)
    left = sorted(c.name for c in Containers(store).list())
    assert left == sorted(n for ld in ledgers for n in ld.containers_left), "containers left behind or lost"
