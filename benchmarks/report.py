"""The benchmark's figures and how they are printed: no Django here, so the peer
runner's raw figures and ours go through the same arithmetic and the same table."""

from __future__ import annotations

import json
import math
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The label printed for the peer project's column.
PEER_NAME = "django-tasks-db 0.13"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (p95 of 50 samples is the 48th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def steady_rate(count: int, first_finished: float, last_finished: float) -> float:
    """Tasks/s between the first and the last finished task: start-up excluded,
    since the clock starts when a worker is already running tasks."""
    span = last_finished - first_finished
    return (count - 1) / span if count > 1 and span > 0 else math.nan


def latency_figures(
    prefix: str,
    client: Sequence[float],
    server: Sequence[float],
    enqueue: Sequence[float] = (),
) -> Figures:
    """p50/p95 in milliseconds of client-side and server-side latencies (seconds),
    and of the ``enqueue()`` calls within the client's when they were timed."""
    figures = Figures()
    sides = [
        ("", "latency enqueue → SUCCESSFUL seen", client),
        ("server_", "  server side: finished_at - enqueued_at", server),
    ]
    if enqueue:
        sides.append(("enqueue_", "  of the client's: the enqueue() call", enqueue))
    for key, label, samples in sides:
        for name, fraction in (("p50", 0.5), ("p95", 0.95)):
            milliseconds = percentile(samples, fraction) * 1000
            figures.add(f"{prefix}.{key}{name}", f"{label}, {name}", milliseconds, "ms")
    return figures


def drain_figures(count: int, processes: int, steady: float, wall: float) -> Figures:
    figures = Figures()
    name = f"drain {count:,}, {processes} process{'es' if processes > 1 else ''}"
    figures.add(f"drain.p{processes}.steady", f"{name}, steady", steady, "tasks/s")
    figures.add(f"drain.p{processes}.wall", f"{name}, wall (start-up included)", wall, "tasks/s")
    return figures


@dataclass
class Figure:
    key: str
    measure: str
    value: float | None
    unit: str
    #: Printed instead of the value (e.g. "n/a (no --concurrency)").
    text: str = ""

    def shown(self) -> str:
        if self.text:
            return self.text
        if self.value is None or math.isnan(self.value):
            return "n/a"
        if self.unit == "x":
            return f"{self.value:.2f}x"
        digits = 1 if abs(self.value) < 100 and self.unit in ("ms", "s") else 0
        return f"{self.value:,.{digits}f} {self.unit}"


@dataclass
class Figures:
    """Figures in the order they were measured, keyed for the JSON file and the peer."""

    rows: list[Figure] = field(default_factory=list)

    def add(self, key: str, measure: str, value: float | None, unit: str, text: str = "") -> None:
        self.rows.append(Figure(key, measure, value, unit, text))

    def extend(self, other: Figures) -> None:
        self.rows.extend(other.rows)

    def values(self) -> dict[str, float | None]:
        return {row.key: row.value for row in self.rows}


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs) or not theirs:
        return ""
    return f"{ours / theirs:.2f}"


def table(figures: Figures, peer: Figures | None) -> str:
    """A Markdown table: measure | value, and the peer's value with ours/theirs."""
    header = ["measure", "value"]
    rows = list(figures.rows)
    if peer is not None:
        header += [PEER_NAME, "ours/theirs"]
        ours = {row.key for row in rows}
        rows += [
            Figure(row.key, row.measure, None, row.unit, "—")
            for row in peer.rows
            if row.key not in ours
        ]
    theirs = {row.key: row for row in peer.rows} if peer is not None else {}
    lines = [header]
    for row in rows:
        line = [row.measure, row.shown()]
        if peer is not None:
            other = theirs.get(row.key)
            line += [other.shown(), ratio(row.value, other.value)] if other else ["", ""]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
        for line in lines
    ]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def machine() -> dict[str, Any]:
    """The machine, and how busy it was (the load average over the last minute)."""
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": round(os.getloadavg()[0], 2),
    }


def short_sql(sql: str) -> str:
    """The query without its long column list."""
    short = re.sub(r"^SELECT .*? FROM ", "SELECT ... FROM ", sql, count=1, flags=re.DOTALL)
    return short.replace("%%", "%")  # as the database reads it


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
