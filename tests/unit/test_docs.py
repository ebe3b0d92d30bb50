"""The API reference: pdoc builds it from the docstrings without a warning, and every public item has one.

"Public" is what a user may import: every module under ``imgcore`` with no leading underscore in its dotted
path, every name in its ``__all__``, and the public methods and properties of the public classes. The walk
imports each module for real (the same objects pdoc documents), so a docstring that exists only in a stub or
in a comment does not count.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import html
import importlib
import importlib.util
import inspect
import re
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgcore
from tests.conftest import IN_CI

try:
    from pdoc import doc_ast
except ImportError:  # the `test` extra has it; under CI its absence is a failure, not a skip
    if IN_CI:
        raise
    pytest.skip("pdoc builds the API reference: pip install pdoc (the `test` extra)", allow_module_level=True)

DOCS_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "docs.py"


def _load_docs_script() -> types.ModuleType:
    """scripts/docs.py, the one list of public modules and the one build (the script and this test share them)."""
    spec = importlib.util.spec_from_file_location("imgcore_docs_script", DOCS_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_script = _load_docs_script()
public_modules = docs_script.public_modules


def _own_doc(obj: object) -> str:
    """The object's own docstring: none inherited from a base class, no auto-generated dataclass/enum text."""
    if isinstance(obj, type):
        doc = obj.__dict__.get("__doc__") or ""
        if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            return ""  # dataclasses write "Name(field: type, ...)" when the class has no docstring
        if issubclass(obj, enum.Enum) and doc in ("An enumeration.", ""):
            return ""
        if issubclass(obj, tuple) and hasattr(obj, "_fields") and doc.startswith(f"{obj.__name__}("):
            return ""  # the same for NamedTuple
        return doc.strip()
    if isinstance(obj, property):
        return (obj.__doc__ or "").strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def _class_members(cls: type) -> Iterator[tuple[str, object]]:
    """The public methods and properties a class defines itself (inherited ones are checked on their class)."""
    for name, raw in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(raw, (staticmethod, classmethod)):
            raw = raw.__func__
        if isinstance(raw, (property, types.FunctionType)) or inspect.isroutine(raw) or inspect.isdatadescriptor(raw):
            if _is_field(cls, name):
                continue
            yield name, raw


def _is_field(cls: type, name: str) -> bool:
    """A record's field, documented by its class as a dataclass field is: a dataclass field, a slot, or an
    attribute of a compiled (pyo3) class, whose getters carry no text of their own."""
    if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
        return True
    if inspect.isgetsetdescriptor(vars(cls)[name]):  # only compiled classes have these
        return True
    return name in getattr(cls, "__slots__", ())


@functools.cache
def undocumented() -> tuple[str, ...]:
    """Every public item without a docstring, as ``module:qualname`` (or ``module: why``)."""
    missing: list[str] = []
    seen: set[int] = set()
    for modname in public_modules():
        module = importlib.import_module(modname)
        if not (module.__doc__ or "").strip():
            missing.append(f"{modname}: module docstring")
        exported = getattr(module, "__all__", None)
        if exported is None:
            missing.append(f"{modname}: no __all__")
            continue
        try:
            var_docs = doc_ast.walk_tree(module).var_docstrings
        except (OSError, TypeError):
            var_docs = {}
        for name in exported:
            if name.startswith("__"):
                continue  # __version__ and the like say what they are
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType):
                continue  # checked as a module of its own
            if isinstance(obj, type) or callable(obj):
                if id(obj) in seen:
                    continue  # a re-export: checked where it was first met
                seen.add(id(obj))
                where = f"{getattr(obj, '__module__', modname)}:{getattr(obj, '__qualname__', name)}"
                if not _own_doc(obj):
                    missing.append(where)
                if isinstance(obj, type):
                    for member, raw in _class_members(obj):
                        if not _own_doc(raw):
                            missing.append(f"{where}.{member}")
            elif not (var_docs.get(name, "").strip() or _comment_doc(module, name) or _defined_elsewhere(module, name)):
                missing.append(f"{modname}:{name}")
    return tuple(missing)


def _comment_doc(module: types.ModuleType, name: str) -> bool:
    """A ``#:`` comment right above the constant's assignment (Sphinx's convention, used in ``imgcore.runtime``).

    It documents the constant in the source, though pdoc shows only a string literal after the assignment."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return False
    lines = source.splitlines()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node.lineno >= 2 and lines[node.lineno - 2].lstrip().startswith("#:")
    return False


def _defined_elsewhere(module: types.ModuleType, name: str) -> bool:
    """A constant a module re-exports is documented where it is assigned."""
    for other in public_modules():
        if other == module.__name__:
            continue
        mod = importlib.import_module(other)
        if getattr(mod, name, None) is getattr(module, name) and name in doc_ast.walk_tree(mod).var_docstrings:
            return True
    return False


def test_every_public_item_has_a_docstring() -> None:
    missing = list(undocumented())
    assert missing == [], (
        "public items without a docstring (a constant's is a string literal right after its assignment):\n  "
        + "\n  ".join(missing)
    )


def test_reference_builds_without_warnings(tmp_path: Path) -> None:
    # Warnings are errors inside build(). The search index is left out: it only re-reads the same pages, and
    # pdoc's precompiling it with node would take most of this test's time.
    documented = docs_script.build(tmp_path, search=False)
    assert set(public_modules()) <= set(documented)
    for mod in ("imgcore", "imgcore.api", "imgcore.image.model", "imgcore.store", "imgcore.errors", "imgcore.pure"):
        assert (tmp_path / (mod.replace(".", "/") + ".html")).is_file(), mod
    front = (tmp_path / "imgcore.html").read_text()
    text = _plain(html.unescape(re.sub(r"<[^>]+>", "", front)))
    for name in ("Store", "Image", "Layer", "Container"):
        assert f'id="{name}"' in front, f"imgcore.{name} is not in the reference"
        summary = _plain(inspect.getdoc(getattr(imgcore, name)).split("\n\n")[0])
        assert summary in text, f"imgcore.{name}'s docstring is not in the reference: {summary!r}"
    assert 'id="Store.create"' in front
    assert _plain(inspect.getdoc(imgcore.Store.create)) in text


def _plain(text: str) -> str:
    """Docstring or page text without markup (reST roles, backticks) and with single spaces, to compare."""
    return " ".join(re.sub(r":\w+:|`", "", text).split())
