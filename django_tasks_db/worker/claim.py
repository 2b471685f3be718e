"""Claiming: the short transaction that turns one READY row into this worker's RUNNING row."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import connections
from django.utils import timezone

from ..db import claims_one_queue_at_a_time, locking_transaction
from ..models import Task, TaskStatus, Worker


def claim_next(
    worker: Worker, domains: list[str] | None, using: str, now: datetime | None = None
) -> Task | None:
    """Claim the next ready task for ``worker``, or return None when none is ready.

    Rows another worker is claiming are skipped, not waited for. The claim gets a
    fresh fencing token: every later write for this run names it, so a worker that
    lost its claim (declared dead, task re-queued) cannot overwrite the new run.
    """
    now = now or timezone.now()
    with locking_transaction(using):
        row = _lock_next(using, domains, now)
        if row is None:
            return None
        row.status = TaskStatus.RUNNING
        row.claim_token = uuid.uuid4()
        row.worker = worker
        row.attempts += 1
        row.started_at = row.started_at or now
        row.last_attempted_at = now
        row.worker_ids = [*row.worker_ids, worker.name]
        row.save(
            update_fields=[
                "status",
                "claim_token",
                "worker",
                "attempts",
                "started_at",
                "last_attempted_at",
                "worker_ids",
            ]
        )
        # Counts as a heartbeat: a worker busy claiming is never mistaken for a dead one.
        if not worker.unless_dead().update(current_task=row, last_heartbeat_at=now):
            raise WorkerDeclaredDead(worker.name)  # rolls the claim back
    return row


class WorkerDeclaredDead(Exception):
    """This worker's row was marked DEAD by a reaper; it must not claim under it."""


def _lock_next(using: str, domains: list[str] | None, now: datetime) -> Task | None:
    """Lock and return the first ready row in claim order, skipping locked ones."""
    ready = Task.objects.using(using).ready(now)
    claimable = ready.in_claim_order().select_for_update(skip_locked=True)
    if not claims_one_queue_at_a_time(connections[using]):
        return claimable.for_domains(domains).first()
    if domains is None:
        domains = list(ready.order_by().values_list("queue_name", flat=True).distinct())
    heads = [row for domain in domains if (row := claimable.filter(queue_name=domain).first())]
    return min(heads, key=lambda row: (-row.priority, row.available_at), default=None)
