"""The dashboard in the admin: its figures against known rows, the chart, pause and
resume with permissions, the index link and the auto-refresh fragment."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_tasks_db.db import database_time
from django_tasks_db.models import Queue, Task, TaskStatus, Worker
from tests.admin_helpers import admin_user, slow_heartbeats, staff  # noqa: F401  (fixtures)
from tests.factories import TaskFactory, WorkerFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("slow_heartbeats")]

URL = "/admin/django_tasks_db/dashboard/"
PAUSE = "/admin/django_tasks_db/dashboard/pause/"


def ago(seconds: float):
    return database_time("default") - timedelta(seconds=seconds)


def tasks(queue: str, status: str, n: int, **fields: object) -> list[Task]:
    return [TaskFactory(queue_name=queue, status=status, **fields) for _ in range(n)]


@pytest.fixture
def known_rows() -> None:
    """default: 3 ready (the oldest due 120 s ago), 1 running, 5 successful and 2
    failed in the last hour; emails: 1 ready due later, 1 cancelled; reports: paused.
    Workers: 2 alive, 1 stale, 2 dead (one silent, one declared), 1 stopped."""
    for seconds in (120, 60, 10):
        tasks("default", TaskStatus.READY, 1, available_at=ago(seconds))
    tasks("default", TaskStatus.RUNNING, 1)
    tasks("default", TaskStatus.SUCCESSFUL, 5, finished_at=ago(300))
    tasks("default", TaskStatus.FAILED, 2, finished_at=ago(300))
    tasks("emails", TaskStatus.READY, 1, available_at=ago(-3600))
    tasks("emails", TaskStatus.CANCELLED, 1, finished_at=ago(7200))  # before the chart
    Queue.objects.create(name="reports", paused=True, changed_by="someone")
    WorkerFactory(name="all", last_heartbeat_at=ago(1))
    WorkerFactory(name="mailer", domains=["emails"], last_heartbeat_at=ago(1))
    WorkerFactory(name="slow", domains=["reports"], last_heartbeat_at=ago(15))
    WorkerFactory(name="silent", last_heartbeat_at=ago(120))
    WorkerFactory(name="declared", status=Worker.Status.DEAD, last_heartbeat_at=ago(500))
    WorkerFactory(name="done", status=Worker.Status.STOPPED, last_heartbeat_at=ago(500))


def queue_row(html: str, name: str) -> str:
    found = re.search(rf'<tr data-queue="{name}">.*?</tr>', html, flags=re.S)
    assert found, f"no row for queue {name}"
    return found.group(0)


def figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}"[^>]*>(?:<a [^>]*>)?([^<]*)<', html)
    assert found, f"no figure {name}"
    return found.group(1).strip()


@pytest.mark.usefixtures("known_rows")
class TestFigures:
    def test_per_queue_depth_lag_counts_pause_and_workers(self, admin_client) -> None:
        html = admin_client.get(URL).content.decode()
        default, emails, reports = (queue_row(html, q) for q in ("default", "emails", "reports"))
        assert figure(default, "depth") == "3" and figure(emails, "depth") == "1"
        lag = float(re.search(r'data-seconds="([\d.]+)"', default).group(1))
        assert 120 <= lag < 180
        assert re.search(r'data-seconds="0\.000"', emails)  # due later: no lag
        assert figure(default, "workers") == "1"  # "all"
        assert figure(emails, "workers") == "2"  # "all" and "mailer"
        assert figure(reports, "workers") == "2"  # "all" and the stale "slow"
        assert "paused" in reports and "running" in default
        # Counts by status, each linking to the task list filtered by queue and status.
        for status, n in (("RUNNING", 1), ("SUCCESSFUL", 5), ("FAILED", 2)):
            link = f"?queue_name__exact=default&amp;status__exact={status}"
            assert re.search(rf'href="/admin/django_tasks_db/task/{re.escape(link)}">{n}<', default)

    def test_the_links_open_the_filtered_task_list(self, admin_client) -> None:
        response = admin_client.get(
            "/admin/django_tasks_db/task/",
            {"queue_name__exact": "default", "status__exact": "FAILED"},
        )
        assert response.status_code == 200
        assert response.context["cl"].result_count == 2

    def test_workers_by_health_and_the_last_hour(self, admin_client) -> None:
        html = admin_client.get(URL).content.decode()
        assert figure(html, "workers-alive") == "2"
        assert figure(html, "workers-stale") == "1"
        assert figure(html, "workers-dead") == "2"
        assert figure(html, "ready") == "4" and figure(html, "running") == "1"
        assert figure(html, "finished-hour") == "7" and figure(html, "failed-hour") == "2"

    def test_the_chart_is_inline_svg_with_axes_and_a_legend(self, admin_client) -> None:
        html = admin_client.get(URL).content.decode()
        svg = re.search(r'<svg class="tdb-chart".*?</svg>', html, flags=re.S).group(0)
        assert "tasks per minute" in svg and "one bar per minute" in svg
        assert "succeeded" in svg and "failed, cancelled or aborted" in svg
        assert svg.count('class="tdb-minute"') == 60
        assert svg.count('class="tdb-ok"') == 2 and svg.count('class="tdb-failed"') == 2  # + legend
        assert ": 5 succeeded, 2 failed" in svg

    def test_assets_are_the_apps_own(self, admin_client) -> None:
        html = admin_client.get(URL).content.decode()
        assert "django_tasks_db/dashboard.js" in html and "django_tasks_db/dashboard.css" in html
        assert not re.search(r'(src|href)="(https?:)?//', html)

    def test_the_fragment_is_only_the_figures(self, admin_client) -> None:
        html = admin_client.get(URL, {"fragment": "1"}).content.decode()
        assert "<html" not in html and "<svg" in html
        assert figure(queue_row(html, "default"), "depth") == "3"

    def test_a_constant_number_of_queries(self, admin_client) -> None:
        with CaptureQueriesContext(connection) as few:
            admin_client.get(URL)
        tasks("default", TaskStatus.SUCCESSFUL, 30, finished_at=ago(60))
        WorkerFactory.create_batch(5, last_heartbeat_at=ago(1))
        with CaptureQueriesContext(connection) as many:
            admin_client.get(URL)
        assert len(many.captured_queries) == len(few.captured_queries) <= 15


class TestAccess:
    def test_the_index_links_it_as_dashboard(self, admin_client) -> None:
        assert reverse("admin:django_tasks_db_dashboard") == URL
        html = admin_client.get("/admin/").content.decode()
        assert f'<a href="{URL}"' in html and ">Dashboard<" in html
        assert admin_client.get(f"{URL}add/").status_code == 404

    def test_viewing_needs_view_task(self) -> None:
        client = staff("view_worker")
        assert client.get(URL).status_code == 403
        assert URL not in client.get("/admin/").content.decode()
        assert staff("view_task").get(URL).status_code == 200

    def test_a_view_only_user_sees_no_pause_and_cannot_forge_one(self) -> None:
        client = staff("view_task", "view_queue")
        html = client.get(URL).content.decode()
        assert PAUSE not in html and ">Pause<" not in html
        assert client.post(PAUSE, {"queue": "default", "paused": "1"}).status_code == 403
        assert not Queue.objects.exists()


class TestPause:
    def test_pause_and_resume_buttons(self, admin_client) -> None:
        html = admin_client.get(URL).content.decode()
        assert ">Pause<" in queue_row(html, "default")
        response = admin_client.post(
            PAUSE, {"backend": "default", "queue": "default", "paused": "1"}, follow=True
        )
        row = Queue.objects.get(name="default")
        assert row.paused and row.changed_by == "admin"
        html = response.content.decode()
        assert "Queue default paused" in html and ">Resume<" in queue_row(html, "default")
        admin_client.post(PAUSE, {"backend": "default", "queue": "default", "paused": "0"})
        assert not Queue.objects.get(name="default").paused

    def test_a_user_with_change_queue_may_pause(self) -> None:
        client = staff("view_task", "change_queue")
        assert PAUSE in client.get(URL).content.decode()
        assert client.post(PAUSE, {"queue": "emails", "paused": "1"}).status_code == 302
        assert Queue.objects.get(name="emails").paused

    def test_an_unknown_queue_is_refused_with_a_message(self, admin_client) -> None:
        response = admin_client.post(PAUSE, {"queue": "nope", "paused": "1"}, follow=True)
        assert "Unknown queue &#x27;nope&#x27;" in response.content.decode()
        assert not Queue.objects.exists()

    def test_only_post(self, admin_client) -> None:
        assert admin_client.get(PAUSE).status_code == 405
