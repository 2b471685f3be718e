"""The admin keeps a live worker's row: deleting it would orphan its running task."""

import pytest

from django_tasks_db.models import Schedule, Worker
from tests.factories import WorkerFactory

pytestmark = pytest.mark.django_db


def delete_page(admin_client, worker: Worker) -> int:
    return admin_client.get(f"/admin/django_tasks_db/worker/{worker.pk}/delete/").status_code


def test_a_live_worker_cannot_be_deleted_a_stopped_one_can(admin_client) -> None:
    assert delete_page(admin_client, WorkerFactory(status=Worker.Status.RUNNING)) == 403
    assert delete_page(admin_client, WorkerFactory(status=Worker.Status.STOPPED)) == 200


def test_bulk_delete_refuses_a_batch_with_a_live_worker(admin_client) -> None:
    live = WorkerFactory(status=Worker.Status.STOPPING)
    dead = WorkerFactory(status=Worker.Status.DEAD)

    def delete(*workers: Worker) -> int:
        return admin_client.post(
            "/admin/django_tasks_db/worker/",
            {
                "action": "delete_selected",
                "_selected_action": [w.pk for w in workers],
                "post": "yes",
            },
        ).status_code

    assert delete(live, dead) == 403
    assert Worker.objects.count() == 2
    assert delete(dead) == 302
    assert list(Worker.objects.values_list("pk", flat=True)) == [live.pk]


def test_a_schedule_that_cannot_run_shows_why(admin_client) -> None:
    from tests.factories import ScheduleFactory

    schedule = ScheduleFactory()
    Schedule.objects.filter(pk=schedule.pk).update(
        cron="not a cron", next_run_at=None, last_error="'not a cron' has 3 fields; use 5"
    )
    listing = admin_client.get("/admin/django_tasks_db/schedule/")
    page = admin_client.get(f"/admin/django_tasks_db/schedule/{schedule.pk}/change/")
    assert b"has 3 fields; use 5" in listing.content and b"has 3 fields; use 5" in page.content
