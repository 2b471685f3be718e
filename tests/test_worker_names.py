"""Which worker names are taken: a live row of that name, or of a supervisor's prefix."""

from datetime import timedelta

import pytest
from django.utils import timezone

from django_tasks_db.models import Worker
from django_tasks_db.worker.loop import live_holder
from tests.factories import WorkerFactory

pytestmark = pytest.mark.django_db


def test_a_prefix_is_taken_by_any_process_or_replacement_of_that_supervisor() -> None:
    WorkerFactory(name="w-1", status=Worker.Status.STOPPED, host="elsewhere")
    WorkerFactory(name="wx-1", host="elsewhere")
    assert live_holder("default", "w", 30, prefix=True) is None
    replacement = WorkerFactory(name="w-1.2", host="elsewhere")
    assert live_holder("default", "w", 30, prefix=True) == replacement
    assert live_holder("default", "w-1", 30) is None  # stopped


def test_a_stale_heartbeat_or_a_gone_process_frees_the_name() -> None:
    import socket

    WorkerFactory(
        name="old-1", host="elsewhere", last_heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    assert live_holder("default", "old-1", 30) is None
    WorkerFactory(name="gone-1", host=socket.gethostname(), pid=2**22 + 1)  # no such pid
    assert live_holder("default", "gone-1", 30) is None
