"""When a failed attempt runs again: exponential backoff with full jitter and a cap."""

from __future__ import annotations

import random
from datetime import timedelta

#: Seconds before the second attempt (doubling each attempt after).
BACKOFF_BASE = 1.0
#: No wait is longer than this many seconds.
BACKOFF_MAX = 600.0


def backoff_delay(
    attempt: int,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_MAX,
    rng: random.Random | None = None,
) -> timedelta:
    """Delay after failed attempt number ``attempt`` (1-based).

    Full jitter (a uniform draw below the exponential bound) keeps many tasks that
    failed together, say on an outage, from retrying together.
    """
    bound = min(cap, base * 2 ** (attempt - 1))
    return timedelta(seconds=(rng or random).uniform(bound / 2, bound))
