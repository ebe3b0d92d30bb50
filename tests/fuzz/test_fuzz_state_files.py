"""Fuzz the container state-file schemas (``config.json``, ``run.json``, the monitor's ``state.json``): arbitrary
bytes and mutated valid records give a checked record or ``InvalidStateFile``, never another exception; what
parses is usable by the commands that list containers (``ps``'s STATUS, the record's fields).

Budgets are small by default; ``IMGCORE_LONG=1`` multiplies them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import given
from hypothesis import strategies as st

from imgcore import _json
from imgcore._core import Digest
from imgcore.cli.containers import _status
from imgcore.containers.manager import Container, check_run_record
from imgcore.errors import InvalidStateFile
from imgcore.runtime._state import STATUSES, parse_state

from ._support import DIGEST, budget, mutants, raw_hostile

CID = "c" * 64
_T = TypeVar("_T")
raw_inputs = st.one_of(st.binary(max_size=512), raw_hostile, st.text(max_size=200).map(str.encode))

states = st.fixed_dictionaries(
    {"status": st.sampled_from(STATUSES)},
    optional={
        "pid": st.integers(0, 2**31),
        "monitor_pid": st.integers(0, 2**31),
        "started_at": st.sampled_from(["", "2024-01-02T03:04:05.123Z"]),
        "finished_at": st.sampled_from(["", "2024-01-02T03:04:06Z"]),
        "exit_code": st.none() | st.integers(-255, 255),
        "error": st.text(max_size=10),
        "id": st.just(CID),
        "tty": st.booleans(),
        "open_stdin": st.booleans(),
        "runtime": st.just("/usr/sbin/runc"),
        "runtime_root": st.just("/x"),
    },
)
records = st.fixed_dictionaries(
    {
        "id": st.just(CID),
        "name": st.sampled_from(["web", "happy_curie", "a.b-c"]),
        "image": st.text(max_size=10),
        "manifest_digest": st.just(DIGEST),
        "image_id": st.just(DIGEST),
        "created": st.just("2024-01-02T03:04:05.000000Z"),
        "driver": st.sampled_from(["copy", "overlay"]),
        "chain_ids": st.lists(st.just(DIGEST), max_size=2),
        "skipped": st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)).map(list), max_size=2),
    }
)
str_lists = st.none() | st.lists(st.text(max_size=5), max_size=2)
run_records = st.fixed_dictionaries(
    {
        "options": st.fixed_dictionaries(
            {
                "argv": str_lists,
                "entrypoint": str_lists,
                "env": st.lists(st.just("A=1"), max_size=1),
                "workdir": st.none() | st.just("/w"),
                "tty": st.booleans(),
                "volumes": st.just([]),
            }
        ),
        "runtime": st.none() | st.just("runc"),
        "auto_remove": st.booleans(),
        "mountpoints": st.lists(st.just("/proc"), max_size=1),
        "args": str_lists,
    }
)


def _load(raw: bytes) -> Any:
    return _json.load_json(raw, "state file", error=InvalidStateFile)


def _typed(fn: Callable[[], _T]) -> _T | None:
    """``fn()``, or None when it raised InvalidStateFile with a message (anything else fails the test)."""
    try:
        return fn()
    except InvalidStateFile as e:
        message = str(e)
    assert message
    return None


def _state(raw: bytes) -> None:
    st_ = _typed(lambda: parse_state(_load(raw), "state.json"))
    if st_ is None:
        return
    assert st_.status in STATUSES
    assert isinstance(st_.pid, int)
    assert st_.exit_code is None or isinstance(st_.exit_code, int)
    assert isinstance(_status(st_), str)  # what ps shows for it


def _record(raw: bytes) -> None:
    c = _typed(lambda: Container.from_json(_load(raw), Path("/x") / CID))
    if c is None:
        return
    assert c.id == CID
    assert str(Digest(c.manifest_digest)) == c.manifest_digest
    assert all(str(Digest(x)) == x for x in c.chain_ids)
    assert all(isinstance(p, str) and isinstance(w, str) for p, w in c.skipped)
    assert c.driver in ("copy", "overlay")


def _run(raw: bytes) -> None:
    rec = _typed(lambda: check_run_record(_load(raw)))
    if rec is None:
        return
    opts = rec.get("options") or {}
    assert all(isinstance(a, str) for a in opts.get("argv") or ())
    assert all(isinstance(a, str) for a in rec.get("mountpoints") or ())


@budget(60)
@given(raw_inputs)
def test_arbitrary_bytes(raw: bytes) -> None:
    _state(raw)
    _record(raw)
    _run(raw)


@budget(80)
@given(mutants(states))
def test_state_mutants(raw: bytes) -> None:
    _state(raw)


@budget(80)
@given(mutants(records))
def test_container_record_mutants(raw: bytes) -> None:
    _record(raw)


@budget(80)
@given(mutants(run_records))
def test_run_record_mutants(raw: bytes) -> None:
    _run(raw)
