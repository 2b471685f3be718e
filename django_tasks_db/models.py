"""The queue's tables: ``Task`` (one row per enqueued task), ``Worker``, and the
scheduler's ``Schedule`` and ``ScheduleTick``.

Queue semantics live in ``TaskQuerySet`` (what is ready, in which order); state
changes are model methods that save only the fields they change, and every write
made on behalf of a claim is fenced by that claim's token.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .arguments import prepare_arguments
from .cron import Cron, InvalidCron, parse_zone, validate_expression
from .db import DatabaseNow, Recheck
from .exceptions import InvalidTaskArguments, UnknownTaskPath
from .framework import (
    TASK_MAX_PRIORITY,
    TASK_MIN_PRIORITY,
    InvalidTask,
    InvalidTaskBackend,
    task_backends,
)
from .framework import Task as DjangoTask
from .json_columns import TolerantJSONField, UnreadableJSON
from .task_paths import resolve_task
from .validation import placement_problem


class TaskStatus(models.TextChoices):
    """Every state a task row can be in.

    Django's ``TaskResult`` knows four of them; CANCELLED and ABORTED read as
    FAILED through ``get_result`` with an error class saying why.
    """

    READY = "READY", _("Ready")
    RUNNING = "RUNNING", _("Running")
    SUCCESSFUL = "SUCCESSFUL", _("Successful")
    FAILED = "FAILED", _("Failed")
    CANCELLED = "CANCELLED", _("Cancelled")
    ABORTED = "ABORTED", _("Aborted")


FINISHED_STATUSES = frozenset(
    {TaskStatus.SUCCESSFUL, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.ABORTED}
)


class TaskQuerySet(models.QuerySet["Task"]):
    def ready(self) -> TaskQuerySet:
        """Tasks a worker may claim now, by the database's clock."""
        return self.filter(status=TaskStatus.READY, available_at__lte=DatabaseNow())

    def for_domains(self, domains: list[str] | None) -> TaskQuerySet:
        """Tasks in the given queues (all queues when ``domains`` is None)."""
        return self if domains is None else self.filter(queue_name__in=domains)

    def unpaused(self, paused: Collection[str]) -> TaskQuerySet:
        """Tasks outside the ``paused`` queues (workers leave those where they are)."""
        return self.exclude(queue_name__in=list(paused)) if paused else self

    def in_claim_order(self) -> TaskQuerySet:
        """Highest priority first, then the earliest due: the order of ``task_ready_idx``
        within one queue. No index gives it across several (``queue_name IN``): such
        a query sorts every due row of those queues, so claims query one queue at a
        time (see docs/benchmarks.md, "Indexes and the claim query")."""
        return self.order_by("-priority", "available_at")

    def running(self) -> TaskQuerySet:
        """RUNNING tasks, unordered: with the model's newest-first order, SQLite walks
        ``task_enqueued_idx`` over the whole table (0.3 s at a million rows, on every
        supervisor tick) to avoid sorting a handful of rows."""
        return self.filter(status=TaskStatus.RUNNING).order_by()

    def finished(self) -> TaskQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)

    def held_by(self, worker: Worker) -> TaskQuerySet:
        """RUNNING tasks claimed under this very worker row (name, host and pid)."""
        return self.running().filter(
            worker__pk=worker.pk, worker__host=worker.host, worker__pid=worker.pid
        )


class Worker(models.Model):
    """One ``runworker`` process, as the control room sees it."""

    class Status(models.TextChoices):
        RUNNING = "RUNNING", _("Running")
        STOPPING = "STOPPING", _("Stopping")
        STOPPED = "STOPPED", _("Stopped")
        DEAD = "DEAD", _("Dead")

    name = models.CharField(_("name"), max_length=200, unique=True)
    host = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("pid"))
    backend_name = models.CharField(_("backend name"), max_length=100, default="default")
    domains = models.JSONField(
        _("domains"), default=list, help_text=_("Queues it takes tasks from; empty: all.")
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.RUNNING
    )
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    stopped_at = models.DateTimeField(_("stopped at"), null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(_("last heartbeat at"), default=timezone.now)
    stop_reason = models.TextField(_("stop reason"), blank=True)
    current_task = models.ForeignKey(
        "Task",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("current task"),
    )
    tasks_processed = models.PositiveIntegerField(_("tasks processed"), default=0)
    memory_mb = models.FloatField(
        _("memory (MiB)"),
        null=True,
        blank=True,
        help_text=_("Resident memory of the process, in MiB, when last seen."),
    )
    stop_requested_at = models.DateTimeField(
        _("stop requested at"),
        null=True,
        blank=True,
        help_text=_(
            "Set by the control room's 'stop': the worker's supervisor shuts down "
            "gracefully when it sees it."
        ),
    )

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
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

    def heartbeat(self) -> bool:
        """Record, on the database's clock, that this worker is alive; False when it
        was declared dead meanwhile."""
        return bool(self.unless_dead().update(last_heartbeat_at=DatabaseNow()))

    def mark_stopped(self, reason: str = "") -> None:
        Worker.objects.using(self._state.db).filter(pk=self.pk).update(
            status=Worker.Status.STOPPED,
            stopped_at=DatabaseNow(),
            stop_reason=reason,
            current_task=None,
        )
        self.status, self.stop_reason, self.current_task = Worker.Status.STOPPED, reason, None


#: A worker in one of these states may hold RUNNING tasks and is heartbeated.
LIVE_WORKER_STATUSES = (Worker.Status.RUNNING, Worker.Status.STOPPING)


class Task(models.Model):
    """One enqueued task. Its primary key is the ``TaskResult.id`` Django hands out."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task_path = models.CharField(
        _("task path"), max_length=255, help_text=_("Dotted path of the django.tasks Task.")
    )
    backend_name = models.CharField(_("backend name"), max_length=100, default="default")
    queue_name = models.CharField(_("queue name"), max_length=100, default="default")
    priority = models.SmallIntegerField(_("priority"), default=0)
    status = models.CharField(
        _("status"), max_length=10, choices=TaskStatus.choices, default=TaskStatus.READY
    )
    args = TolerantJSONField(_("args"), default=list, blank=True)
    kwargs = TolerantJSONField(_("kwargs"), default=dict, blank=True)
    return_value = TolerantJSONField(_("return value"), null=True, blank=True)

    run_after = models.DateTimeField(
        _("run after"),
        null=True,
        blank=True,
        help_text=_("Earliest run time the caller asked for, if any."),
    )
    available_at = models.DateTimeField(
        _("available at"),
        db_default=DatabaseNow(),
        help_text=_("When the task may next be claimed (the database's clock when due at once)."),
    )
    enqueued_at = models.DateTimeField(_("enqueued at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    last_attempted_at = models.DateTimeField(_("last attempted at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    attempts = models.PositiveIntegerField(
        _("attempts"), default=0, help_text=_("How many times it was run.")
    )
    snoozes = models.PositiveIntegerField(
        _("snoozes"),
        default=0,
        help_text=_("Runs that asked to run again later (Snooze); not failures."),
    )
    losses = models.PositiveIntegerField(
        _("losses"),
        default=0,
        help_text=_(
            "Runs whose worker was lost (killed, crashed, silent); not failures, but "
            "MAX_WORKER_LOSSES of them fail the task."
        ),
    )
    max_attempts = models.PositiveIntegerField(
        _("max attempts"),
        default=1,
        null=True,
        blank=True,
        help_text=_(
            "Empty: enqueued by path without options; the first worker that imports "
            "the task fills in what its @task declares."
        ),
    )
    timeout = models.FloatField(
        _("timeout"), null=True, blank=True, help_text=_("Hard time limit in seconds.")
    )

    errors = TolerantJSONField(
        _("errors"),
        default=list,
        blank=True,
        help_text=_("One entry per failed attempt, with its traceback."),
    )
    worker_ids = TolerantJSONField(
        _("worker ids"), default=list, blank=True, help_text=_("Worker of each attempt.")
    )
    worker = models.ForeignKey(
        Worker,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
        verbose_name=_("worker"),
    )
    claim_token = models.UUIDField(
        _("claim token"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("Fencing token of the current claim."),
    )
    abort_requested_at = models.DateTimeField(_("abort requested at"), null=True, blank=True)
    # A unique task (@task(unique=True)) holds its key while its state is in
    # ``unique_while``; every transition out of those states clears it (see
    # ``uniqueness``). NULLs never collide, so one plain unique index enforces it on
    # every database, MariaDB's lack of partial indexes included.
    unique_key = models.CharField(  # noqa: DJ001 - NULL is the point: NULLs never collide
        _("unique key"),
        max_length=64,
        null=True,
        blank=True,
        editable=False,
        help_text=_("Held by a unique task while it is in one of the states of unique_while."),
    )
    unique_while = models.CharField(
        _("unique while"),
        max_length=20,
        blank=True,
        default="",
        editable=False,
        help_text=_('The states that hold unique_key: "READY" or "READY,RUNNING".'),
    )
    # Flow control (see ``flow``): at most ``concurrency_limit`` RUNNING rows share a
    # ``concurrency_group``; at most ``rate_limit`` starts of a ``rate_group`` fall in
    # any ``rate_period`` seconds. The groups are hashes of the backend, the path and
    # the task's key function's answer.
    concurrency_group = models.CharField(  # noqa: DJ001 - NULL: no limit
        _("concurrency group"), max_length=64, null=True, blank=True, editable=False
    )
    concurrency_limit = models.PositiveIntegerField(
        _("concurrency limit"), null=True, blank=True, editable=False
    )
    rate_group = models.CharField(  # noqa: DJ001 - NULL: no limit
        _("rate group"), max_length=64, null=True, blank=True, editable=False
    )
    rate_limit = models.PositiveIntegerField(_("rate limit"), null=True, blank=True, editable=False)
    rate_period = models.FloatField(_("rate period"), null=True, blank=True, editable=False)
    # Chains and groups (see ``chains``): the tasks this one runs after, and what a
    # parent that did not succeed does to it ("cancel" it, or "run" it all the same).
    parents = TolerantJSONField(_("parents"), default=list, blank=True, editable=False)
    after_failure = models.CharField(
        _("after failure"), max_length=8, blank=True, default="", editable=False
    )
    log = models.TextField(
        _("log"),
        blank=True,
        default="",
        help_text=_("What the task printed and logged while it ran (at most MAX_LOG_BYTES)."),
    )
    progress = TolerantJSONField(
        _("progress"),
        null=True,
        blank=True,
        help_text=_('The latest set_progress(): {"current", "total", "message", "at"}.'),
    )

    objects = TaskQuerySet.as_manager()

    class Meta:
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        ordering = ["-enqueued_at"]
        indexes = [
            # The claim, one query per queue: equality on status and queue, then the
            # claim order, read in order with no sort. Partial on PostgreSQL and SQLite:
            # only READY rows are in it, so claiming and finishing a task leave it
            # alone. MySQL/MariaDB cannot make partial indexes and Django creates it
            # over every row instead (check models.W037); it serves the claim the same
            # way there, finished rows sitting under other status values.
            models.Index(
                fields=["status", "queue_name", "-priority", "available_at"],
                condition=Q(status=TaskStatus.READY),
                name="task_ready_idx",
            ),
            models.Index(fields=["status", "finished_at"], name="task_finished_idx"),
            # The control room's newest-first list and its date hierarchy. The admin
            # breaks ties by "-pk": with the id in the index, MySQL/MariaDB read the
            # first page from it instead of sorting the whole table (1.6 s at a
            # million rows), and PostgreSQL needs no incremental sort.
            models.Index(fields=["-enqueued_at", "-id"], name="task_enqueued_idx"),
            # Counts per queue and status (dashboard, metrics, `tasks queues`): an
            # index-only scan instead of reading the whole table at every scrape.
            models.Index(
                fields=["backend_name", "queue_name", "status"], name="task_queue_counts_idx"
            ),
            # How many of a concurrency group run: read under the group's lock at claims.
            models.Index(fields=["concurrency_group", "status"], name="task_concurrency_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=TASK_MIN_PRIORITY) & Q(priority__lte=TASK_MAX_PRIORITY),
                name="task_priority_range",
            ),
            models.UniqueConstraint(fields=["unique_key"], name="task_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} [{self.status}] {self.id}"

    @classmethod
    def check(cls, **kwargs: Any) -> list[Any]:
        """Django's model checks less ``models.W037`` ("conditions ignored" on
        MySQL/MariaDB): the claim index's condition only narrows it where partial
        indexes exist; the full index MariaDB makes instead serves claims the same way."""
        return [message for message in super().check(**kwargs) if message.id != "models.W037"]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def cancel(self) -> bool:
        """Cancel a READY task: it will never run. False when it is not READY.

        Race-free against a worker claiming it at the same moment: exactly one of
        the two wins (see ``transitions.cancel``). Reloads this instance.
        """
        from . import transitions

        cancelled = transitions.cancel(self.pk, self._state.db or "default")
        self.refresh_from_db()
        return cancelled

    def abort(self) -> bool:
        """Stop this task wherever it is; False when it had already finished.

        A READY task is cancelled. For a RUNNING one the request is recorded and the
        supervisor of its worker kills the process running it (``runworker`` looks
        every 0.2 s); the task then ends ABORTED. Reloads this instance.
        """
        from . import transitions

        aborted = transitions.request_abort(self.pk, self._state.db or "default")
        self.refresh_from_db()
        return aborted

    def content_problem(self) -> str | None:
        """Why this row cannot be run as written, or None.

        Enqueue never writes such a row; an edit by hand (or by a buggy script)
        can. A worker fails it alone with ``InvalidTaskRow`` instead of running it
        with arguments nobody meant, or crashing on it.
        """
        shapes = {"args": list, "kwargs": dict, "errors": list, "worker_ids": list}
        for field, shape in shapes.items():
            value = getattr(self, field)
            if isinstance(value, UnreadableJSON):
                return f"Task {self.pk}: column {field!r} cannot be read ({value.reason})."
            if not isinstance(value, shape):
                return (
                    f"Task {self.pk}: column {field!r} holds {value!r:.200}, not a JSON "
                    f"{'object' if shape is dict else 'list'}."
                )
        if not all(isinstance(key, str) for key in self.kwargs):
            return f"Task {self.pk}: column 'kwargs' has keys that are not strings."
        return None


Task._meta.get_field("status").register_lookup(Recheck)  # status__recheck: see db.Recheck


class MissedPolicy(models.TextChoices):
    """What a schedule does with ticks that passed while no scheduler ran."""

    SKIP = "skip", _("Skip missed ticks, run at the next one")
    CATCH_UP_ONCE = "catch_up_once", _("Run once for the missed ticks, then continue")


class Schedule(models.Model):
    """A task enqueued on a cron rhythm by ``runscheduler``.

    Validated on every save (``full_clean``): the cron expression, the time zone,
    the task path (it must name a django.tasks Task) and the arguments (they must
    bind to the task's signature), so a bad row is refused where it is written,
    not discovered by the scheduler at 02:30.
    """

    name = models.CharField(_("name"), max_length=200, unique=True)
    task_path = models.CharField(
        _("task path"),
        max_length=255,
        help_text=_("Dotted path of a django.tasks Task, e.g. myapp.tasks.report."),
    )
    cron = models.CharField(
        _("cron"),
        max_length=200,
        help_text=_(
            "minute hour day month weekday, e.g. '30 2 * * *'; an optional sixth field is "
            "the second ('* * * * * */10': every 10 seconds); aliases such as @daily."
        ),
    )
    timezone = models.CharField(
        _("timezone"),
        max_length=64,
        default="UTC",
        help_text=_("IANA zone the cron's wall times are read in."),
    )
    args = TolerantJSONField(_("args"), default=list, blank=True)
    kwargs = TolerantJSONField(_("kwargs"), default=dict, blank=True)
    backend_name = models.CharField(_("backend name"), max_length=100, default="default")
    queue_name = models.CharField(
        _("queue name"), max_length=100, blank=True, help_text=_("Empty: the task's own queue.")
    )
    priority = models.SmallIntegerField(
        _("priority"), null=True, blank=True, help_text=_("Empty: the task's own priority.")
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    missed_policy = models.CharField(
        _("missed policy"), max_length=20, choices=MissedPolicy.choices, default=MissedPolicy.SKIP
    )
    catchup_window = models.PositiveIntegerField(
        _("catchup window"),
        default=3600,
        help_text=_("Seconds: missed ticks older than this are dropped, even when catching up."),
    )
    last_run_at = models.DateTimeField(
        _("last run at"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("Scheduled time of the latest enqueued tick."),
    )
    next_run_at = models.DateTimeField(
        _("next run at"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("The earliest tick not yet handled."),
    )
    defined_in_code = models.BooleanField(_("defined in code"), default=False, editable=False)
    last_error = models.TextField(
        _("last error"),
        blank=True,
        editable=False,
        help_text=_("Why the scheduler could not run this schedule the last time it tried."),
    )
    code_hash = models.CharField(_("code hash"), max_length=64, blank=True, editable=False)

    class Meta:
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        ordering = ["name"]
        indexes = [
            models.Index(fields=["backend_name", "enabled", "next_run_at"], name="schedule_due_idx")
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate (always: the scheduler writes its run state with ``update()``), then
        (re)arm ``next_run_at`` when the timing changed or the schedule was enabled."""
        self.full_clean()
        update_fields = kwargs.get("update_fields")
        if self._needs_arming():
            self.arm(timezone.now())
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "next_run_at"}
        super().save(*args, **kwargs)
        self._loaded_timing = self._timing()

    @classmethod
    def from_db(cls, *args: Any, **kwargs: Any) -> Schedule:
        instance = super().from_db(*args, **kwargs)
        instance._loaded_timing = instance._timing()
        return instance

    def _timing(self) -> tuple[str, str, bool]:
        return (self.cron, self.timezone, self.enabled)

    def get_cron(self) -> Cron:
        return Cron(self.cron, self.timezone)

    def get_task(self) -> DjangoTask[..., Any]:
        """The Task to enqueue: resolved from its path, with this schedule's overrides."""
        task = resolve_task(self.task_path)
        overrides: dict[str, Any] = {"backend": self.backend_name}
        if self.queue_name:
            overrides["queue_name"] = self.queue_name
        if self.priority is not None:
            overrides["priority"] = self.priority
        return task.using(**overrides)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        self.args = [] if self.args is None else self.args  # an empty admin field
        self.kwargs = {} if self.kwargs is None else self.kwargs
        try:
            validate_expression(self.cron)
        except InvalidCron as exc:
            errors["cron"] = str(exc)
        try:
            parse_zone(self.timezone)
        except InvalidCron as exc:
            errors["timezone"] = str(exc)
        if not isinstance(self.args, list):
            errors["args"] = gettext('args must be a JSON list, e.g. [1, "two"].')
        if not isinstance(self.kwargs, dict):
            errors["kwargs"] = gettext('kwargs must be a JSON object, e.g. {"report_id": 1}.')
        try:
            task = resolve_task(self.task_path)
        except UnknownTaskPath as exc:
            errors["task_path"] = str(exc)
        else:
            bad_arguments = "args" in errors or "kwargs" in errors
            errors.update(self._check_task(task, skip_arguments=bad_arguments))
        if errors:
            raise ValidationError(errors)

    def _check_task(self, task: DjangoTask[..., Any], skip_arguments: bool) -> dict[str, str]:
        try:
            backend = task_backends[self.backend_name]
        except InvalidTaskBackend as exc:
            return {"backend_name": str(exc)}
        queue_name = self.queue_name or None  # empty: the task's own
        if problem := placement_problem(queue_name, self.priority, backend.queues, backend.alias):
            return dict([problem])
        try:
            self.get_task()
        except InvalidTask as exc:
            return {"task_path": str(exc)}
        if skip_arguments:
            return {}
        try:
            prepare_arguments(task.func, self.args, self.kwargs, task.takes_context)
        except InvalidTaskArguments as exc:
            return {"args": str(exc)}
        return {}

    def _needs_arming(self) -> bool:
        loaded = getattr(self, "_loaded_timing", None)
        if loaded is None:  # a new row: armed unless its creator chose a next run
            return self.next_run_at is None
        cron, zone, enabled = loaded
        switched_on = self.enabled and not enabled
        return self.next_run_at is None or switched_on or (cron, zone) != (self.cron, self.timezone)

    def arm(self, now: datetime) -> None:
        """Set the next run to the first tick after ``now`` (unsaved)."""
        self.next_run_at = self.get_cron().next_after(now)


class ScheduleTick(models.Model):
    """One tick of a schedule that was enqueued: the unique key that makes it once.

    Written in the same transaction as the task row, so with several schedulers
    the one that inserts it first enqueues the task and every other one gets an
    IntegrityError and rolls its attempt back.
    """

    schedule = models.ForeignKey(
        Schedule, on_delete=models.CASCADE, related_name="ticks", verbose_name=_("schedule")
    )
    scheduled_at = models.DateTimeField(_("scheduled at"), help_text=_("The tick, in UTC."))
    enqueued_at = models.DateTimeField(_("enqueued at"))
    catch_up = models.BooleanField(
        _("catch up"),
        default=False,
        help_text=_("Run once on behalf of ticks missed while no scheduler ran."),
    )
    task = models.ForeignKey(
        Task,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("task"),
    )

    class Meta:
        verbose_name = _("schedule tick")
        verbose_name_plural = _("schedule ticks")
        ordering = ["-scheduled_at"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "scheduled_at"], name="schedule_tick_once")
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.scheduled_at.isoformat()}"


class FlowGroup(models.Model):
    """One row per concurrency or rate group: claims of the group's tasks lock it, so
    that they count its running tasks and recent starts one at a time (``flow``)."""

    key = models.CharField(_("key"), max_length=64, primary_key=True)

    class Meta:
        verbose_name = _("flow group")
        verbose_name_plural = _("flow groups")

    def __str__(self) -> str:
        return self.key


class TaskDependency(models.Model):
    """A child task waits for a parent that has not finished (``chains``). Plain ids,
    no foreign keys: a key check would lock the parent row inside the enqueuer's
    transaction and hold up the worker finishing it."""

    parent_id = models.UUIDField(_("parent id"))
    child_id = models.UUIDField(_("child id"))

    class Meta:
        verbose_name = _("task dependency")
        verbose_name_plural = _("task dependencies")
        constraints = [
            models.UniqueConstraint(fields=["parent_id", "child_id"], name="task_dependency_once")
        ]
        indexes = [models.Index(fields=["child_id"], name="task_dependency_child_idx")]

    def __str__(self) -> str:
        return f"{self.child_id} after {self.parent_id}"


class TaskStart(models.Model):
    """A start of a rate-limited task, kept for one period of its limit (``flow``)."""

    group = models.CharField(_("group"), max_length=64)
    started_at = models.DateTimeField(_("started at"))

    class Meta:
        verbose_name = _("task start")
        verbose_name_plural = _("task starts")
        indexes = [models.Index(fields=["group", "started_at"], name="task_start_window_idx")]

    def __str__(self) -> str:
        return f"{self.group} {self.started_at}"


class Dashboard(Task):
    """No table: the admin index's link to the queue dashboard (see admin/dashboard.py)."""

    class Meta:
        proxy = True
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")
        default_permissions = ()


class Queue(models.Model):
    """A queue's operator state. A queue needs no row to exist: one is written the
    first time someone pauses it, and kept (the pause survives restarts)."""

    backend_name = models.CharField(_("backend name"), max_length=100, default="default")
    name = models.CharField(_("name"), max_length=100)
    paused = models.BooleanField(_("paused"), default=False)
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)
    changed_by = models.CharField(
        _("changed by"),
        max_length=150,
        blank=True,
        help_text=_("Who paused or resumed it last (user or 'cli')."),
    )

    class Meta:
        verbose_name = _("queue")
        verbose_name_plural = _("queues")
        ordering = ["backend_name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["backend_name", "name"], name="queue_name_once")
        ]

    def __str__(self) -> str:
        return self.name


class Chore(models.Model):
    """When a periodic duty shared by every scheduler (pruning) last ran: claimed by
    one conditional UPDATE, so it runs once per period however many schedulers run."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    last_run_at = models.DateTimeField(_("last run at"), null=True, blank=True)

    class Meta:
        verbose_name = _("chore")
        verbose_name_plural = _("chores")

    def __str__(self) -> str:
        return self.name
