"""The Worker admin: health at a glance on the database's clock, what each worker
runs, and the graceful stop (list action and page button), permission-guarded."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from django_tasks_db.db import database_time
from django_tasks_db.models import Task, TaskStatus, Worker
from tests.admin_helpers import admin_user, slow_heartbeats, staff  # noqa: F401  (fixtures)
from tests.factories import TaskFactory, WorkerFactory
from tests.processes import stop, wait_until

LIST = "/admin/django_tasks_db/worker/"


def page(worker: Worker) -> str:
    return f"{LIST}{worker.pk}/change/"


def beat(seconds_ago: float, **fields: object) -> Worker:
    """A worker whose last heartbeat was ``seconds_ago`` by the database's clock."""
    at = database_time("default") - timedelta(seconds=seconds_ago)
    return WorkerFactory(last_heartbeat_at=at, **fields)


def row_of(html: str, name: str) -> str:
    """The changelist row (``<tr>``) that shows the worker called ``name``."""
    for row in re.findall(r"<tr.*?</tr>", html, flags=re.S):
        if f">{name}</a>" in row:
            return row
    raise AssertionError(f"no row for {name}")


@pytest.mark.django_db
@pytest.mark.usefixtures("slow_heartbeats")
class TestTheList:
    def test_health_badges_are_judged_on_the_database_clock(self, admin_client) -> None:
        alive = beat(1, name="alive")
        stale = beat(15, name="stale")
        silent = beat(120, name="silent")  # RUNNING, but silent past WORKER_DEAD_AFTER
        stopped = beat(500, name="stopped", status=Worker.Status.STOPPED)
        dead = beat(500, name="dead", status=Worker.Status.DEAD)
        html = admin_client.get(LIST).content.decode()
        expected = [
            (alive, "tdb-ok", "alive"),
            (stale, "tdb-warn", "stale"),
            (silent, "tdb-bad", "dead"),
            (stopped, "tdb-muted", "stopped"),
            (dead, "tdb-bad", "dead"),
        ]
        for worker, colour, word in expected:
            assert re.search(rf'tdb-badge {colour}" title="">{word}<', row_of(html, worker.name))

    def test_a_worker_of_a_backend_gone_from_tasks_is_judged_by_the_default(
        self, admin_client
    ) -> None:
        beat(1, name="orphan-alive", backend_name="gone")
        beat(120, name="orphan-silent", backend_name="gone")
        html = admin_client.get(LIST).content.decode()
        assert '">alive<' in row_of(html, "orphan-alive")
        assert '">dead<' in row_of(html, "orphan-silent")

    def test_columns_say_what_each_worker_does(self, admin_client) -> None:
        task = TaskFactory(status=TaskStatus.RUNNING, task_path="tests.testapp.tasks.send_email")
        busy = beat(
            2, name="busy", domains=["emails", "reports"], current_task=task, memory_mb=123.4
        )
        Worker.objects.filter(pk=busy.pk).update(tasks_processed=41)
        beat(3, name="idle")
        html = admin_client.get(LIST).content.decode()
        row = row_of(html, "busy")
        assert re.search(r">\d s ago<", row)
        assert "emails, reports" in row and "123 MiB" in row and ">41<" in row
        assert f'href="/admin/django_tasks_db/task/{task.pk}/change/"' in row
        assert str(task.pk)[:8] in row and "send_email" in row
        assert ">all<" in row_of(html, "idle")

    def test_started_and_stopped_to_the_second_with_the_reason(self, admin_client) -> None:
        worker = beat(
            60,
            name="gone",
            status=Worker.Status.STOPPED,
            stopped_at=database_time("default") - timedelta(seconds=59),
            stop_reason="SIGTERM",
        )
        html = admin_client.get(page(worker)).content.decode()
        started = worker.started_at.strftime("%Y-%m-%d %H:%M:%S")
        stopped = worker.stopped_at.strftime("%Y-%m-%d %H:%M:%S")  # tests run in UTC
        assert started in html and stopped in html and "SIGTERM" in html
        assert "SIGTERM" in row_of(admin_client.get(LIST).content.decode(), "gone")

    def test_one_clock_reading_serves_the_whole_list(self, admin_client) -> None:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        for i in range(5):
            beat(i, name=f"w{i}")
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(LIST).status_code == 200
        clock_reads = [
            q["sql"]
            for q in queries.captured_queries
            if re.search(r"STATEMENT_TIMESTAMP|UTC_TIMESTAMP|STRFTIME", q["sql"])
            and "django_tasks_db_worker" not in q["sql"]
        ]
        assert len(clock_reads) == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("slow_heartbeats")
class TestStop:
    def test_the_list_action_asks_live_workers_only(self, admin_client) -> None:
        live = beat(1, name="live")
        stopping = beat(1, name="stopping", status=Worker.Status.STOPPING)
        gone = beat(1, name="gone", status=Worker.Status.STOPPED)
        response = admin_client.post(
            LIST,
            {"action": "stop", "_selected_action": [live.pk, stopping.pk, gone.pk]},
            follow=True,
        )
        asked = set(
            Worker.objects.filter(stop_requested_at__isnull=False).values_list("name", flat=True)
        )
        assert asked == {"live", "stopping"}
        text = response.content.decode()
        assert "Asked 2 workers to stop" in text and "1 worker was not running" in text
        assert "stop requested at" in row_of(text, "live")

    def test_the_page_button_stops_and_says_so(self, admin_client) -> None:
        worker = beat(1, name="busy")
        html = admin_client.get(page(worker)).content.decode()
        stop_url = f"{LIST}{worker.pk}/stop/"
        assert f'action="{stop_url}"' in html
        response = admin_client.post(stop_url, follow=True)
        worker.refresh_from_db()
        assert worker.stop_requested_at is not None
        html = response.content.decode()
        assert "Asked 1 worker to stop" in html and "stop requested at" in html
        assert f'action="{stop_url}"' not in html  # asked already: no second button
        assert admin_client.get(stop_url).status_code == 405

    def test_no_button_for_a_worker_that_is_not_running(self, admin_client) -> None:
        worker = beat(1, name="gone", status=Worker.Status.STOPPED)
        assert "/stop/" not in admin_client.get(page(worker)).content.decode()

    def test_the_page_has_no_save_button_and_a_post_saves_nothing(self, admin_client) -> None:
        worker = beat(1, name="busy")
        html = admin_client.get(page(worker)).content.decode()
        assert 'name="_save"' not in html and 'name="_continue"' not in html
        response = admin_client.post(page(worker), {"name": "renamed", "_save": "Save"})
        assert response.status_code == 405
        assert Worker.objects.get(pk=worker.pk).name == "busy"

    def test_a_view_only_user_sees_no_stop_and_cannot_forge_one(self) -> None:
        client = staff("view_worker")
        worker = beat(1, name="busy")
        html = client.get(page(worker)).content.decode()
        assert "/stop/" not in html and 'name="_save"' not in html
        assert 'value="stop"' not in client.get(LIST).content.decode()
        assert client.post(f"{LIST}{worker.pk}/stop/").status_code == 403
        client.post(LIST, {"action": "stop", "_selected_action": [worker.pk]})
        assert Worker.objects.get(pk=worker.pk).stop_requested_at is None

    def test_a_user_without_view_permission_gets_nothing(self) -> None:
        client = staff("view_task")
        worker = beat(1, name="busy")
        assert client.get(LIST).status_code == 403
        assert client.post(f"{LIST}{worker.pk}/stop/").status_code == 403
        assert Worker.objects.get(pk=worker.pk).stop_requested_at is None

    def test_an_unknown_worker_is_a_404(self, admin_client) -> None:
        assert admin_client.post(f"{LIST}999999/stop/").status_code == 404
        assert admin_client.post(f"{LIST}not-a-number/stop/").status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_stop_from_the_admin_shuts_a_real_worker_down_gracefully(processes) -> None:
    from tests.testapp import tasks

    result = tasks.sleep_for.enqueue(1.0)
    process = processes("runworker", "--worker-id", "admin-stop")
    wait_until(lambda: Task.objects.get(pk=result.id).status == TaskStatus.RUNNING, timeout=30)
    worker = Worker.objects.get(name="admin-stop-1")
    user = User.objects.create_superuser("boss", "boss@example.com", None)
    client = Client()
    client.force_login(user)
    assert client.post(f"{LIST}{worker.pk}/stop/").status_code == 302
    assert wait_until(lambda: process.poll() is not None, timeout=30)
    assert stop(process) == 0
    worker.refresh_from_db()
    assert worker.status == Worker.Status.STOPPED
    assert Task.objects.get(pk=result.id).status == TaskStatus.SUCCESSFUL  # it finished first


@pytest.mark.parametrize(
    ("memory", "shown"), [(41.6, "42 MiB"), (float("inf"), "inf MiB"), (None, "-")]
)
def test_memory_as_written_by_hand_still_shows(memory, shown) -> None:
    """PostgreSQL and SQLite keep an infinite float, which round() refuses."""
    from django.contrib import admin

    model_admin = admin.site.get_model_admin(Worker)
    assert model_admin.memory(Worker(memory_mb=memory)) == shown
