"""A stop request made from a signal handler never waits for the thread it interrupts.

A signal handler runs in the main thread between two of its bytecodes. The test
plays that deterministically: a trace function calls ``set()`` at the N-th line
the main thread runs inside ``wait()``, for every N, in a subprocess with a
deadline. ``threading.Event`` hangs there (its lock is held by the very thread
that tries to take it again); that is how a worker once ignored SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from django_tasks_db.stopping import StopEvent

ROOT = Path(__file__).resolve().parent.parent

SET_AT_EVERY_LINE = """
import sys, threading
from django_tasks_db.stopping import StopEvent

def set_during_wait(make, nth):
    event = make()
    seen = 0

    def trace(frame, what, arg):
        nonlocal seen
        if what == "line":
            seen += 1
            if seen == nth:
                sys.settrace(None)
                event.set()  # as a signal handler would, at this very point
        return trace

    sys.settrace(trace)
    try:
        event.wait(0.2)
    finally:
        sys.settrace(None)
    return seen

make = StopEvent if sys.argv[1] == "stop" else threading.Event
for nth in range(1, 40):
    if set_during_wait(make, nth) < nth:
        break  # wait() has fewer lines than that: every point was tried
print("done", nth)
"""


@pytest.mark.parametrize(("kind", "hangs"), [("stop", False), ("threading", True)])
def test_set_at_any_point_of_wait(kind: str, hangs: bool) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SET_AT_EVERY_LINE, kind],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        out, _ = process.communicate(timeout=6)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        assert hangs, f"{kind}: set() during wait() deadlocked"
    else:
        assert not hangs, "threading.Event no longer deadlocks here: the test lost its teeth"
        assert process.returncode == 0 and out.startswith("done"), out


def test_a_signal_handler_wakes_a_waiting_thread_and_the_main_thread() -> None:
    event = StopEvent()
    woken = threading.Event()
    waiter = threading.Thread(target=lambda: event.wait() and woken.set())
    waiter.start()
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: event.set())
    try:
        started = time.monotonic()
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        assert event.wait(10) is True
        assert time.monotonic() - started < 5
        assert woken.wait(5)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        waiter.join(5)
    assert event.is_set() and event.wait(0) and event.wait(None)


def test_wait_times_out_unset() -> None:
    event = StopEvent()
    started = time.monotonic()
    assert event.wait(0.05) is False
    assert 0.04 <= time.monotonic() - started < 5
    assert not event.is_set()


def test_sets_after_the_first_cost_nothing() -> None:
    event = StopEvent()
    for _ in range(1_000):
        event.set()
    assert event.wait(0)
