"""Every process imgcore starts is a host helper run by absolute path with imgcore's own environment (issue 10,
item 1), checked over the source: each ``subprocess``/``os.exec*``/``os.spawn*`` call in ``python/imgcore``.

A call passes when its program is one of :mod:`imgcore._host`'s absolute paths, a path found by
``imgcore.runtime.host.which`` (system directories only), the runtime's own ``argv`` (``Runc.argv``: the
absolute runtime path), or ``sys.executable`` (imgcore itself); and its ``env=`` is ``host_env()`` or one of the
fixed environments built from it. Two calls are the container's own process, not a host helper, and are listed
with the reason; ``shell=True``, ``os.system`` and ``os.popen`` are refused everywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import imgcore
from imgcore import _host

PACKAGE = Path(imgcore.__file__).resolve().parent
_EXECS = "execv execve execvp execvpe execl execle execlp execlpe spawnv spawnve spawnvp spawnvpe posix_spawn"
SPAWNERS = {("subprocess", n) for n in ("run", "Popen", "call", "check_call", "check_output")} | {
    ("os", n) for n in [*_EXECS.split(), "posix_spawnp"]
}
FORBIDDEN = {("os", "system"), ("os", "popen")}
HOST_PATHS = {name for name in _host.__all__ if name.isupper() and name != "HOST_PATH"}
FIXED_ENVS = {"RUNC_ENV", "MONITOR_ENV"}  # host_env() and host_env() + imgcore's own PYTHONPATH (the monitor)
# (module, function, the call's argv as written): why the call may run with another environment or program.
CONTAINER_PROCESSES = {
    ("demo.py", "imgcore", "cmd"): "the demo runs imgcore itself (sys.executable) as a user would, with the user's env",
}


def _dotted(node: ast.AST) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    return None


class _Calls(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[str, ast.Call, ast.FunctionDef | ast.AsyncFunctionDef | None]] = []
        self.funcs: list[ast.FunctionDef | ast.AsyncFunctionDef] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.funcs.append(node)
        self.generic_visit(node)
        self.funcs.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        if name in SPAWNERS or name in FORBIDDEN:
            self.found.append((f"{name[0]}.{name[1]}", node, self.funcs[-1] if self.funcs else None))
        self.generic_visit(node)


def _assigned(func: ast.AST | None, name: str) -> list[ast.expr]:
    """Every value assigned to ``name`` in ``func`` (a local resolved one step, as ``cmd = [...]``)."""
    if func is None:
        return []
    out: list[ast.expr] = []
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            out.append(node.value)
    return out


def _program_ok(arg: ast.expr, func: ast.AST | None, depth: int = 0) -> bool:
    """Whether ``arg`` (a call's argv) starts with an absolute host path imgcore chose."""
    if isinstance(arg, ast.List | ast.Tuple):
        return bool(arg.elts) and _head_ok(arg.elts[0], func, depth)
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "argv":
        return True  # Runc.argv / Runtime.argv: [absolute runtime path, --root, ...]
    if isinstance(arg, ast.Attribute) and arg.attr == "argv" and _is_bwrap_command(arg.value, func):
        return True  # BwrapCommand.argv: bwrap_command refuses a bwrap path that is not absolute
    if isinstance(arg, ast.Name) and depth < 3:
        values = _assigned(func, arg.id)
        return bool(values) and all(_program_ok(v, func, depth + 1) for v in values)
    return False


def _is_bwrap_command(node: ast.expr, func: ast.AST | None) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "bwrap_command":
        return True
    if isinstance(node, ast.Name):
        values = _assigned(func, node.id)
        return bool(values) and all(_is_bwrap_command(v, None) for v in values)
    return False


def _head_ok(head: ast.expr, func: ast.AST | None, depth: int) -> bool:
    if isinstance(head, ast.Name) and head.id in HOST_PATHS:
        return True
    if _dotted(head) == ("sys", "executable"):
        return True
    if isinstance(head, ast.Call) and isinstance(head.func, ast.Name) and head.func.id == "which":
        return True
    if isinstance(head, ast.Name) and depth < 3:
        values = _assigned(func, head.id)
        return bool(values) and all(_head_ok(v, func, depth + 1) for v in values)
    return False


def _env_ok(call: ast.Call) -> bool:
    env = next((k.value for k in call.keywords if k.arg == "env"), None)
    if env is None:
        return False
    if isinstance(env, ast.Call) and isinstance(env.func, ast.Name) and env.func.id == "host_env":
        return True
    if isinstance(env, ast.Name) and env.id in FIXED_ENVS:
        return True
    return isinstance(env, ast.Attribute) and env.attr == "env"  # Runtime.env: host_env()


def _all_calls() -> list[tuple[str, str, ast.Call, ast.AST | None]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("pure/"):
            continue  # the oracle twin starts no process (checked below)
        visitor = _Calls()
        visitor.visit(ast.parse(path.read_text(), str(path)))
        out += [(rel, what, call, func) for what, call, func in visitor.found]
    return out


def test_every_process_is_a_host_helper_by_absolute_path_with_imgcores_env() -> None:
    calls = _all_calls()
    assert len(calls) >= 10, "the scan found too few calls: is it looking at the package?"
    bad = []
    allowed_seen = set()
    for rel, what, call, func in calls:
        where = f"{rel}:{call.lineno} {what}"
        key = (rel, getattr(func, "name", ""), ast.unparse(call.args[0]) if call.args else "")
        if key in CONTAINER_PROCESSES:
            allowed_seen.add(key)
            continue
        if (what.split(".")[0], what.split(".")[1]) in FORBIDDEN:
            bad.append(f"{where}: a shell (forbidden)")
            continue
        if any(k.arg == "shell" for k in call.keywords):
            bad.append(f"{where}: shell=")
        if not call.args or not _program_ok(call.args[0], func):
            bad.append(f"{where}: program not an absolute path from imgcore._host / which() / Runc.argv")
        if not _env_ok(call):
            bad.append(f"{where}: env= is not host_env() (or a fixed env built from it)")
    assert not bad, "\n".join(bad)
    assert allowed_seen == set(CONTAINER_PROCESSES), "an allow-list entry no longer matches a call: drop it"


def test_the_pure_twin_starts_no_process() -> None:
    for path in sorted((PACKAGE / "pure").rglob("*.py")):
        visitor = _Calls()
        visitor.visit(ast.parse(path.read_text(), str(path)))
        assert not visitor.found, f"{path}: {[w for w, _, _ in visitor.found]}"


def test_host_paths_are_absolute_and_the_env_is_fixed() -> None:
    for name in HOST_PATHS:
        value = getattr(_host, name)
        assert Path(value).is_absolute(), name
        assert Path(value).parent.as_posix() in _host.HOST_PATH.split(":"), name
    env = _host.host_env()
    assert set(env) == {"PATH", "LC_ALL"}
    assert env["PATH"] == _host.HOST_PATH
    assert all(Path(d).is_absolute() for d in env["PATH"].split(":"))
    env["PATH"] = "/evil"
    assert _host.host_env()["PATH"] == _host.HOST_PATH  # a fresh dict every time: nobody can poison it
