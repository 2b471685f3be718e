"""Hooks around a worker's life and each task it runs.

Every signal here is sent robustly: a receiver that raises is logged with its
traceback and the worker carries on. Django's own ``task_enqueued``,
``task_started`` and ``task_finished`` are sent as well (the same way), so code
written for ``django.tasks`` keeps working.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("django_tasks_db")

# Sent once by each worker process after it registered and before it claims.
# sender: the worker class (django_tasks_db.worker.Worker); kwargs: worker (the
# Worker model row). The place for per-process setup, e.g. opening a client.
worker_started = Signal()

# Sent once when a worker leaves its loop (signal, --burst, --max-tasks), before
# its row is marked stopped. sender: the worker class; kwargs: worker.
worker_stopping = Signal()

# Deprecated: Django's ``task_started`` is sent at the same moment; connect to
# that (README, "Signals"). Sent in the worker right before a task runs. sender:
# the Task being run; kwargs: task_id, task_name (dotted path), task_result.
task_prerun = Signal()

# Sent in the worker right after a task ran and its outcome was stored.
# sender: the Task; kwargs: task_id, task_name, result (the return value, or the
# exception raised), status (the row's new status: SUCCESSFUL, FAILED, or READY
# when it will be retried; None when the outcome was refused because this worker
# had lost the claim), task_result.
task_postrun = Signal()


def send_robustly(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal``; log, never raise, what a receiver raises."""
    for receiver, outcome in signal.send_robust(sender, **kwargs):
        if isinstance(outcome, Exception):
            logger.error(
                "Receiver %r of a django_tasks_db signal raised; carrying on.",
                receiver,
                exc_info=outcome,
            )
