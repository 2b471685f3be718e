"""``manage.py prune_tasks``: delete old finished tasks, schedule ticks and workers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_tasks_db.backend import database_backend
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
            type=float,
            default=7.0,
            metavar="DAYS",
            help="Age in days (of finished_at, scheduled_at, stopped_at); default 7.",
        )
        parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")
        parser.add_argument("--batch-size", type=int, default=1000, help="Rows per transaction.")
        parser.add_argument("--dry-run", action="store_true", help="Only count what would go.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["older_than"] < 0:
            raise CommandError("--older-than cannot be negative.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            backend = database_backend(options["backend"])
        except Exception as exc:
            raise CommandError(str(exc)) from exc
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
