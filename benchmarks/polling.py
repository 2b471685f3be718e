"""The latency client's poll, shared by our runner and the peer's. No Django and
nothing of this project here: the peer's runner loads this file by its path, since
its virtualenv must not see our packages (they share the import name)."""

from __future__ import annotations

import time
from typing import Any


def until_row(cursor: Any, sql: str, params: Any, deadline: float, pause: float, what: str) -> None:
    """Run ``sql`` on ``cursor`` every ``pause`` seconds until it returns a row;
    ``TimeoutError`` naming ``what`` once ``time.perf_counter()`` passes ``deadline``.

    One statement compiled once, not a queryset compiled on every poll: that cost
    about 0.1 ms of CPU per poll beside the measured worker on two cores, and saw
    the row 0.3 to 0.5 ms later (docs/benchmarks.md, 2026-11-24, late morning).
    """
    cursor.execute(sql, params)
    while cursor.fetchone() is None:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} did not finish")
        time.sleep(pause)
        cursor.execute(sql, params)
