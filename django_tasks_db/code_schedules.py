"""Schedules declared in code, in ``TASKS[alias]["OPTIONS"]["SCHEDULES"]``.

Who wins when code and admin disagree: the code owns the *definition* (task,
cron, timezone, args, kwargs, queue_name, priority, missed_policy,
catchup_window). A row is overwritten only when that definition changes in code
(tracked by a hash of it), so an operator's edit in the admin stands until a
deploy changes that very schedule. ``enabled`` belongs to the operator: the code
only sets it when the row is created, so a deploy never resumes a paused schedule.
A schedule removed from the code is deleted from the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core import checks
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, transaction

from .db import locking_transaction
from .models import MissedPolicy, Schedule

if TYPE_CHECKING:
    from .backend import DatabaseBackend

logger = logging.getLogger("django_tasks_db.scheduler")

#: Keys of a definition in code, and the model field each one fills.
KEYS = {
    "task": "task_path",
    "cron": "cron",
    "timezone": "timezone",
    "args": "args",
    "kwargs": "kwargs",
    "queue_name": "queue_name",
    "priority": "priority",
    "missed_policy": "missed_policy",
    "catchup_window": "catchup_window",
    "enabled": "enabled",
}
REQUIRED = ("task", "cron")
DEFAULTS: dict[str, Any] = {
    "timezone": "UTC",
    "args": [],
    "kwargs": {},
    "queue_name": "",
    "priority": None,
    "missed_policy": MissedPolicy.SKIP.value,
    "catchup_window": 3600,
    "enabled": True,
}

#: System check id per model field; problems with other fields get E015.
CHECK_IDS = {
    "cron": "django_tasks_db.E011",
    "timezone": "django_tasks_db.E012",
    "task_path": "django_tasks_db.E013",
    "args": "django_tasks_db.E014",
    "kwargs": "django_tasks_db.E014",
}


def definition_problems(spec: dict[str, Any]) -> list[str]:
    """Problems with the shape of one definition (unknown or missing keys)."""
    problems = [f"unknown key {key!r}" for key in spec if key not in KEYS]
    problems += [f"{key!r} is required" for key in REQUIRED if key not in spec]
    return problems


def model_fields(spec: dict[str, Any], backend_alias: str) -> dict[str, Any]:
    """The model fields a definition sets, defaults filled in."""
    values = {**DEFAULTS, **spec}
    fields = {KEYS[key]: values[key] for key in KEYS}
    fields["queue_name"] = fields["queue_name"] or ""
    fields["backend_name"] = backend_alias
    return fields


def definition_hash(fields: dict[str, Any]) -> str:
    """Fingerprint of what the code owns (everything but ``enabled``)."""
    owned = {key: value for key, value in fields.items() if key != "enabled"}
    return hashlib.sha256(json.dumps(owned, sort_keys=True, default=str).encode()).hexdigest()


def check_code_schedules(backend: DatabaseBackend) -> list[checks.CheckMessage]:
    """E010 a malformed definition, E011 cron, E012 time zone, E013 task path,
    E014 arguments, E015 any other field (queue, priority, policy, window)."""
    messages: list[checks.CheckMessage] = []
    for name, spec in backend.config.schedules.items():
        where = f"TASKS[{backend.alias!r}]['OPTIONS']['SCHEDULES'][{name!r}]"
        problems = definition_problems(spec)
        if problems:
            messages += [
                checks.Error(
                    f"{where}: {problem}.",
                    hint=f"Known keys: {', '.join(KEYS)}; 'task' and 'cron' are required.",
                    id="django_tasks_db.E010",
                )
                for problem in problems
            ]
            continue
        row = Schedule(name=name, **model_fields(spec, backend.alias))
        try:
            row.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            for model_field, errors in exc.message_dict.items():
                messages += [
                    checks.Error(
                        f"{where}: {model_field}: {error}",
                        id=CHECK_IDS.get(model_field, "django_tasks_db.E015"),
                    )
                    for error in errors
                ]
    return messages


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def sync_code_schedules(backend: DatabaseBackend, attempts: int = 3) -> SyncReport:
    """Bring the database in line with the schedules declared in code.

    Safe when several schedulers start at once: rows are created in savepoints
    (the loser of a race sees an IntegrityError and reads the winner's row) and a
    deadlock between two starting schedulers is retried.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _sync(backend)
        except OperationalError:  # e.g. MySQL's deadlock between two starting schedulers
            if attempt == attempts:
                raise
            logger.warning("Syncing schedules collided with another scheduler; retrying.")
    raise AssertionError("unreachable")


def _sync(backend: DatabaseBackend) -> SyncReport:
    using = backend.database
    declared = backend.config.schedules
    report = SyncReport()
    with locking_transaction(using):
        for name in sorted(declared):
            fields = model_fields(declared[name], backend.alias)
            digest = definition_hash(fields)
            row = _existing(using, name) or _create(using, name, fields, digest)
            if row is None:
                report.created.append(name)
            elif row.defined_in_code and row.code_hash == digest:
                report.unchanged.append(name)
            else:
                fields.pop("enabled")
                for model_field, value in fields.items():
                    setattr(row, model_field, value)
                row.defined_in_code, row.code_hash = True, digest
                row.save(using=using)
                report.updated.append(name)
        stale = (
            Schedule.objects.using(using)
            .filter(defined_in_code=True, backend_name=backend.alias)
            .exclude(name__in=list(declared))
        )
        report.deleted = sorted(stale.values_list("name", flat=True))
        stale.delete()
    for action in ("created", "updated", "deleted"):
        if getattr(report, action):
            logger.info("Schedules %s from code: %s", action, ", ".join(getattr(report, action)))
    return report


def _existing(using: str, name: str) -> Schedule | None:
    # Read first, lock by primary key: locking a missing name would take a gap lock
    # on MySQL, and two schedulers inserting under gap locks deadlock.
    pk = Schedule.objects.using(using).filter(name=name).values_list("pk", flat=True).first()
    if pk is None:
        return None
    return Schedule.objects.using(using).select_for_update().filter(pk=pk).first()


def _create(using: str, name: str, fields: dict[str, Any], digest: str) -> Schedule | None:
    """Insert the row; None when created, the other scheduler's row when it won."""
    try:
        with transaction.atomic(using=using):
            Schedule(name=name, defined_in_code=True, code_hash=digest, **fields).save(using=using)
        return None
    except (IntegrityError, ValidationError):
        row = _existing(using, name)
        if row is None:
            raise
        return row
