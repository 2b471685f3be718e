"""``manage.py demo``: enqueue one of each demo task, wait for a worker, print results.

Needs a running ``manage.py runworker`` (``scripts/demo`` starts one).
"""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from demo import tasks
from django_tasks_db.exceptions import ResultTimeout
from django_tasks_db.framework import TaskResult, default_task_backend
from django_tasks_db.models import ScheduleTick, Task

CLOCK = "clock-every-5-seconds"


class Command(BaseCommand):
    help = "Enqueue the demo tasks, wait for a worker to run them, and print the results."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=120, help="Seconds to wait.")
        parser.add_argument(
            "--ticks",
            type=int,
            default=0,
            help="Also wait for this many runs of the schedule clock-every-5-seconds "
            "(needs `manage.py runscheduler`).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            results = [
                tasks.add.enqueue(2, 3),
                tasks.greet.enqueue("Django"),
                tasks.slow_squares.enqueue(8),
                tasks.always_fails.enqueue("on purpose"),
                tasks.import_rows.enqueue(20),
            ]
        rolled_back = self._enqueue_and_roll_back()
        self.stdout.write(f"Enqueued {len(results)} tasks; waiting for the worker...")
        try:
            finished = [
                default_task_backend.wait_for_result(r.id, timeout=options["timeout"])
                for r in results
            ]
        except ResultTimeout as exc:
            raise CommandError(f"{exc} Is `manage.py runworker` running?") from exc
        for result in finished:
            self.stdout.write(self._line(result))
        imported = Task.objects.get(pk=results[-1].id)
        progress = imported.progress or {}
        self.stdout.write(
            f"{'tasks.import_rows':<24} kept {len(imported.log.splitlines())} log lines and "
            f"progress {progress.get('current')}/{progress.get('total')} "
            f"(manage.py tasks show {imported.pk})"
        )
        exists = Task.objects.filter(pk=rolled_back).exists()
        self.stdout.write(
            f"{'tasks.add (rolled back)':<24} {'-':<10} never committed: "
            f"{'row exists!' if exists else 'no row, never runs'}"
        )
        if options["ticks"]:
            self._show_ticks(options["ticks"], options["timeout"])
        expected = ["SUCCESSFUL", "SUCCESSFUL", "SUCCESSFUL", "FAILED", "SUCCESSFUL"]
        if [r.status for r in finished] != expected or exists:
            raise CommandError("The demo did not end as expected.")
        self.stdout.write(self.style.SUCCESS("Demo finished as expected."))

    def _show_ticks(self, count: int, timeout: float) -> None:
        """Wait for ``count`` ticks of the demo schedule to have run, and print them."""
        self.stdout.write(f"Waiting for {count} runs of the schedule {CLOCK!r}...")
        deadline = time.monotonic() + timeout
        since = timezone.now()
        while True:
            ticks = list(
                ScheduleTick.objects.filter(
                    schedule__name=CLOCK, enqueued_at__gte=since, task__status="SUCCESSFUL"
                )
                .select_related("task")
                .order_by("scheduled_at")[:count]
            )
            if len(ticks) >= count:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"No {count} ticks of {CLOCK!r}: is `runscheduler` running?")
            time.sleep(0.5)
        for tick in ticks:
            assert tick.task is not None
            self.stdout.write(
                f"{'schedule ' + CLOCK:<24} {tick.task.status:<10} tick "
                f"{timezone.localtime(tick.scheduled_at):%H:%M:%S} returned "
                f"{tick.task.return_value!r}"
            )

    def _enqueue_and_roll_back(self) -> str:
        try:
            with transaction.atomic():
                task_id = tasks.add.enqueue(1, 1).id
                raise _RollBack
        except _RollBack:
            return task_id

    def _line(self, result: TaskResult) -> str:
        if result.status == "SUCCESSFUL":
            outcome = f"returned {result.return_value!r}"
        else:
            outcome = f"{result.errors[-1].exception_class_path} after {result.attempts} attempts"
        return f"{result.task.module_path.removeprefix('demo.'):<24} {result.status:<10} {outcome}"


class _RollBack(Exception):
    pass
