"""Plain-text output for the terminal: aligned tables, times and durations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.utils import timezone

#: What an empty cell shows.
EMPTY = "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, two spaces apart; columns holding only
    numbers are right-aligned so their digits line up."""
    cells = [[cell_text(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        any(_is_number(row[i]) for row in rows)
        and all(_is_number(row[i]) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]

    def line(row: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cell_text(value: object) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return " ".join(str(value).split())  # one cell, one line


def format_time(value: datetime | None) -> str:
    """To the second, in the current time zone: ``2025-01-31 14:05:09Z`` in UTC,
    else with its offset (``2025-01-31 15:05:09+01:00``)."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    offset = local.utcoffset()
    if offset is None:
        suffix = ""
    elif offset == timedelta(0):
        suffix = "Z"
    else:
        suffix = local.isoformat(timespec="seconds")[19:]
    return f"{local:%Y-%m-%d %H:%M:%S}{suffix}"


def format_duration(seconds: float | None) -> str:
    """Short and exact enough to compare: ``0.25s``, ``42.0s``, ``3m05s``, ``2h03m``, ``3d04h``."""
    if seconds is None:
        return EMPTY
    if not math.isfinite(seconds):  # a hand-edited timeout: int() would raise
        return str(seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end``, or None when either is missing."""
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)
