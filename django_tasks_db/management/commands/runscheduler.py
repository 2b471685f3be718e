"""``manage.py runscheduler``: enqueue the cron ticks of the database's schedules."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_tasks_db.management.command_logging import configure_command_logging
from django_tasks_db.management.options import add_backend_option, backend_option
from django_tasks_db.scheduler import Scheduler


class Command(BaseCommand):
    help = (
        "Enqueue the tasks of the Schedule table at their cron ticks, each tick exactly once "
        "however many schedulers run. Syncs the schedules declared in OPTIONS['SCHEDULES'] "
        "first and reaps dead workers as it goes. SIGINT/SIGTERM: exit after the current tick."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_backend_option(parser)
        parser.add_argument(
            "--once",
            action="store_true",
            help="Enqueue what is due now, then exit (for tests and cron deployments).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_option(options["backend"])
        configure_command_logging(options["verbosity"])
        scheduler = Scheduler(backend=backend.alias, once=options["once"])

        def on_signal(signum: int, frame: FrameType | None) -> None:
            scheduler.request_stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        scheduler.run()
