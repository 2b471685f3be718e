"""``manage.py runworker``: run tasks from the database queue until stopped."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks_db.exceptions import DatabaseNotSupported
from django_tasks_db.worker import Worker, WorkerAlreadyRunning


class Command(BaseCommand):
    help = (
        "Run tasks of the database queue. SIGINT/SIGTERM: finish the current task, then "
        "exit; a second signal interrupts the task and puts it back in the queue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--domain",
            action="append",
            dest="domains",
            metavar="NAME",
            help="Queue to take tasks from; repeat for several (default: all queues).",
        )
        parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")
        parser.add_argument(
            "--worker-id",
            help="Name of this worker in the Worker table (default: host-pid-random).",
        )
        parser.add_argument(
            "--burst", action="store_true", help="Exit (status 0) once no task is ready."
        )
        parser.add_argument(
            "--max-tasks", type=int, metavar="N", help="Exit after running N tasks."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["max_tasks"] is not None and options["max_tasks"] < 1:
            raise CommandError("--max-tasks must be at least 1.")
        _configure_logging(options["verbosity"])
        try:
            worker = Worker(
                backend=options["backend"],
                domains=options["domains"],
                name=options["worker_id"],
                burst=options["burst"],
                max_tasks=options["max_tasks"],
            )
        except Exception as exc:  # an unknown alias, backend or domain
            raise CommandError(str(exc)) from exc

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if worker.stopping:
                raise KeyboardInterrupt  # the second signal interrupts the task
            worker.request_stop(f"received {signal.Signals(signum).name}")

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            worker.run()
        except (WorkerAlreadyRunning, DatabaseNotSupported) as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            self.stderr.write("Interrupted; the running task was put back in the queue.")


def _configure_logging(verbosity: int) -> None:
    """Show the worker's own log lines unless the project configured them."""
    logger = logging.getLogger("django_tasks_db")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
