"""CPU work for the pool inside ``slow_squares``; no Django import, so that the
pool's fresh processes start fast and need no settings."""

import time


def slow_square(x: int) -> int:
    time.sleep(0.2)
    return x * x
