"""The queue's tables: ``Task`` (one row per enqueued task) and ``Worker``.

Queue semantics live in ``TaskQuerySet`` (what is ready, in which order); state
changes are model methods that save only the fields they change, and every write
made on behalf of a claim is fenced by that claim's token.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone


class TaskStatus(models.TextChoices):
    """Every state a task row can be in.

    Django's ``TaskResult`` knows four of them; CANCELLED and ABORTED read as
    FAILED through ``get_result`` with an error class saying why.
    """

    READY = "READY", "Ready"
    RUNNING = "RUNNING", "Running"
    SUCCESSFUL = "SUCCESSFUL", "Successful"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"
    ABORTED = "ABORTED", "Aborted"


FINISHED_STATUSES = frozenset(
    {TaskStatus.SUCCESSFUL, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.ABORTED}
)


class TaskQuerySet(models.QuerySet["Task"]):
    def ready(self, now: datetime | None = None) -> TaskQuerySet:
        """Tasks a worker may claim now."""
        return self.filter(status=TaskStatus.READY, available_at__lte=now or timezone.now())

    def for_domains(self, domains: list[str] | None) -> TaskQuerySet:
        """Tasks in the given queues (all queues when ``domains`` is None)."""
        return self if domains is None else self.filter(queue_name__in=domains)

    def in_claim_order(self) -> TaskQuerySet:
        """Highest priority first, then the earliest due; matches ``task_claim_idx``."""
        return self.order_by("-priority", "available_at")

    def running(self) -> TaskQuerySet:
        return self.filter(status=TaskStatus.RUNNING)

    def finished(self) -> TaskQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)


class Worker(models.Model):
    """One ``runworker`` process, as the control room sees it."""

    class Status(models.TextChoices):
        RUNNING = "RUNNING", "Running"
        STOPPING = "STOPPING", "Stopping"
        STOPPED = "STOPPED", "Stopped"
        DEAD = "DEAD", "Dead"

    name = models.CharField(max_length=200, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    backend_name = models.CharField(max_length=100, default="default")
    domains = models.JSONField(default=list, help_text="Queues it takes tasks from; empty: all.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(default=timezone.now)
    stop_reason = models.TextField(blank=True)
    current_task = models.ForeignKey(
        "Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tasks_processed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["status", "last_heartbeat_at"], name="worker_liveness_idx")]

    def __str__(self) -> str:
        return self.name

    def unless_dead(self) -> models.QuerySet[Worker]:
        """This row as a queryset, empty once a reaper declared the worker dead.

        Every write saying "this worker is alive or busy" goes through it, so a
        worker that was presumed dead cannot quietly undo the verdict.
        """
        return (
            Worker.objects.using(self._state.db)
            .filter(pk=self.pk)
            .exclude(status=Worker.Status.DEAD)
        )

    def heartbeat(self, now: datetime | None = None) -> bool:
        """Record that this worker is alive; False when it was declared dead meanwhile."""
        self.last_heartbeat_at = now or timezone.now()
        return bool(self.unless_dead().update(last_heartbeat_at=self.last_heartbeat_at))

    def mark_stopped(self, reason: str = "", now: datetime | None = None) -> None:
        self.status = Worker.Status.STOPPED
        self.stopped_at = now or timezone.now()
        self.stop_reason = reason
        self.current_task = None
        self.save(update_fields=["status", "stopped_at", "stop_reason", "current_task"])


class Task(models.Model):
    """One enqueued task. Its primary key is the ``TaskResult.id`` Django hands out."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task_path = models.CharField(max_length=255, help_text="Dotted path of the django.tasks Task.")
    backend_name = models.CharField(max_length=100, default="default")
    queue_name = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=10, choices=TaskStatus.choices, default=TaskStatus.READY)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    return_value = models.JSONField(null=True, blank=True)

    run_after = models.DateTimeField(
        null=True, blank=True, help_text="Earliest run time the caller asked for, if any."
    )
    available_at = models.DateTimeField(
        default=timezone.now, help_text="When the task may next be claimed."
    )
    enqueued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    attempts = models.PositiveIntegerField(default=0, help_text="How many times it was run.")
    max_attempts = models.PositiveIntegerField(default=1)
    timeout = models.FloatField(null=True, blank=True, help_text="Hard time limit in seconds.")

    errors = models.JSONField(
        default=list, blank=True, help_text="One entry per failed attempt, with its traceback."
    )
    worker_ids = models.JSONField(default=list, blank=True, help_text="Worker of each attempt.")
    worker = models.ForeignKey(
        Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    claim_token = models.UUIDField(
        null=True, blank=True, editable=False, help_text="Fencing token of the current claim."
    )
    abort_requested_at = models.DateTimeField(null=True, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["-enqueued_at"]
        indexes = [
            # The claim: equality on status and queue, then the claim order. Finished
            # rows sit under other status values, so their number never slows a claim.
            models.Index(
                fields=["status", "queue_name", "-priority", "available_at"],
                name="task_claim_idx",
            ),
            models.Index(fields=["status", "finished_at"], name="task_finished_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=-100) & Q(priority__lte=100),
                name="task_priority_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} [{self.status}] {self.id}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def add_error(self, exception_class_path: str, traceback: str, **extra: Any) -> None:
        """Append one error entry (saved by the caller together with the state change)."""
        self.errors = [
            *self.errors,
            {
                "exception_class_path": exception_class_path,
                "traceback": traceback,
                "attempt": self.attempts,
                "worker": self.worker_ids[-1] if self.worker_ids else None,
                "at": timezone.now().isoformat(),
                **extra,
            },
        ]
