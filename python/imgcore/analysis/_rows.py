"""Read-only sequences over numpy columns whose items are made only when read (``Analysis.wasted``,
``.rewrites``, ``.dive.inefficient``): a million-file image keeps its figures as arrays, and a report that
shows the top twenty makes twenty objects.

Invariants: a :class:`Rows` never changes; ``rows[i]`` equals ``list(rows)[i]``; it equals any sequence (a
tuple too) with equal items in the same order; iteration makes its items a chunk at a time (``CHUNK``), so a
loop that drops each item holds one chunk, never the whole list.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

__all__ = ["CHUNK", "Rows", "texts"]

T = TypeVar("T")

#: Items (or table rows) made at a time by the iterators and the streamed reports.
CHUNK = 16384


class Rows(Sequence[T], abc.ABC):
    """A sequence of ``len`` items made from columns by :meth:`chunk`."""

    def __init__(self, n: int) -> None:
        self._n = n

    @abc.abstractmethod
    def fields(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        """The fields of items ``start`` to ``stop`` (``0 <= start <= stop <= len``) as plain tuples (what a
        streamed report formats, without making the items)."""

    @abc.abstractmethod
    def chunk(self, start: int, stop: int) -> list[T]:
        """Items ``start`` to ``stop`` (``0 <= start <= stop <= len``)."""

    def iter_fields(self) -> Iterator[tuple[Any, ...]]:
        """Every item's :meth:`fields`, a chunk at a time."""
        for start in range(0, self._n, CHUNK):
            yield from self.fields(start, min(self._n, start + CHUNK))

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[T, ...]: ...
    def __getitem__(self, i: int | slice) -> T | tuple[T, ...]:
        if isinstance(i, slice):
            start, stop, step = i.indices(self._n)
            if step == 1:
                return tuple(self.chunk(start, max(start, stop)))
            return tuple(self[j] for j in range(start, stop, step))
        j = i + self._n if i < 0 else i
        if not 0 <= j < self._n:
            raise IndexError(f"index {i} out of range ({self._n} items)")
        return self.chunk(j, j + 1)[0]

    def __iter__(self) -> Iterator[T]:
        for start in range(0, self._n, CHUNK):
            yield from self.chunk(start, min(self._n, start + CHUNK))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rows | tuple | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self[:3])
        return f"{type(self).__name__}([{head}{', ...' if self._n > 3 else ''}], {self._n} items)"


def texts(strings: npt.NDArray[np.uint8], offsets: npt.NDArray[np.uint64], idx: Any, prefix: str = "/") -> list[str]:
    """The strings ``idx`` of a NUL-joined string table (``offsets``: where each starts), decoded as the reports
    show paths (``prefix`` + UTF-8 with ``surrogateescape``), reading only those strings' bytes."""
    i = np.asarray(idx, dtype=np.int64)
    m = len(offsets)
    nxt = i + 1
    ends = np.where(nxt < m, offsets[np.minimum(nxt, m - 1)].astype(np.int64), len(strings)) - 1
    raw = memoryview(strings.data)
    return [prefix + str(raw[a:b], "utf-8", "surrogateescape")
            for a, b in zip(offsets[i].tolist(), ends.tolist(), strict=True)]  # fmt: skip
