"""Pruning old rows: finished tasks, ticks and workers go; anything live stays."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_tasks_db.models import ScheduleTick, Task, TaskStatus, Worker
from django_tasks_db.pruning import prune
from tests.factories import ScheduleFactory, TaskFactory, WorkerFactory

pytestmark = pytest.mark.django_db

OLD = timezone.now() - timedelta(days=30)


def test_prune_deletes_only_old_finished_rows() -> None:
    keep = [
        TaskFactory(status=TaskStatus.READY, enqueued_at=OLD),
        TaskFactory(status=TaskStatus.RUNNING, enqueued_at=OLD),
        TaskFactory(status=TaskStatus.SUCCESSFUL, finished_at=timezone.now()),
    ]
    gone = [
        TaskFactory(status=status, finished_at=OLD)
        for status in (TaskStatus.SUCCESSFUL, TaskStatus.FAILED, TaskStatus.CANCELLED)
    ]
    live = WorkerFactory(status=Worker.Status.RUNNING)
    dead = WorkerFactory(status=Worker.Status.DEAD, stopped_at=OLD)
    gone[0].worker = dead
    gone[0].save()
    keep[1].worker = WorkerFactory(status=Worker.Status.STOPPED, stopped_at=OLD)
    keep[1].save()
    schedule = ScheduleFactory()
    ScheduleTick.objects.create(schedule=schedule, scheduled_at=OLD, enqueued_at=OLD, task=gone[1])
    recent = ScheduleTick.objects.create(
        schedule=schedule, scheduled_at=timezone.now(), enqueued_at=timezone.now()
    )
    report = prune("default", timezone.now() - timedelta(days=7), batch_size=2)
    assert (report.tasks, report.schedule_ticks, report.workers) == (3, 1, 2)
    assert set(Task.objects.values_list("pk", flat=True)) == {t.pk for t in keep}
    assert list(ScheduleTick.objects.all()) == [recent]
    assert set(Worker.objects.values_list("pk", flat=True)) == {live.pk}
    keep[1].refresh_from_db()
    assert keep[1].worker is None  # the old worker went, the running task stayed


def test_dry_run_and_command() -> None:
    TaskFactory(status=TaskStatus.SUCCESSFUL, finished_at=OLD)
    out = StringIO()
    call_command("prune_tasks", "--dry-run", stdout=out)
    assert "Would delete 1 task(s)" in out.getvalue() and Task.objects.count() == 1
    call_command("prune_tasks", "--older-than", "1", stdout=out)
    assert "Deleted 1 task(s)" in out.getvalue() and Task.objects.count() == 0
    with pytest.raises(CommandError, match="argument --older-than: cannot be negative"):
        call_command("prune_tasks", "--older-than", "-1")
    with pytest.raises(CommandError, match="argument --batch-size: must be at least 1"):
        call_command("prune_tasks", "--batch-size", "0")
    with pytest.raises(CommandError, match="nope"):
        call_command("prune_tasks", "--backend", "nope")
