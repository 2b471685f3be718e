"""``StopEvent``: a stop request that a signal handler can make.

``threading.Event.set()`` takes the event's lock. A signal handler runs in the
main thread between two bytecodes, possibly while that same thread holds the lock
inside ``Event.wait()``: the handler then waits for itself, forever (a worker
that ignored SIGTERM until the supervisor killed it). ``StopEvent`` takes no lock:
``set()`` writes a byte to a pipe (async-signal-safe) and ``wait()`` polls the
pipe's other end, so every waiting thread wakes and a set event stays set.
"""

from __future__ import annotations

import os
import select
import weakref
from typing import Protocol


class Stop(Protocol):
    """What a loop that can be stopped looks at (``StopEvent``, ``threading.Event``)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class StopEvent:
    """The part of ``threading.Event`` a stop request needs, safe in a signal handler."""

    def __init__(self) -> None:
        self._set = False
        self._read, self._write = os.pipe()
        weakref.finalize(self, _close, self._read, self._write)

    def set(self) -> None:
        if self._set:  # its byte is written, or about to be by the set() this interrupted
            return
        self._set = True
        os.write(self._write, b"!")  # never read: every later wait() returns at once

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Return once set, or after ``timeout`` seconds; True when set."""
        if self._set:
            return True
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))
        return self._set


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)
