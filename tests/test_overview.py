"""overview.py: the figures the dashboard, the terminal and the metrics share."""

from datetime import timedelta

import pytest
from django.utils import timezone

from django_tasks_db import control, overview
from django_tasks_db.backend import database_backend
from django_tasks_db.db import database_time
from django_tasks_db.models import Worker
from django_tasks_db.overview import Health
from tests.factories import TaskFactory, WorkerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def backend():
    return database_backend("default")


def test_database_time_is_aware_utc_and_close() -> None:
    now = database_time("default")
    assert now.utcoffset() == timedelta(0)
    assert abs((now - timezone.now()).total_seconds()) < 5


def test_queues_count_lag_pause_and_workers(backend) -> None:
    now = database_time("default")
    TaskFactory(queue_name="emails", available_at=now - timedelta(seconds=90))
    TaskFactory(queue_name="emails", available_at=now + timedelta(hours=1))  # not due: no lag
    TaskFactory(queue_name="emails", status="FAILED", finished_at=now)
    TaskFactory(queue_name="extra")  # a queue QUEUES does not name still shows
    WorkerFactory(domains=["emails"], last_heartbeat_at=now)
    WorkerFactory(domains=[], last_heartbeat_at=now)  # serves every queue
    WorkerFactory(domains=["emails"], last_heartbeat_at=now - timedelta(hours=1))  # silent
    WorkerFactory(domains=["emails"], status=Worker.Status.STOPPED, last_heartbeat_at=now)
    control.set_paused("reports", True)
    by_name = {q.name: q for q in overview.queues(backend)}
    assert set(by_name) == {"default", "emails", "reports", "extra"}
    emails = by_name["emails"]
    assert (emails.depth, emails.counts["FAILED"], emails.counts["RUNNING"]) == (2, 1, 0)
    assert 85 < emails.lag_seconds < 120
    assert emails.workers == 2
    assert (by_name["reports"].paused, by_name["reports"].workers) == (True, 1)
    assert by_name["default"].lag_seconds == 0.0
    assert set(emails.as_dict()) == {"name", "depth", "counts", "lag_seconds", "paused", "workers"}


def test_worker_health_at_a_glance(backend) -> None:
    now = database_time("default")
    options = backend.config

    def health(**fields: object) -> Health:
        return overview.worker_health(WorkerFactory.build(**fields), now, backend)

    assert health(last_heartbeat_at=now) is Health.ALIVE
    late = now - timedelta(seconds=2.5 * options.heartbeat_interval)
    assert health(last_heartbeat_at=late) is Health.STALE
    silent = now - timedelta(seconds=options.worker_dead_after + 1)
    assert health(last_heartbeat_at=silent) is Health.DEAD
    assert health(status=Worker.Status.DEAD, last_heartbeat_at=now) is Health.DEAD
    assert health(status=Worker.Status.STOPPED, last_heartbeat_at=now) is Health.STOPPED


def test_throughput_per_minute(backend) -> None:
    now = database_time("default")
    TaskFactory(status="SUCCESSFUL", finished_at=now)
    TaskFactory(status="SUCCESSFUL", finished_at=now)
    TaskFactory(status="FAILED", finished_at=now - timedelta(minutes=2))
    TaskFactory(status="ABORTED", finished_at=now - timedelta(minutes=2))
    TaskFactory(status="SUCCESSFUL", finished_at=now - timedelta(hours=2))  # too old
    chart = overview.throughput(backend, minutes=60, now=now)
    assert len(chart.minutes) == 60
    assert (chart.succeeded[-1], sum(chart.succeeded)) == (2, 2)
    assert (chart.failed[-3], sum(chart.failed)) == (2, 2)
    recent = overview.finished_since(backend, 300, now=now)
    assert recent == {
        ("default", "SUCCESSFUL"): 2,
        ("default", "FAILED"): 1,
        ("default", "ABORTED"): 1,
    }


def test_health_problems(backend) -> None:
    now = database_time("default")
    assert "no live worker serves queue 'emails'" in overview.health_problems(backend)
    WorkerFactory(domains=["emails"], last_heartbeat_at=now)
    assert overview.health_problems(backend, ["emails"]) == []
    TaskFactory(queue_name="emails", available_at=now - timedelta(minutes=5))
    (lag,) = overview.health_problems(backend, ["emails"], max_lag=60)
    assert "queue 'emails' lags" in lag
    control.set_paused("emails", True)  # a paused queue's lag does not count
    assert overview.health_problems(backend, ["emails"], max_lag=60) == []
