"""``manage.py runworker``: a supervisor and its worker processes for the database queue."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks_db.exceptions import DatabaseNotSupported
from django_tasks_db.management.command_logging import configure_command_logging
from django_tasks_db.management.options import (
    add_backend_option,
    backend_option,
    non_negative,
    positive_int,
)
from django_tasks_db.worker.loop import WorkerAlreadyRunning
from django_tasks_db.worker.supervisor import Supervisor, TaskModulesBroken


class Command(BaseCommand):
    help = (
        "Run tasks of the database queue in supervised worker processes. SIGINT/SIGTERM: "
        "stop claiming, let running tasks finish within the grace period, then exit; a "
        "second signal kills running tasks at once and puts them back in the queue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--domain",
            action="append",
            dest="domains",
            metavar="NAME",
            help="Queue to take tasks from; repeat for several (default: all queues).",
        )
        add_backend_option(parser)
        parser.add_argument(
            "--worker-id",
            help="Name prefix of the worker processes (default: host-pid); process i is NAME-i.",
        )
        parser.add_argument(
            "--processes",
            type=positive_int,
            default=1,
            metavar="N",
            help="Worker processes (default 1).",
        )
        parser.add_argument(
            "--concurrency",
            type=positive_int,
            default=1,
            metavar="N",
            help="Tasks each process runs at once, in threads, for I/O-bound tasks (default 1).",
        )
        parser.add_argument(
            "--burst", action="store_true", help="Exit (status 0) once no task is ready."
        )
        parser.add_argument(
            "--max-tasks", type=positive_int, metavar="N", help="Each process exits after N tasks."
        )
        parser.add_argument(
            "--max-tasks-per-child",
            type=positive_int,
            metavar="N",
            help="Replace a worker process by a fresh one after N tasks.",
        )
        parser.add_argument(
            "--max-memory",
            type=non_negative,
            metavar="MB",
            help="Replace a worker process whose resident memory exceeds MB after a task.",
        )
        parser.add_argument(
            "--grace-period",
            type=non_negative,
            metavar="SECONDS",
            help="Time running tasks get at shutdown (default: SHUTDOWN_GRACE_PERIOD, 30).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_option(options["backend"])
        configure_command_logging(options["verbosity"])
        try:
            supervisor = Supervisor(
                backend=backend.alias,
                domains=options["domains"],
                processes=options["processes"],
                concurrency=options["concurrency"],
                name=options["worker_id"],
                burst=options["burst"],
                max_tasks=options["max_tasks"],
                max_tasks_per_child=options["max_tasks_per_child"],
                max_memory_mb=options["max_memory"],
                grace_period=options["grace_period"],
            )
        except ValueError as exc:  # an unknown domain; a bad value from call_command()
            raise CommandError(str(exc)) from exc

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Nothing here may take a lock (no output): the supervisor says what it does.
            supervisor.request_stop(f"received {signal.Signals(signum).name}")

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            supervisor.run()
        except (DatabaseNotSupported, WorkerAlreadyRunning, TaskModulesBroken) as exc:
            raise CommandError(str(exc)) from exc
