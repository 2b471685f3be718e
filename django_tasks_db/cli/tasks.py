"""``tasks list|show|log|cancel|abort|retry|enqueue``: single tasks from the terminal."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .. import control
from ..backend import DatabaseBackend
from ..chains import WAITING_AT
from ..db import database_time
from ..json_columns import json_text
from ..models import FINISHED_STATUSES, Task, TaskStatus
from ..transitions import as_list
from .tables import EMPTY, between, format_duration, format_time, table

#: Seconds between two reads of a followed task's row.
FOLLOW_INTERVAL = 0.5

#: Columns of ``tasks list``.
LIST_COLUMNS = (
    "ID",
    "STATUS",
    "TASK",
    "QUEUE",
    "PRI",
    "ATTEMPTS",
    "ENQUEUED",
    "DURATION",
    "WORKER",
    "ERROR",
)


# -- what a task row says ------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_seconds(row: Task, now: datetime) -> float | None:
    """How long the latest run took, or has taken so far while it runs."""
    start = row.last_attempted_at or row.started_at
    end = row.finished_at or (now if row.status == TaskStatus.RUNNING else None)
    return between(start, end)


def error_class(row: Task) -> str | None:
    """Class name of the latest error entry, if any."""
    errors = [e for e in as_list(row.errors) if isinstance(e, dict)]
    if not errors:
        return None
    path = str(errors[-1].get("exception_class_path") or "")
    return path.rpartition(".")[2] or None


def worker_name(row: Task) -> str | None:
    return row.worker.name if row.worker_id and row.worker else None


def summary(row: Task, now: datetime) -> dict[str, Any]:
    """One task as a list shows it (also ``list --json``)."""
    seconds = run_seconds(row, now)
    return {
        "id": str(row.pk),
        "task_path": row.task_path,
        "status": row.status,
        "queue": row.queue_name,
        "priority": row.priority,
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "enqueued_at": iso(row.enqueued_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "duration_seconds": None if seconds is None else round(seconds, 3),
        "worker": worker_name(row),
        "error_class": error_class(row),
    }


def details(row: Task, now: datetime) -> dict[str, Any]:
    """Everything about one task (``show --json``), its log and progress included."""
    return {
        **summary(row, now),
        "backend": row.backend_name,
        "args": row.args,
        "kwargs": row.kwargs,
        "return_value": row.return_value,
        "run_after": iso(row.run_after),
        "available_at": iso(row.available_at),
        "last_attempted_at": iso(row.last_attempted_at),
        "snoozes": row.snoozes,
        "losses": row.losses,
        "timeout": row.timeout,
        "abort_requested_at": iso(row.abort_requested_at),
        "worker_ids": row.worker_ids,
        "errors": row.errors,
        "progress": row.progress,
        "log": row.log,
        "actions": control.actions_for(row),
        "waiting": control.why_waiting(row, now),
    }


def dumps(document: object) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)


# -- list, show, log -----------------------------------------------------------------------


def list_tasks(command: BaseCommand, backend: DatabaseBackend, options: dict[str, Any]) -> None:
    if options["queue"]:
        control.check_queue(backend, options["queue"])
    rows = (
        Task.objects.using(backend.database)
        .filter(backend_name=backend.alias)
        .select_related("worker")
        .defer("log", "return_value", "args", "kwargs")
        .order_by("-enqueued_at")
    )
    if options["status"]:
        rows = rows.filter(status=options["status"])
    if options["queue"]:
        rows = rows.filter(queue_name=options["queue"])
    if options["task"]:
        rows = rows.filter(task_path=options["task"])
    now = database_time(backend.database)
    found = [summary(row, now) for row in rows[: options["limit"]]]
    if options["json"]:
        command.stdout.write(dumps(found))
        return
    if not found:
        command.stdout.write(_("No tasks."))
        return
    command.stdout.write(
        table(
            LIST_COLUMNS,
            [
                (
                    t["id"],
                    t["status"],
                    t["task_path"],
                    t["queue"],
                    t["priority"],
                    attempts_text(t["attempts"], t["max_attempts"]),
                    format_time(_parse(t["enqueued_at"])),
                    format_duration(t["duration_seconds"]),
                    t["worker"],
                    t["error_class"],
                )
                for t in found
            ],
        )
    )


def attempts_text(attempts: int, max_attempts: int | None) -> str:
    return f"{attempts}/{max_attempts}" if max_attempts else str(attempts)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def when_text(value: object) -> str:
    """A time stored as an ISO string in a JSON column (an error entry's or the
    progress's ``at``) to the second; anything else a hand-edited row holds, as is."""
    if value is None or value == "":
        return EMPTY
    try:
        return format_time(datetime.fromisoformat(value)) if isinstance(value, str) else str(value)
    except ValueError:
        return str(value)


def show(command: BaseCommand, backend: DatabaseBackend, options: dict[str, Any]) -> None:
    (row,) = control.tasks_by_id([options["id"]], backend.database)
    now = database_time(backend.database)
    if options["json"]:
        command.stdout.write(dumps(details(row, now)))
        return
    command.stdout.write("\n".join(show_lines(row, now)))


def show_lines(row: Task, now: datetime) -> list[str]:
    """``tasks show`` as text: fields, failed attempts with tracebacks, progress, log."""
    seconds = run_seconds(row, now)
    fields: list[tuple[str, object]] = [
        ("id", row.pk),
        ("task", row.task_path),
        ("status", row.status),
        ("waiting", control.why_waiting(row, now) or EMPTY),
        ("backend", row.backend_name),
        ("queue", row.queue_name),
        ("priority", row.priority),
        ("args", json_text(row.args)),
        ("kwargs", json_text(row.kwargs)),
        ("return value", json_text(row.return_value)),
        ("attempts", attempts_text(row.attempts, row.max_attempts)),
        ("snoozes / losses", f"{row.snoozes} / {row.losses}"),
        ("timeout", format_duration(row.timeout) if row.timeout else EMPTY),
        ("enqueued", format_time(row.enqueued_at)),
        ("run after", format_time(row.run_after)),
        (
            "available",
            "after its parents"
            if row.available_at == WAITING_AT
            else format_time(row.available_at),
        ),
        ("started", format_time(row.started_at)),
        ("last attempt", format_time(row.last_attempted_at)),
        ("finished", format_time(row.finished_at)),
        ("duration", format_duration(seconds)),
        ("worker", worker_name(row) or EMPTY),
        ("abort requested", format_time(row.abort_requested_at)),
        ("actions", ", ".join(control.actions_for(row)) or EMPTY),
    ]
    width = max(len(name) for name, _value in fields)
    lines = [f"{name.ljust(width)}  {value}" for name, value in fields]
    errors = [e for e in as_list(row.errors) if isinstance(e, dict)]
    lines += ["", _("Failed attempts ({n})").format(n=len(errors))]
    for entry in errors:
        lines.append(
            f"  #{entry.get('attempt', '?')}  {entry.get('exception_class_path', '?')}  "
            f"worker {entry.get('worker') or EMPTY}  at {when_text(entry.get('at'))}"
        )
        lines += [f"    {line}" for line in str(entry.get("traceback", "")).rstrip().splitlines()]
    lines += ["", _("Progress"), f"  {progress_text(row.progress)}"]
    lines += ["", _("Log")]
    lines += [f"  {line}" for line in row.log.rstrip("\n").splitlines()] or [f"  {EMPTY}"]
    return lines


def progress_text(progress: object) -> str:
    if not isinstance(progress, dict):
        return EMPTY
    current, total = progress.get("current"), progress.get("total")
    text = f"{current}" if total in (None, "") else f"{current} / {total}"
    if isinstance(current, int | float) and isinstance(total, int | float) and total:
        with contextlib.suppress(OverflowError):  # integers too big for a float: no %
            text += f" ({100 * current / total:.0f}%)"
    if progress.get("message"):
        text += f"  {progress['message']}"
    if progress.get("at"):
        text += f"  (at {when_text(progress['at'])})"
    return text


def log(command: BaseCommand, backend: DatabaseBackend, options: dict[str, Any]) -> None:
    """The task's log; with ``--follow`` new text as it comes, until the task finishes."""
    (row,) = control.tasks_by_id([options["id"]], backend.database)
    write = _raw_writer(command)
    write(row.log)
    if not options["follow"]:
        return
    shown, finished = row.log, row.is_finished
    rows = Task.objects.using(backend.database).filter(pk=row.pk)
    while not finished:
        time.sleep(FOLLOW_INTERVAL)
        current = rows.values_list("log", "status").first()
        if current is None:  # deleted meanwhile
            return
        text, status = current
        write(text[len(shown) :] if text.startswith(shown) else f"\n{text}")
        shown, finished = text, status in FINISHED_STATUSES


def _raw_writer(command: BaseCommand) -> Callable[[str], None]:
    def write(text: str) -> None:
        if text:
            command.stdout.write(text, ending="")
            command.stdout.flush()

    return write


# -- actions -------------------------------------------------------------------------------

#: action -> (control call, what it says when it changed the task, when it did not).
ACTIONS: dict[str, tuple[Callable[[Sequence[Task]], int], Any, Any]] = {
    "cancel": (
        control.cancel,
        gettext_lazy("cancelled"),
        gettext_lazy("not cancelled: it is {status}, not READY"),
    ),
    "abort": (
        control.abort,
        gettext_lazy("abort requested: its worker stops it"),
        gettext_lazy("not aborted: it is {status}, already finished"),
    ),
    "retry": (
        control.retry,
        gettext_lazy("queued again (attempts restart at 0)"),
        gettext_lazy("not retried: it is {status}, not FAILED, CANCELLED or ABORTED"),
    ),
}


def act(command: BaseCommand, backend: DatabaseBackend, options: dict[str, Any]) -> None:
    """Every id is checked before any task changes; then one line per id."""
    change, done, skipped = ACTIONS[options["subcommand"]]
    rows = control.tasks_by_id(options["ids"], backend.database)
    for row in rows:
        if change([row]):
            aborted_before_run = options["subcommand"] == "abort" and row.status == TaskStatus.READY
            said = str(ACTIONS["cancel"][1] if aborted_before_run else done)
        else:
            status = (
                Task.objects.using(backend.database)
                .filter(pk=row.pk)
                .values_list("status", flat=True)
                .first()
            )
            said = skipped.format(status=status or row.status)
        command.stdout.write(f"{row.pk}: {said}")


def enqueue(command: BaseCommand, backend: DatabaseBackend, options: dict[str, Any]) -> None:
    """Validated like ``Task.enqueue`` before anything is written; prints the new id."""
    if options["queue"] and backend.queues:  # names the known ones when it is not
        control.check_queue(backend, options["queue"])
    args = control.parse_json(options["args_json"], "--args", [])
    kwargs = control.parse_json(options["kwargs_json"], "--kwargs", {})
    result = control.enqueue(
        options["path"],
        args,
        kwargs,
        backend=backend.alias,
        queue=options["queue"],
        priority=options["priority"],
    )
    command.stdout.write(str(result.id))
