"""Loaded (via PYTHONPATH) only by test children that run under libfaketime.

With ``FAKETIME_DONT_FAKE_MONOTONIC=1`` (faking the monotonic clock hangs Python's
timed waits), libfaketime's ``clock_nanosleep`` wrapper returns EINVAL, so
``time.sleep`` raises ``OSError: [Errno 22]``: a known libfaketime bug. ``select()``
with a timeout is not affected, so ``time.sleep`` becomes a select()-based sleep.
Only the sleep changes; every clock stays as libfaketime makes it.
"""

import os
import select
import time
from typing import SupportsIndex

_monotonic = time.monotonic


def _select_sleep(secs: float | SupportsIndex) -> None:
    """``time.sleep`` without ``clock_nanosleep``: select() until a monotonic deadline."""
    seconds = float(secs)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = _monotonic() + seconds
    while (left := deadline - _monotonic()) > 0:
        select.select([], [], [], left)  # a signal handler's exception propagates, as in sleep


if "faketime" in os.environ.get("LD_PRELOAD", ""):
    time.sleep = _select_sleep
