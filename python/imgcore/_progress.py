"""Progress reporting for pull, push, load, save, commit, import and fsck, in docker's words.

:class:`PlainProgress` prints one line per layer status change (``fcbdc4090331: Pull complete``), as docker does when
its output is not a terminal. :class:`RichProgress` draws live bars per layer on a terminal (``rich`` is imported
only then); lines reported once bars are showing (``Digest:``, ``Status:``) are printed after the bars, as docker
prints them. :class:`NullProgress` prints nothing (``-q``). All are thread-safe: layer workers report concurrently.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Protocol, TextIO

__all__ = ["LinesOnly", "NullProgress", "PlainProgress", "Progress", "RichProgress", "make_progress", "short_id"]


def short_id(digest: str) -> str:
    """The 12-hex-digit id docker prints for a layer."""
    return digest.split(":", 1)[-1][:12]


class Progress(Protocol):
    def line(self, text: str) -> None:
        """A line not tied to a layer (``latest: Pulling from ...``, ``Digest: ...``)."""

    def layer(self, layer_id: str, status: str, current: int | None = None, total: int | None = None) -> None:
        """A layer's status; with ``current``/``total`` a byte count update within the same status."""

    def close(self) -> None: ...


class NullProgress:
    def line(self, text: str) -> None:
        pass

    def layer(self, layer_id: str, status: str, current: int | None = None, total: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class PlainProgress:
    """One line per status change; byte updates are not printed (docker's non-terminal output)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._last: dict[str, str] = {}
        self.lines: list[str] = []

    def _emit(self, text: str) -> None:
        self.lines.append(text)
        self._stream.write(text + "\n")
        self._stream.flush()

    def line(self, text: str) -> None:
        with self._lock:
            self._emit(text)

    def layer(self, layer_id: str, status: str, current: int | None = None, total: int | None = None) -> None:
        with self._lock:
            if self._last.get(layer_id) == status:
                return
            self._last[layer_id] = status
            self._emit(f"{layer_id}: {status}")

    def close(self) -> None:
        pass


class RichProgress:
    """Live per-layer bars on a terminal, via ``rich`` (imported lazily)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console  # type: ignore[import-not-found,unused-ignore]
        from rich.progress import (  # type: ignore[import-not-found,unused-ignore]
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._console = Console(file=stream if stream is not None else sys.stdout)
        self._bars = Progress(
            TextColumn("{task.fields[layer]}: {task.description:<18}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=self._console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._after: list[str] = []
        self._lock = threading.Lock()
        self._bars.start()

    def line(self, text: str) -> None:
        with self._lock:
            if self._tasks:
                self._after.append(text)  # after the bars, as docker prints Digest: and Status:
            else:
                self._bars.console.print(text, highlight=False, markup=False)

    def layer(self, layer_id: str, status: str, current: int | None = None, total: int | None = None) -> None:
        with self._lock:
            task = self._tasks.get(layer_id)
            if task is None:
                task = self._bars.add_task(status, layer=layer_id, total=total)
                self._tasks[layer_id] = task
            kwargs: dict[str, Any] = {"description": status}
            if total is not None:
                kwargs["total"] = total
            if current is not None:
                kwargs["completed"] = current
            elif status in _DONE:
                t = self._bars.tasks[task]
                kwargs["completed"] = t.total or 0
            self._bars.update(task, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._bars.stop()
            for text in self._after:
                self._console.print(text, highlight=False, markup=False)
            self._after.clear()


_DONE = (
    "Already exists",
    "Pull complete",
    "Download complete",
    "Pushed",
    "Layer already exists",
    "Loaded",
    "Saved",
    "Layer written",
    "Imported",
    "Checked",
)


class LinesOnly(PlainProgress):
    """Plain lines for :meth:`line` only; layer updates are dropped (docker ``load`` off a terminal)."""

    def layer(self, layer_id: str, status: str, current: int | None = None, total: int | None = None) -> None:
        pass


def make_progress(*, quiet: bool = False, stream: TextIO | None = None, layers_off_tty: bool = True) -> Progress:
    """Null when quiet, live bars on a terminal when ``rich`` is available, plain lines otherwise (without the
    per-layer lines when ``layers_off_tty`` is false)."""
    if quiet:
        return NullProgress()
    out = stream if stream is not None else sys.stdout
    if out.isatty():
        try:
            return RichProgress(out)
        except ImportError:
            pass
    return PlainProgress(out) if layers_off_tty else LinesOnly(out)
