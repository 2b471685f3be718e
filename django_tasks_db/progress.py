"""``set_progress``: a running task says how far it got; the worker writes it to the row."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from .capture import current_run

#: ``message`` keeps at most this many characters.
MAX_MESSAGE_CHARS = 500


def set_progress(current: float, total: float | None = None, message: str = "") -> None:
    """Record the running task's progress in ``Task.progress``.

    Checked at the call (``TypeError``/``ValueError``): ``current`` a finite number
    >= 0, ``total`` a finite number > 0 or None, ``message`` a string (cut to 500
    characters). Outside a worker's run it does nothing. Calls are cheap: the
    worker writes the latest value at most every 0.5 s, and always at the end.
    """
    value = progress_value(current, total, message)
    run = current_run.get()
    if run is not None:
        from .transitions import clean_text

        value["message"] = clean_text(value["message"])  # NUL: PostgreSQL's jsonb refuses it
        run.set_progress(value)


def progress_value(current: object, total: object, message: object) -> dict[str, Any]:
    """The JSON stored for one call, or the error saying what is wrong with it."""
    if _number("current", current) < 0:
        raise ValueError(f"set_progress: current must be >= 0, not {current!r}.")
    if total is not None and _number("total", total) <= 0:
        raise ValueError(f"set_progress: total must be > 0 or None, not {total!r}.")
    if not isinstance(message, str):
        raise TypeError(f"set_progress: message must be a string, not {type(message).__name__}.")
    return {
        "current": current,
        "total": total,
        "message": message[:MAX_MESSAGE_CHARS],
        "at": datetime.now(UTC).isoformat(),
    }


def _number(name: str, value: object) -> float:
    """``value`` as a float, if it is a finite number (bool is not a number here)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"set_progress: {name} must be a number, not {type(value).__name__}.")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"set_progress: {name} must be a finite number, not {value!r:.50}.")
    return number
