"""Every ``imgcore._core`` entry point has a pure-Python twin in ``imgcore.pure`` with the same signature."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import imgcore._core as core
import imgcore.pure as pure

_NOT_TWINNED = {"_panic_for_tests", "gzip_backend", "__version__"}  # a test hook, a build fact, a constant
ENTRY_POINTS = sorted(n for n in core.__all__ if n not in _NOT_TWINNED)


def test_the_twin_exports_every_entry_point() -> None:
    assert [n for n in ENTRY_POINTS if not hasattr(pure, n)] == []


@pytest.mark.parametrize(
    "name", [n for n in ENTRY_POINTS if callable(getattr(core, n)) and not isinstance(getattr(core, n), type)]
)
def test_function_signatures_match(name: str) -> None:
    rust = inspect.signature(getattr(core, name))
    twin = inspect.signature(getattr(pure, name))
    shape = [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in rust.parameters.values()]
    assert [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in twin.parameters.values()] == shape


@pytest.mark.parametrize("name", [n for n in ENTRY_POINTS if isinstance(getattr(core, n), type)])
def test_classes_have_the_same_public_members(name: str) -> None:
    rust = {m for m in dir(getattr(core, name)) if not m.startswith("_")}
    cls = getattr(pure, name)
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    twin = {m for m in {*dir(cls), *fields, *getattr(cls, "__annotations__", {})} if not m.startswith("_")}
    assert rust <= twin, f"{name}: the twin lacks {sorted(rust - twin)}"
