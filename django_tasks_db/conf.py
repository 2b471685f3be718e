"""Backend options: their names, defaults and validation.

Options live in ``TASKS[alias]["OPTIONS"]`` and are read when Django builds the
backend (lazily, and again after ``override_settings``), never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS

from .validation import is_positive_int, is_positive_number, is_time_limit, seconds_problem

#: The largest MAX_LOG_BYTES (below MariaDB's default max_allowed_packet of 16 MiB).
MAX_LOG_BYTES_LIMIT = 8 * 2**20
#: The largest CLAIM_BATCH_SIZE (one claim statement names every row it takes).
MAX_CLAIM_BATCH_SIZE = 1000
#: The longest BATCH_WINDOW, in seconds.
MAX_BATCH_WINDOW = 1.0


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Typed view of ``OPTIONS``; field names are the lower-cased option keys."""

    #: Database alias holding the queue tables (they may live in their own database).
    database: str = DEFAULT_DB_ALIAS
    #: Schedules declared in code, by name (see docs/scheduling.md); synced by runscheduler.
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Seconds a cron tick may be late and still run as on time (a scheduler restart
    #: shorter than this misses nothing); older ticks follow the schedule's missed policy.
    schedule_grace: float = 60.0
    #: Seconds an idle worker waits before looking for ready tasks again (the cap
    #: of its backed-off polling where no NOTIFY wakes it).
    poll_interval: float = 1.0
    #: Most tasks a worker process claims in one transaction; it claims fewer when its
    #: tasks take long (see ``batch_window``) or fewer are ready. 1 turns batching off.
    claim_batch_size: int = 100
    #: Seconds of work a worker process claims at once (measured from its recent runs),
    #: and the longest a finished task's outcome waits to be written with others.
    batch_window: float = 0.05
    #: PostgreSQL: enqueues and finished tasks NOTIFY, idle workers and
    #: ``wait_for_result`` LISTEN. False (PgBouncer in transaction mode, where LISTEN
    #: does not work): neither, and they poll as on the other databases; nor are the
    #: worker's statements prepared (``db.PreparedStatement``).
    listen_notify: bool = True
    #: Seconds between two heartbeats of a worker.
    heartbeat_interval: float = 5.0
    #: Seconds without a heartbeat after which a worker counts as dead.
    worker_dead_after: float = 30.0
    #: Default number of runs a task gets (``@task(max_attempts=...)`` overrides).
    max_attempts: int = 1
    #: Default hard time limit in seconds, or None for none (``@task(timeout=...)``).
    timeout: float | None = None
    #: Seconds before the second attempt of a failed task (doubling after each attempt).
    retry_backoff: float = 1.0
    #: The longest wait between two attempts, in seconds.
    retry_backoff_max: float = 600.0
    #: Seconds running tasks get to finish after SIGTERM before they are killed.
    shutdown_grace_period: float = 30.0
    #: How often a task may lose its worker (killed, crashed, silent) before it is
    #: failed with WorkerLost; losses do not spend ``max_attempts``.
    max_worker_losses: int = 3
    #: Largest JSON-encoded return value stored, in bytes; a larger one fails the task.
    max_result_bytes: int = 1_048_576
    #: Largest log kept per task, in bytes (what it prints and logs while it runs); the
    #: rest is dropped behind a visible truncation mark.
    max_log_bytes: int = 65_536
    #: Days after which ``runscheduler`` deletes finished tasks, old schedule ticks and
    #: stopped workers (about once a day, once however many schedulers run); None: never.
    prune_after: float | None = None
    #: Bearer token that lets a scraper without a session read the metrics view.
    metrics_token: str | None = None

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name.upper() for f in fields(cls)]

    @classmethod
    def validate(cls, raw: dict[str, Any]) -> list[str]:
        """Return one message per problem in ``raw``; empty when it is valid."""
        problems = []
        if not isinstance(raw, dict):
            return ["OPTIONS must be a dict."]
        for key in raw:
            if key not in cls.keys():  # noqa: SIM118 - keys() is our classmethod
                problems.append(f"Unknown option {key!r}; known: {', '.join(cls.keys())}.")
        for key in (
            "POLL_INTERVAL",
            "HEARTBEAT_INTERVAL",
            "WORKER_DEAD_AFTER",
            "SHUTDOWN_GRACE_PERIOD",
            "RETRY_BACKOFF",
            "RETRY_BACKOFF_MAX",
            "BATCH_WINDOW",
        ):
            if key in raw and (problem := seconds_problem(key, raw[key])):
                problems.append(problem)
        if "TIMEOUT" in raw and raw["TIMEOUT"] is not None and not is_time_limit(raw["TIMEOUT"]):
            problems.append(
                "TIMEOUT must be a positive number of seconds (at most a year) or None, "
                f"not {raw['TIMEOUT']!r}."
            )
        for key in (
            "MAX_ATTEMPTS",
            "MAX_WORKER_LOSSES",
            "MAX_RESULT_BYTES",
            "MAX_LOG_BYTES",
            "CLAIM_BATCH_SIZE",
        ):
            if key in raw and not is_positive_int(raw[key]):
                problems.append(f"{key} must be a whole number >= 1, not {raw[key]!r}.")
        log_bytes = raw.get("MAX_LOG_BYTES", 1)
        if is_positive_int(log_bytes) and log_bytes > MAX_LOG_BYTES_LIMIT:
            problems.append(
                f"MAX_LOG_BYTES must be at most {MAX_LOG_BYTES_LIMIT} (8 MiB: a log is "
                "written in one statement, and MySQL/MariaDB refuse packets over "
                f"max_allowed_packet), not {log_bytes!r}."
            )
        batch = raw.get("CLAIM_BATCH_SIZE", 1)
        if is_positive_int(batch) and batch > MAX_CLAIM_BATCH_SIZE:
            problems.append(
                f"CLAIM_BATCH_SIZE must be at most {MAX_CLAIM_BATCH_SIZE}, not {batch!r}."
            )
        window = raw.get("BATCH_WINDOW", 0.05)
        if is_positive_number(window) and window > MAX_BATCH_WINDOW:
            problems.append(
                f"BATCH_WINDOW must be at most {MAX_BATCH_WINDOW:g} seconds (outcomes wait "
                f"that long before they can be read), not {window!r}."
            )
        prune_after = raw.get("PRUNE_AFTER")
        if prune_after is not None and not is_positive_number(prune_after):
            problems.append(
                f"PRUNE_AFTER must be a positive number of days or None, not {prune_after!r}."
            )
        token = raw.get("METRICS_TOKEN")
        if token is not None and not (isinstance(token, str) and len(token) >= 16):
            problems.append("METRICS_TOKEN must be a string of at least 16 characters, or None.")
        if "LISTEN_NOTIFY" in raw and not isinstance(raw["LISTEN_NOTIFY"], bool):
            problems.append(f"LISTEN_NOTIFY must be True or False, not {raw['LISTEN_NOTIFY']!r}.")
        if "DATABASE" in raw and not isinstance(raw["DATABASE"], str):
            problems.append(f"DATABASE must be a database alias, not {raw['DATABASE']!r}.")
        defaults = cls()
        heartbeat = raw.get("HEARTBEAT_INTERVAL", defaults.heartbeat_interval)
        dead_after = raw.get("WORKER_DEAD_AFTER", defaults.worker_dead_after)
        if (
            is_positive_number(heartbeat)
            and is_positive_number(dead_after)
            and dead_after <= heartbeat
        ):
            problems.append(
                f"WORKER_DEAD_AFTER ({dead_after}) must be longer than HEARTBEAT_INTERVAL "
                f"({heartbeat}), or live workers would be declared dead."
            )
        return problems + _scheduler_problems(raw)

    @classmethod
    def from_options(cls, raw: dict[str, Any], alias: str) -> BackendOptions:
        problems = cls.validate(raw)
        if problems:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: " + " ".join(problems))
        return cls(**{key.lower(): value for key, value in raw.items()})


def _scheduler_problems(raw: dict[str, Any]) -> list[str]:
    """Problems with the scheduler's options (their content is checked by E010-E015)."""
    problems = []
    if "SCHEDULE_GRACE" in raw and (
        problem := seconds_problem("SCHEDULE_GRACE", raw["SCHEDULE_GRACE"])
    ):
        problems.append(problem)
    if "SCHEDULES" in raw and not _is_schedule_map(raw["SCHEDULES"]):
        problems.append(
            "SCHEDULES must map schedule names to dicts, e.g. "
            "{'nightly': {'task': 'myapp.tasks.report', 'cron': '30 2 * * *'}}."
        )
    return problems


def _is_schedule_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(name, str) and name and isinstance(spec, dict) for name, spec in value.items()
    )
