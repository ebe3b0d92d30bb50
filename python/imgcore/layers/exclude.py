"""``--exclude GLOB``: paths left out of a layer that ``commit``, ``squash`` and ``flatten`` write.

Invariants:
- a pattern is matched against the root-relative path (``var/cache/apt``; a leading ``/`` in the pattern is
  ignored) with :func:`fnmatch.fnmatchcase`, whose ``*`` also matches ``/`` (so ``*.pyc`` leaves out every
  ``.pyc`` file wherever it is);
- a path is excluded when it or any of its ancestors matches: excluding a directory excludes its subtree;
- an empty pattern is refused (:class:`~imgcore.errors.InvalidArgument`), so a typo never excludes nothing
  silently or everything at once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from imgcore._core import Change
from imgcore.errors import InvalidArgument

__all__ = ["exclude_changes", "excluded", "patterns"]


def patterns(globs: Iterable[str]) -> tuple[str, ...]:
    """The normalised patterns (no leading or trailing ``/``); an empty one is an error."""
    out = []
    for g in globs:
        norm = g.strip().strip("/")
        if not norm:
            raise InvalidArgument(f"--exclude {g!r}: empty pattern (name a path below the root)")
        out.append(norm)
    return tuple(out)


def excluded(path: str, globs: Sequence[str]) -> bool:
    """Whether ``path`` (absolute or root-relative) or one of its ancestors matches a normalised pattern."""
    if not globs:
        return False
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if any(fnmatch.fnmatchcase(prefix, g) for g in globs):
            return True
    return False


def exclude_changes(changes: Iterable[Change], globs: Sequence[str]) -> list[Change]:
    """``changes`` without those on excluded paths."""
    return [c for c in changes if not excluded(c.path, globs)]
