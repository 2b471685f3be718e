"""The one doubling wait of the package: reconnects, outcome writes, idle polls,
``wait_for_result`` and restarts of crashing worker processes all back off alike."""

from __future__ import annotations


class Backoff:
    """Waits that double after each use, from ``initial`` up to ``cap`` seconds;
    ``reset()`` starts over (call it when the thing waited for went well)."""

    def __init__(self, initial: float, cap: float) -> None:
        if not 0 < initial <= cap:
            raise ValueError(f"Backoff needs 0 < initial <= cap, not {initial!r}, {cap!r}.")
        self.initial = initial
        self.cap = cap
        self.delay = initial

    def next(self) -> float:
        """The wait to make now; the one after it is twice as long (at most ``cap``)."""
        delay = self.delay
        self.delay = min(delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.initial
