"""The queue in its own database, in a pytest session of its own.

tests/test_queue_database.py runs this module with ``--ds tests.settings_queue_db``:
the queue's tables in the ``queue`` alias, ``QueueRouter`` installed, the project's
data (users, sessions, testapp's ``Run``) on ``default``. pytest-django creates both
test databases by running ``migrate`` on each under those settings, so ``default``
has no queue tables at all: a query that went there instead of ``queue`` fails.

Not named ``test_*.py``: the suite's own session must not collect it (its settings
have no ``queue`` alias). Processes run with the same settings and
``TASKS_TEST_WORKER=1``: on the same two test databases.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.db.models import Model
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from django_tasks_db.framework import task_backends

if settings.TASKS["default"].get("OPTIONS", {}).get("DATABASE") != "queue":
    pytest.skip(
        "needs --ds tests.settings_queue_db (tests/test_queue_database.py runs it)",
        allow_module_level=True,
    )

from django_tasks_db.models import Queue, Schedule, ScheduleTick, Task, TaskStatus, Worker
from tests.factories import ScheduleFactory, TaskFactory, WorkerFactory
from tests.processes import ROOT, command_env
from tests.testapp.models import Run

BOTH = ["default", "queue"]
#: The queue's models with a table of their own (Dashboard is a proxy of Task).
QUEUE_MODELS: list[type[Model]] = [
    m for m in apps.get_app_config("django_tasks_db").get_models() if not m._meta.proxy
]
ADD = "tests.testapp.tasks.add"


def manage(*args: str) -> str:
    """Run ``python -m django <args>`` with these settings to its end; its output (a
    non-zero exit fails the test and shows all it said)."""
    done = subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=command_env(DJANGO_SETTINGS_MODULE="tests.settings_queue_db"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


# -- migrations ----------------------------------------------------------------------------------


@pytest.mark.django_db(databases=BOTH)
def test_migrate_put_the_queue_tables_in_the_queue_database_only() -> None:
    tables = {alias: set(connections[alias].introspection.table_names()) for alias in BOTH}
    queue_tables = {model._meta.db_table for model in QUEUE_MODELS}
    assert queue_tables <= tables["queue"]
    assert not queue_tables & tables["default"]
    assert {"testapp_run", "auth_user", "django_session"} <= tables["default"]


@pytest.mark.django_db(databases=BOTH)  # E004 asks each database what it can do
def test_the_checks_pass_and_want_the_router() -> None:
    def ours() -> list[str]:
        messages = [m for b in task_backends.all() for m in b.check(databases=BOTH)]
        return [m.id for m in messages if m.id and m.id.startswith("django_tasks_db")]

    assert ours() == []
    with override_settings(DATABASE_ROUTERS=[]):
        (warning,) = [m for m in task_backends["default"].check() if m.id == "django_tasks_db.W002"]
        assert ours() == ["django_tasks_db.W002"]
    assert "'queue'" in warning.msg and "'default'" in warning.msg
    assert "Add 'django_tasks_db.routers.QueueRouter'" in (warning.hint or "")
    # A second backend on default: QueueRouter would refuse the pair, so not that hint.
    other = {**settings.TASKS["default"], "OPTIONS": {}}
    with override_settings(TASKS={**settings.TASKS, "other": other}, DATABASE_ROUTERS=[]):
        (warning,) = [m for m in task_backends["default"].check() if m.id == "django_tasks_db.W002"]
        assert "a router of your own" in (warning.hint or "")
        assert ours() == ["django_tasks_db.W002"]


# -- a view's transaction --------------------------------------------------------------------


@pytest.mark.django_db(databases=BOTH, transaction=True)
def test_a_view_enqueues_in_the_queue_database_s_transaction(client: Client) -> None:
    def view(**params: str) -> dict[str, Any]:
        response = client.get(reverse("enqueue-record-run"), params)
        assert response.status_code == 200
        return response.json()

    rolled_back = view(atomic="queue", key="rolled-back", fail="1")
    committed = view(atomic="queue", key="committed")
    # The README's rule: a transaction on default alone does not hold the enqueue back.
    default_only = view(atomic="default", key="default-only", fail="1")
    assert rolled_back["rolled_back"] and default_only["rolled_back"]
    queued = {str(pk) for pk in Task.objects.values_list("pk", flat=True)}
    assert queued == {committed["id"], default_only["id"]}

    manage("runworker", "--burst")  # exits once nothing is ready: everything ran
    assert set(Task.objects.values_list("status", flat=True)) == {TaskStatus.SUCCESSFUL}
    # What the tasks wrote (testapp's Run) is the project's data: on default.
    assert set(Run.objects.values_list("key", flat=True)) == {"committed", "default-only"}
    assert Worker.objects.get().status == Worker.Status.STOPPED


# -- the commands --------------------------------------------------------------------------------


@pytest.mark.django_db(databases=BOTH, transaction=True)
def test_runworker_runscheduler_and_tasks_use_the_queue_database() -> None:
    schedule = ScheduleFactory(
        name="every-second", cron="* * * * * *", next_run_at=timezone.now() - timedelta(seconds=2)
    )
    assert schedule._state.db == "queue"  # where the router wrote it

    enqueued = manage("tasks", "enqueue", ADD, "--args", "[2, 3]").strip()
    assert Task.objects.get(pk=enqueued).status == TaskStatus.READY
    manage("runscheduler", "--once")
    ticks = ScheduleTick.objects.filter(schedule=schedule).count()
    assert ticks >= 2
    manage("runworker", "--burst")

    rows = Task.objects.all()
    assert rows.count() == ticks + 1
    assert set(rows.values_list("status", flat=True)) == {TaskStatus.SUCCESSFUL}
    assert rows.get(pk=enqueued).return_value == 5

    listed = json.loads(manage("tasks", "list", "--json"))
    assert {t["id"] for t in listed} == {str(pk) for pk in rows.values_list("pk", flat=True)}
    shown = json.loads(manage("tasks", "show", enqueued, "--json"))
    assert (shown["status"], shown["return_value"]) == ("SUCCESSFUL", 5)
    (worker,) = json.loads(manage("tasks", "workers", "--all", "--json"))
    assert worker["name"] == Worker.objects.get().name
    (queue,) = [
        q for q in json.loads(manage("tasks", "queues", "--json")) if q["name"] == "default"
    ]
    assert queue["counts"]["SUCCESSFUL"] == rows.count()
    manage("tasks", "pause", "default")
    assert Queue.objects.get(name="default").paused


# -- the admin ------------------------------------------------------------------------------------


@pytest.mark.django_db(databases=BOTH)
def test_the_admin_reads_and_writes_the_queue_database() -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", password=None))  # on default
    worker = WorkerFactory(backend_name="default", last_heartbeat_at=timezone.now())
    ready = TaskFactory(backend_name="default")
    error = {"exception_class_path": "builtins.ValueError", "traceback": "", "attempt": 1}
    failed = TaskFactory(
        backend_name="default",
        status=TaskStatus.FAILED,
        worker=worker,
        attempts=1,
        errors=[{**error, "worker": worker.name}],
        finished_at=timezone.now(),
    )
    schedule = ScheduleFactory(name="nightly", cron="30 2 * * *")

    def page(url: str, *shown: object) -> None:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for text in shown:
            assert str(text) in html, (url, text)

    tasks = reverse("admin:django_tasks_db_task_changelist")
    page(tasks, str(ready.pk)[:8], str(failed.pk)[:8])
    page(reverse("admin:django_tasks_db_task_change", args=[failed.pk]), failed.pk, worker.name)
    page(reverse("admin:django_tasks_db_dashboard"), "default")
    page(reverse("admin:django_tasks_db_worker_changelist"), worker.name)
    page(reverse("admin:django_tasks_db_worker_change", args=[worker.pk]), worker.name)
    page(reverse("admin:django_tasks_db_schedule_changelist"), "nightly")
    page(reverse("admin:django_tasks_db_schedule_change", args=[schedule.pk]), "nightly")
    page(reverse("admin:django_tasks_db_queue_changelist"))
    page(reverse("tasks-metrics"), 'queue="default"')

    # Actions: in bulk from the list, on one task from its page, enqueue, buttons, delete.
    client.post(tasks, {"action": "cancel", "_selected_action": [str(ready.pk)]})
    assert Task.objects.get(pk=ready.pk).status == TaskStatus.CANCELLED
    client.post(reverse("admin:django_tasks_db_task_action", args=[failed.pk, "retry"]))
    assert Task.objects.get(pk=failed.pk).status == TaskStatus.READY
    client.post(reverse("admin:django_tasks_db_task_add"), {"task": ADD, "args": "[4, 5]"})
    assert Task.objects.filter(args=[4, 5]).exists()
    client.post(reverse("admin:django_tasks_db_schedule_run_now", args=[schedule.pk]))
    assert Task.objects.count() == 4
    client.post(reverse("admin:django_tasks_db_schedule_disable", args=[schedule.pk]))
    assert not Schedule.objects.get(pk=schedule.pk).enabled
    client.post(reverse("admin:django_tasks_db_worker_stop", args=[worker.pk]))
    assert Worker.objects.get().stop_requested_at is not None
    pause = reverse("admin:django_tasks_db_dashboard_pause")
    client.post(pause, {"queue": "emails", "paused": "1"})
    assert Queue.objects.get(name="emails").paused
    client.post(reverse("admin:django_tasks_db_task_delete", args=[ready.pk]), {"post": "yes"})
    assert not Task.objects.filter(pk=ready.pk).exists()
    # Every row above was read back through the router: check it really is in queue.
    assert Task.objects.using("queue").count() == 3
