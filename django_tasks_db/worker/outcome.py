"""Storing how a run ended, whatever the database makes of it.

The write itself is a transition (``transitions``), fenced by the claim's token:
a worker that lost its claim (presumed dead, the task recovered and claimed again)
finds its outcome refused and can never overwrite the newer run. Two other things
can stand in the way, and they are told apart by a fresh round trip:

- the database is unreachable (an outage, a failover), or answers "not now" (a
  lock held elsewhere, a deadlock victim, a serialization failure: ``is_transient``):
  the task already ran and its outcome must not be lost, so the write is retried,
  with a backoff, until it goes through. Reapers do not count an outage against a worker (see
  ``reaper.Reaper``); should this worker be declared dead all the same (a
  partition), the fencing token refuses the late write.
- the database answers but refuses this write (a NUL character in PostgreSQL's
  jsonb, a row over MariaDB's max_allowed_packet): retrying cannot help, so after
  one more try on a fresh connection the caller's fallback runs, which stores the
  run FAILED with ``OutcomeNotStored``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError

from ..backoff import Backoff
from ..db import database_reachable, is_transient

logger = logging.getLogger("django_tasks_db.worker")


#: Longest wait between two attempts to store an outcome while the database is away.
MAX_STORE_DELAY = 10.0
#: Tries of a write the database answers but refuses (the second on a fresh connection).
REFUSED_TRIES = 2


T = TypeVar("T")


def persist(write: Callable[[], T], using: str, refused: Callable[[DatabaseError], T]) -> T:
    """Run ``write`` until it goes through; ``refused(error)`` when the database
    keeps refusing it while reachable (see the module's docstring).

    Deaf to stop requests on purpose: a run that finished must have its outcome
    written, or it runs again. A stop during an outage waits here, within the
    supervisor's grace period; past it the process is killed and the task is
    settled like any other the shutdown cut short."""
    backoff = Backoff(0.1, MAX_STORE_DELAY)
    refusals = 0
    while True:
        try:
            return write()
        except DatabaseError as exc:
            if not is_transient(exc) and database_reachable(using):
                refusals += 1
                if refusals >= REFUSED_TRIES:
                    logger.error("The database refused a task outcome: %s", exc)
                    return refused(exc)
                continue
            delay = backoff.next()
            logger.warning("Storing a task outcome failed (%s); retrying in %.1fs.", exc, delay)
            time.sleep(delay)
