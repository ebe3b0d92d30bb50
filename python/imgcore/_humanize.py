"""Docker's human-readable formats, reproduced exactly so ``imgcore images`` reads like ``docker images``.

- :func:`human_duration` is go-units ``HumanDuration`` ("6 seconds", "About an hour", "12 days", "2 years");
- :func:`human_size` is go-units ``HumanSizeWithPrecision(size, 3)`` ("460MB", "13.3kB", "1.02GB"): decimal units,
  Go's ``%.3g`` (which Python's ``%g`` matches, exponent form included: 999999 bytes is "1e+03kB", as docker prints);
- :func:`short_id` is docker's ``stringid.TruncateID`` (12 hex characters, algorithm dropped);
- :func:`ellipsis` is docker/cli's ``Ellipsis`` (East Asian wide characters count twice);
- :func:`tabwrite` is Go's ``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`` as docker/cli uses it for tables.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import unicodedata
from collections.abc import Sequence

__all__ = [
    "ago",
    "ellipsis",
    "format_created",
    "human_duration",
    "human_size",
    "parse_time",
    "printable",
    "short_id",
    "since",
    "tabwrite",
]

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def short_id(digest: str) -> str:
    """``sha256:5a4ee0c8ccbe…`` -> ``5a4ee0c8ccbe`` (anything after the first ``:``, cut to 12 characters)."""
    _, sep, rest = digest.partition(":")
    value = rest if sep else digest
    return value[:12]


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration`` of a duration in seconds (negative durations read as "Less than a second")."""
    secs = int(seconds)  # Go's int(d.Seconds()) truncates toward zero
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = math.floor(seconds / 3600 + 0.5)  # Go's math.Round: half away from zero (positive here)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def human_size(size: float, precision: int = 3) -> str:
    """go-units ``HumanSizeWithPrecision``: ``precision`` 3 is what ``docker images`` prints, 4 is ``HumanSize``
    (``docker system df``)."""
    value = float(size)
    i = 0
    while value >= 1000.0 and i < len(_DECIMAL_UNITS) - 1:
        value /= 1000.0
        i += 1
    return f"{value:.{precision}g}{_DECIMAL_UNITS[i]}"


def _char_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def ellipsis(text: str, max_width: int) -> str:
    """docker/cli ``Ellipsis``: cut ``text`` to ``max_width`` display cells, the last one being ``…``."""
    if max_width <= 0:
        return ""
    if max_width == 1:
        return text[:1]
    widths: list[int] = []
    total = 0
    for ch in text:
        total += _char_width(ch)
        widths.append(total)
    if total <= max_width:
        return text
    for i in range(len(widths) - 1):
        if widths[i] <= max_width - 1 < widths[i + 1]:
            return text[: i + 1] + "…"
    return text  # as Go does when even the first character is wider than the room left


def parse_time(value: str | None) -> _dt.datetime | None:
    """An RFC 3339 timestamp (nanoseconds allowed, as Go writes them) as an aware UTC datetime; None if absent
    or unparseable."""
    if not value or not isinstance(value, str):
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed.astimezone(_dt.UTC)


def since(when: _dt.datetime | None, now: _dt.datetime | None = None) -> str:
    """``"6 seconds ago"``; ``"N/A"`` when the time is unknown (docker's table default)."""
    if when is None:
        return "N/A"
    now = now or _dt.datetime.now(_dt.UTC)
    # Docker compares whole seconds (time.Unix(created, 0)).
    return human_duration(now.timestamp() - math.floor(when.timestamp())) + " ago"


def ago(created: str | _dt.datetime | None, now: _dt.datetime | None = None) -> str:
    """``"12 days ago"`` for an RFC 3339 string or a datetime (``"N/A"`` when unknown or unparseable)."""
    when = created if isinstance(created, _dt.datetime) or created is None else parse_time(created)
    return since(when, now)


def format_created(when: _dt.datetime | None) -> str:
    """RFC 3339 in UTC, whole seconds (``history --human=false``)."""
    if when is None:
        return "N/A"
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cells(text: str) -> int:
    return len(text)  # Go's tabwriter counts runes


def tabwrite(rows: Sequence[Sequence[str]], *, minwidth: int = 10, padding: int = 3) -> str:
    """Aligns ``rows`` as docker/cli's tabwriter does: every column but the last is padded to
    ``max(minwidth, widest cell + padding)``; the last column is not padded. Returns the text with newlines."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [0] * ncols
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], _cells(cell) + padding, minwidth)
    out = []
    for row in rows:
        parts = [cell + " " * (widths[i] - _cells(cell)) for i, cell in enumerate(row[:-1])]
        parts.append(row[-1] if row else "")
        out.append("".join(parts))
    return "\n".join(out) + "\n"


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F)}
_CONTROL.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})  # C1 controls (CSI and friends)


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (ESC, CSI, BEL, ...) shown as ``\\xNN``, never sent raw,
    so an image's history or labels cannot drive the user's terminal."""
    return text.translate(_CONTROL)
