"""``manage.py prune_tasks``: delete old finished tasks, schedule ticks and workers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from django_tasks_db.management.options import (
    add_backend_option,
    backend_option,
    non_negative,
    positive_int,
)
from django_tasks_db.pruning import prune


class Command(BaseCommand):
    help = (
        "Delete finished tasks (SUCCESSFUL, FAILED, CANCELLED, ABORTED), schedule ticks and "
        "stopped or dead workers older than --older-than days. Run it daily, e.g. from "
        "a schedule or cron. READY and RUNNING tasks and live workers are never touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=non_negative,
            default=7.0,
            metavar="DAYS",
            help="Age in days (of finished_at, scheduled_at, stopped_at); default 7.",
        )
        add_backend_option(parser)
        parser.add_argument(
            "--batch-size", type=positive_int, default=1000, help="Rows per transaction."
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count what would go.")

    def handle(self, *args: Any, **options: Any) -> None:
        backend = backend_option(options["backend"])
        before = timezone.now() - timedelta(days=options["older_than"])
        report = prune(
            backend.database,
            before,
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
        )
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(
            f"{verb} {report.tasks} task(s), {report.schedule_ticks} schedule tick(s) and "
            f"{report.workers} worker(s) older than {before:%Y-%m-%d %H:%M} UTC."
        )
