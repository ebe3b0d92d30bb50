"""The house rules, checked: imports go one way (import-linter's contracts in pyproject.toml), and no module
hides an import of imgcore inside a function (the way import circles used to be papered over)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import imgcore

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(imgcore.__file__).parent


def test_import_layers_contract_is_kept() -> None:
    exe = shutil.which("lint-imports") or pytest.fail("lint-imports is not installed (pip install import-linter)")
    r = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 2 kept, 0 broken." in r.stdout


def _function_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("imgcore"):
                found.append(f"{path.relative_to(PACKAGE)}:{inner.lineno}: from {inner.module} import ...")
            elif isinstance(inner, ast.Import) and any(a.name.startswith("imgcore") for a in inner.names):
                found.append(f"{path.relative_to(PACKAGE)}:{inner.lineno}: import {inner.names[0].name}")
    return found


def test_no_imgcore_import_hides_inside_a_function() -> None:
    offenders = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _function_imports(path)]
    assert offenders == []


def test_a_command_imports_only_its_group(tmp_path: Path) -> None:
    """``imgcore images`` never loads the registry client, TLS, rich, GC, containers or tarfile (start-up)."""
    code = (
        "import sys; from imgcore.cli import main; main(['--root', sys.argv[1], 'images']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('urllib3', 'ssl', 'rich', 'http', 'tarfile') "
        "or m.startswith(('imgcore.registry', 'imgcore.transfer', 'imgcore.gc', 'imgcore.containers'))))"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
