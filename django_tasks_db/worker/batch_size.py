"""How many tasks a worker process claims at once."""

from __future__ import annotations

#: Weight of the latest run in the running average of run times.
SMOOTHING = 0.2


class BatchSize:
    """About ``window`` seconds of work, judged by the average time of recent runs,
    between 1 and ``maximum``.

    The first claim takes one task: nothing is known yet. Short tasks then come in
    batches of up to ``maximum`` (few transactions per task); long ones one at a
    time, so that a task never waits long behind others of its batch while another
    worker sits idle, and outcomes are written within about a window.
    """

    def __init__(self, maximum: int, window: float) -> None:
        self.maximum = maximum
        self.window = window
        self.average: float | None = None

    def observe(self, seconds: float) -> None:
        """One run took ``seconds``."""
        if self.average is None:
            self.average = seconds
        else:
            self.average += SMOOTHING * (seconds - self.average)

    def next(self, at_most: int | None = None) -> int:
        """How many to claim now (never more than ``at_most``, at least 1)."""
        if self.average is None or self.maximum <= 1:
            size = 1
        else:
            size = int(self.window / max(self.average, 1e-6))
            size = max(1, min(self.maximum, size))
        return max(1, min(size, at_most)) if at_most is not None else size


def claim_size(wanted: int, maximum: int) -> int:
    """``wanted`` rounded down to one of a few sizes: ``maximum`` itself, or a number
    of two leading bits (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, ...).

    The claim's statement is compiled once per size, and on PostgreSQL prepared and
    planned once per size and connection (``claim.at_once_statement``). Claiming the
    exact size asked compiled a new one whenever the average run time moved: 11 of
    100 idle claims in one measurement, some 5 ms each. Rounding down keeps every
    promise a size makes (never more than ``--max-tasks`` allows); the rest waits
    for the next claim.
    """
    if wanted == maximum or wanted < 4:
        return max(wanted, 0)
    shift = wanted.bit_length() - 2
    return (wanted >> shift) << shift
