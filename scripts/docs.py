"""Builds imgcore's API reference from its docstrings with pdoc: ``python3 scripts/docs.py [OUTPUT_DIR]``.

Every public module is documented (no leading underscore in its dotted path); each is named to pdoc once,
since pdoc also walks the submodules a package's ``__all__`` lists and warns about a module given twice.
Warnings are errors here, so an unresolvable reference or a module that fails to import stops the build.
"""

from __future__ import annotations

import pkgutil
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.extract
import pdoc.render

import imgcore

__all__ = ["build", "public_modules"]


def public_modules() -> list[str]:
    """Every public module of the package, sorted (``imgcore`` itself first)."""
    names = ["imgcore"]
    for info in pkgutil.walk_packages(imgcore.__path__, prefix="imgcore."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def build(output: Path, *, search: bool = True) -> list[str]:
    """Writes the HTML reference into ``output``; returns the modules documented. Warnings raise.

    ``search`` adds the search box's index (pdoc precompiles it with node when node is installed: seconds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        specs: list[str] = []
        covered: set[str] = set()
        for name in public_modules():
            if name not in covered:
                specs.append(name)
                covered.update(pdoc.extract.walk_specs([name]))
        pdoc.render.configure(docformat="google", show_source=False, search=search)
        pdoc.pdoc(*specs, output_directory=output)
    return sorted(covered)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api")
    mods = build(out)
    print(f"API reference: {len(mods)} modules in {out}/index.html")
