"""The Task admin: the list (columns, filters, search, counting), the task page,
the operator actions in bulk and per task, enqueueing, and who may do what."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_tasks_db import control
from django_tasks_db.admin import pagination
from django_tasks_db.db import estimated_count
from django_tasks_db.models import Task, TaskStatus, Worker
from tests.factories import TaskFactory, WorkerFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/django_tasks_db/task/"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "tests/testapp/tasks.py", line 40, in fail\n'
    "    raise ValueError(message)\n"
    "ValueError: boom"
)


@pytest.fixture
def admin_client() -> Client:
    """A superuser's client, without hashing a password (pytest-django's hashes one:
    half a second a test with the default hasher)."""
    client = Client()
    client.force_login(User.objects.create_superuser("admin", password=None))
    return client


def page(task: Task) -> str:
    return f"{LIST}{task.pk}/change/"


def action_url(task: Task, action: str) -> str:
    return f"{LIST}{task.pk}/do/{action}/"


def error(attempt: int = 1, cls: str = "builtins.ValueError", worker: str = "w-1") -> dict:
    return {
        "exception_class_path": cls,
        "traceback": TRACEBACK,
        "attempt": attempt,
        "worker": worker,
        "at": "2024-05-01T12:00:07.250000+00:00",
    }


def finished(status: str = TaskStatus.FAILED, **fields: Any) -> Task:
    start = timezone.now() - timedelta(minutes=5)
    values = {
        "status": status,
        "attempts": 1,
        "started_at": start,
        "last_attempted_at": start,
        "finished_at": start + timedelta(seconds=3),
        "errors": [error()] if status != TaskStatus.SUCCESSFUL else [],
        **fields,
    }
    return TaskFactory(**values)


def one_of_each() -> dict[str, Task]:
    return {
        TaskStatus.READY: TaskFactory(),
        TaskStatus.RUNNING: TaskFactory(
            status=TaskStatus.RUNNING, attempts=1, started_at=timezone.now(), worker=WorkerFactory()
        ),
        TaskStatus.SUCCESSFUL: finished(TaskStatus.SUCCESSFUL, return_value=3),
        TaskStatus.FAILED: finished(TaskStatus.FAILED),
        TaskStatus.CANCELLED: finished(TaskStatus.CANCELLED, attempts=0, started_at=None),
        TaskStatus.ABORTED: finished(TaskStatus.ABORTED),
    }


def listed(response: Any) -> set[str]:
    """Ids of the tasks a list response shows (the checkbox of each row)."""
    return set(
        re.findall(r'name="_selected_action" value="([0-9a-f-]+)"', response.content.decode())
    )


def text(response: Any) -> str:
    """What a page says, without its tags."""
    return re.sub(r"<[^>]+>", "", response.content.decode())


def said(response: Any) -> str:
    """The message the last request left for the user."""
    return [str(m.message) for m in get_messages(response.wsgi_request)][-1]


def staff(*codenames: str) -> Client:
    """A logged-in staff user holding just these permissions of the Task model."""
    user = User.objects.create_user(f"staff-{'-'.join(codenames) or 'none'}", is_staff=True)
    perms = Permission.objects.filter(
        content_type__app_label="django_tasks_db", codename__in=codenames
    )
    user.user_permissions.set(perms)
    client = Client()
    client.force_login(user)
    return client


def bulk(client: Client, action: str, *tasks: Task) -> Any:
    return client.post(LIST, {"action": action, "_selected_action": [str(t.pk) for t in tasks]})


def fresh(task: Task) -> Task:
    return Task.objects.get(pk=task.pk)


# -- the list ---------------------------------------------------------------------------------


def test_the_list_shows_every_status_with_its_columns(admin_client: Client) -> None:
    tasks = one_of_each()
    Task.objects.filter(pk=tasks[TaskStatus.FAILED].pk).update(
        attempts=2, max_attempts=5, errors=[error(1), error(2, "myapp.errors.Flaky")]
    )
    response = admin_client.get(LIST)
    html = response.content.decode()
    assert response.status_code == 200
    assert listed(response) == {str(t.pk) for t in tasks.values()}
    for status in TaskStatus:
        assert f"dtdb-status-{status.lower()}" in html
    failed = tasks[TaskStatus.FAILED]
    assert f">{failed.id.hex[:8]}</code>" in html  # the short id, linking the page
    assert f'href="{page(failed)}"' in html
    assert 'title="tests.testapp.tasks.add">add</span>' in html
    assert ">2/5<" in html
    assert 'title="myapp.errors.Flaky">Flaky</span>' in html  # the last error's class
    assert ">3.0 s<" in html  # duration: finished - started
    worker = tasks[TaskStatus.RUNNING].worker
    assert f">{worker.name}</a>" in html
    assert "django_tasks_db/tasks.css" in html


def test_times_are_shown_to_the_second(admin_client: Client) -> None:
    at = datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)
    task = finished(enqueued_at=at, started_at=at, finished_at=at + timedelta(seconds=75))
    for url in (LIST, page(task)):
        shown = text(admin_client.get(url))
        assert "2024-05-01 12:34:56" in shown and "2024-05-01 12:36:11" in shown
        assert "12:34:56.7" not in shown and "12:34\n" not in shown
    assert "1 min 15 s" in text(admin_client.get(page(task)))


DAY, NEXT_DAY = "2023-03-04+00:00:00%2B00:00", "2023-03-05+00:00:00%2B00:00"


def test_the_filters(admin_client: Client) -> None:
    worker = WorkerFactory()
    old = datetime(2023, 3, 4, 5, 6, 7, tzinfo=UTC)
    ready = TaskFactory(queue_name="emails", task_path="tests.testapp.tasks.send_email")
    failed = finished(worker=worker)
    done = finished(TaskStatus.SUCCESSFUL, enqueued_at=old, finished_at=old, started_at=old)
    cases = {
        "status__exact=FAILED": {failed},
        "queue_name__exact=emails": {ready},
        "task_path__exact=tests.testapp.tasks.send_email": {ready},
        f"worker__id__exact={worker.pk}": {failed},
        "worker__id__exact=nonsense": set(),
        "finished_at__isnull=True": {ready},
        f"finished_at__gte={DAY}&finished_at__lt={NEXT_DAY}": {done},
        "enqueued_at__year=2023": {done},
        "enqueued_at__year=2023&enqueued_at__month=3&enqueued_at__day=4": {done},
    }
    for query, expected in cases.items():
        response = admin_client.get(f"{LIST}?{query}")
        assert response.status_code == 200, query
        assert listed(response) == {str(t.pk) for t in expected}, query
    html = admin_client.get(LIST).content.decode()
    for path in control.project_tasks():  # the task filter lists the project's tasks
        assert f"?task_path__exact={path}" in html
    assert f"?worker__id__exact={worker.pk}" in html


def test_the_task_filter_lists_the_project_tasks_without_reading_the_table(
    admin_client: Client,
) -> None:
    TaskFactory()
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(LIST)
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    assert "DISTINCT" not in sql  # neither the filters nor the date hierarchy


def test_the_date_hierarchy_offers_the_periods_that_hold_tasks(admin_client: Client) -> None:
    for day in (datetime(2023, 3, 4, 1, tzinfo=UTC), datetime(2024, 7, 9, 23, tzinfo=UTC)):
        TaskFactory(enqueued_at=day)
    html = admin_client.get(LIST).content.decode()
    assert "?enqueued_at__year=2023" in html and "?enqueued_at__year=2024" in html
    html = admin_client.get(f"{LIST}?enqueued_at__year=2024").content.decode()
    assert "enqueued_at__month=7" in html and "enqueued_at__month=6" not in html
    html = admin_client.get(f"{LIST}?enqueued_at__year=2024&enqueued_at__month=7").content.decode()
    assert "enqueued_at__day=9" in html and "enqueued_at__day=8" not in html


def test_search_by_id_whole_or_prefix_and_by_path(admin_client: Client) -> None:
    add = TaskFactory()
    email = TaskFactory(task_path="tests.testapp.tasks.send_email")
    hexed = add.id.hex
    cases = {
        str(add.pk): {add},
        str(add.pk).upper(): {add},
        hexed: {add},
        hexed[:8]: {add},
        hexed[:6]: {add},  # short: an id prefix or part of a path
        str(add.pk)[:13]: {add},  # with its dash
        "send_email": {email},
        "SEND_Email": {email},  # the project's tasks in any letter case
        "tests.testapp": {add, email},
        "testapp send": {email},  # every word must match
        "no-such-thing": set(),
    }
    for term, expected in cases.items():
        response = admin_client.get(LIST, {"q": term})
        assert response.status_code == 200, term
        assert listed(response) == {str(t.pk) for t in expected}, term


def test_a_whole_id_is_searched_by_equality_on_the_primary_key(admin_client: Client) -> None:
    task = TaskFactory()
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(LIST, {"q": str(task.pk)})
    selects = [q["sql"] for q in queries.captured_queries if "django_tasks_db_task" in q["sql"]]
    assert selects and not any("LIKE" in sql.upper() for sql in selects)


def test_postgresql_shows_the_planner_estimate_instead_of_counting(
    admin_client: Client, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if vendor != "postgresql":
        pytest.skip("the planner's estimate is read on PostgreSQL only")
    for _ in range(3):
        TaskFactory()
    monkeypatch.setattr(pagination, "ESTIMATE_ABOVE", -1)  # any estimate counts as large
    for query in ("", "?status__exact=READY"):
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(LIST + query)
        assert response.status_code == 200
        sqls = [q["sql"].upper() for q in queries.captured_queries]
        assert not [s for s in sqls if "COUNT(" in s and "DJANGO_TASKS_DB_TASK" in s], sqls
        assert any(s.startswith("EXPLAIN") for s in sqls)
        assert "dtdb-estimate" in response.content.decode()


def test_a_small_list_is_counted_exactly(admin_client: Client) -> None:
    for _ in range(3):
        TaskFactory()
    response = admin_client.get(LIST)
    assert "dtdb-estimate" not in response.content.decode()
    assert re.search(r"\b3\s+tasks\b", response.content.decode())


def test_a_small_estimate_is_checked_by_a_count_that_stops_at_the_threshold(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(4):
        TaskFactory()
    monkeypatch.setattr(pagination, "ESTIMATE_ABOVE", 2)
    monkeypatch.setattr(pagination, "estimated_count", lambda queryset: 1)  # a wrong guess
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(LIST)
    counts = [q["sql"].upper() for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 3" in sql for sql in counts), counts
    assert "more than 2" in text(response)
    assert len(listed(response)) == 4


def test_the_estimate_is_postgresqls_alone(vendor: str) -> None:
    TaskFactory()
    estimate = estimated_count(Task.objects.all())
    assert (estimate is None) == (vendor != "postgresql")


# -- the task page ----------------------------------------------------------------------------


def test_the_page_shows_tracebacks_json_log_and_progress_as_text(admin_client: Client) -> None:
    task = finished(
        args=[1, {"b": "ü"}],
        kwargs={"x": [1, 2]},
        log="line one\nline two <b>\n",
        progress={"current": 3, "total": 4, "message": "almost", "at": "2024-05-01T12:00:00+00:00"},
        errors=[error(1), error(2, "myapp.errors.Flaky", worker="w-2")],
        attempts=2,
        max_attempts=2,
    )
    response = admin_client.get(page(task))
    html = response.content.decode()
    assert response.status_code == 200
    assert '<pre class="dtdb-pre dtdb-traceback">Traceback (most recent call last):\n' in html
    assert "\\n" not in html.split('class="dtdb-pre dtdb-traceback">')[1].split("</pre>")[0]
    assert html.count('class="dtdb-attempt"') == 2 and ">Flaky</strong>" in html
    assert "[\n  1,\n  {\n    &quot;b&quot;: &quot;ü&quot;\n  }\n]" in html  # indented JSON
    assert "line one\nline two &lt;b&gt;\n" in html  # escaped, newlines kept
    assert 'value="75.0"' in html and "almost" in html
    assert 'name="_save"' not in html and 'type="submit" value="Save' not in html


def test_the_page_refreshes_a_running_task_from_its_live_view(admin_client: Client) -> None:
    task = TaskFactory(status=TaskStatus.RUNNING, attempts=1, started_at=timezone.now())
    html = admin_client.get(page(task)).content.decode()
    live = f"{LIST}{task.pk}/live.json"
    assert f'data-dtdb-live="{live}"' in html and "django_tasks_db/tasks.js" in html
    Task.objects.filter(pk=task.pk).update(
        log="working\n", progress={"current": 1, "total": 2, "message": "half"}
    )
    data = admin_client.get(live).json()
    assert data["status"] == "RUNNING" and not data["finished"]
    assert data["log"] == "working\n"
    assert data["progress"]["percent"] == 50.0 and data["progress"]["message"] == "half"
    assert "data-dtdb-live" not in admin_client.get(page(finished())).content.decode()


def test_progress_too_big_for_a_float_is_shown_without_a_percentage(
    admin_client: Client,
) -> None:
    task = TaskFactory(status=TaskStatus.RUNNING, attempts=1, started_at=timezone.now())
    Task.objects.filter(pk=task.pk).update(progress={"current": 10**400, "total": 3})
    response = admin_client.get(page(task))
    assert response.status_code == 200 and "0" * 300 in response.content.decode()
    progress = admin_client.get(f"{LIST}{task.pk}/live.json").json()["progress"]
    assert progress["current"] == 10**400 and progress["percent"] is None


def test_a_worker_id_too_big_for_the_column_filters_to_nothing(admin_client: Client) -> None:
    TaskFactory(worker=WorkerFactory())
    for value in ("9" * 30, "²"):  # "²".isdigit(), but no int
        response = admin_client.get(f"{LIST}?worker__id__exact={value}")
        assert response.status_code == 200 and "0 tasks" in response.content.decode()


def test_the_page_saves_nothing(admin_client: Client) -> None:
    task = TaskFactory()
    response = admin_client.post(page(task), {"status": "SUCCESSFUL", "priority": 9})
    assert response.status_code == 405
    assert fresh(task).status == TaskStatus.READY and fresh(task).priority == 0


def test_an_unknown_task_page_redirects_to_the_list(admin_client: Client) -> None:
    response = admin_client.get(f"{LIST}00000000-0000-0000-0000-000000000000/change/")
    assert response.status_code == 302 and response["Location"] == LIST


def test_a_page_offers_only_the_actions_that_apply(admin_client: Client) -> None:
    for status, task in one_of_each().items():
        html = admin_client.get(page(task)).content.decode()
        offered = {
            name
            for name in ("retry", "cancel", "abort", "run_again")
            if action_url(task, name) in html
        }
        assert offered == set(control.actions_for(task)), status


# -- actions ------------------------------------------------------------------------------------


def test_bulk_retry_moves_failed_tasks_back_and_keeps_their_errors(admin_client: Client) -> None:
    failed = finished(attempts=3, max_attempts=3, errors=[error(1), error(2), error(3)])
    done = finished(TaskStatus.SUCCESSFUL)
    response = bulk(admin_client, "retry", failed, done)
    assert response.status_code == 302
    assert said(response) == "1 task retried; 1 was not in a retryable state."
    row = fresh(failed)
    assert (row.status, row.attempts, len(row.errors), row.finished_at) == ("READY", 0, 3, None)
    assert fresh(done).status == TaskStatus.SUCCESSFUL


@pytest.mark.parametrize("action", ["retry", "cancel", "abort"])
def test_bulk_actions_read_ids_not_logs_and_tracebacks(admin_client: Client, action: str) -> None:
    """Selecting all may pick a million rows: an action that only needs their ids
    must not load every log (up to MAX_LOG_BYTES each) and traceback with them."""
    rows = [finished(log="x" * 1000), TaskFactory(log="y" * 1000)]
    with CaptureQueriesContext(connection) as queries:
        bulk(admin_client, action, *rows)
    # The selection: the rows whose ids were posted (transitions may then read a row).
    selections = [
        q["sql"] for q in queries if q["sql"].startswith("SELECT") and " IN (" in q["sql"]
    ]
    assert selections
    assert not [sql for sql in selections if re.search(r"""[."`]log["`]""", sql)]


def test_bulk_cancel_and_abort(admin_client: Client) -> None:
    ready, other_ready = TaskFactory(), TaskFactory()
    running = TaskFactory(status=TaskStatus.RUNNING, attempts=1, started_at=timezone.now())
    done = finished(TaskStatus.SUCCESSFUL)
    response = bulk(admin_client, "cancel", ready, running)
    assert said(response) == "1 task cancelled; 1 was not ready."
    assert fresh(ready).status == TaskStatus.CANCELLED
    assert fresh(running).status == TaskStatus.RUNNING
    response = bulk(admin_client, "abort", other_ready, running, done)
    assert said(response) == "2 tasks aborted; 1 had already finished."
    assert fresh(other_ready).status == TaskStatus.CANCELLED
    assert fresh(running).abort_requested_at is not None  # its supervisor kills it
    assert fresh(done).status == TaskStatus.SUCCESSFUL and fresh(done).abort_requested_at is None


def test_bulk_run_again_enqueues_copies(admin_client: Client) -> None:
    done = finished(TaskStatus.SUCCESSFUL, args=[4, 5], queue_name="emails", priority=3)
    gone = finished(task_path="tests.testapp.tasks.no_longer_here")
    response = bulk(admin_client, "run_again", done, gone)
    assert said(response).startswith("1 task enqueued again; 1 could not be enqueued (")
    copy = Task.objects.exclude(pk__in=[done.pk, gone.pk]).get()
    assert (copy.task_path, copy.args, copy.queue_name, copy.priority, copy.status) == (
        "tests.testapp.tasks.add",
        [4, 5],
        "emails",
        3,
        TaskStatus.READY,
    )
    assert fresh(done).status == TaskStatus.SUCCESSFUL


def test_page_actions(admin_client: Client) -> None:
    failed = finished(errors=[error(1)])
    response = admin_client.post(action_url(failed, "retry"))
    assert response.status_code == 302 and response["Location"] == page(failed)
    assert said(response) == "1 task retried."
    assert fresh(failed).status == TaskStatus.READY and len(fresh(failed).errors) == 1

    response = admin_client.post(action_url(failed, "cancel"))
    assert fresh(failed).status == TaskStatus.CANCELLED

    running = TaskFactory(status=TaskStatus.RUNNING, attempts=1, started_at=timezone.now())
    admin_client.post(action_url(running, "abort"))
    assert fresh(running).abort_requested_at is not None

    response = admin_client.post(action_url(failed, "run_again"))
    copy = Task.objects.exclude(pk__in=[failed.pk, running.pk]).get()
    assert response["Location"] == page(copy)
    assert copy.status == TaskStatus.READY and copy.args == failed.args


def test_a_page_action_that_does_not_apply_changes_nothing(admin_client: Client) -> None:
    done = finished(TaskStatus.SUCCESSFUL)
    response = admin_client.post(action_url(done, "cancel"))
    assert response.status_code == 302
    assert said(response) == "Cancel does not apply to a task that is Successful."
    assert fresh(done).status == TaskStatus.SUCCESSFUL
    assert admin_client.post(action_url(done, "explode")).status_code == 404
    assert admin_client.get(action_url(done, "retry")).status_code == 405


def test_page_actions_need_a_csrf_token() -> None:
    user = User.objects.create_superuser("csrf-admin")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    failed = finished()
    assert client.post(action_url(failed, "retry")).status_code == 403
    assert fresh(failed).status == TaskStatus.FAILED


# -- enqueueing ---------------------------------------------------------------------------------


def enqueue(client: Client, **fields: str) -> Any:
    data = {"task": "tests.testapp.tasks.add", "args": "[1, 2]", "kwargs": "{}"}
    data.update({"queue": "", "priority": "", "run_after": ""}, **fields)
    return client.post(f"{LIST}add/", data)


def test_the_enqueue_page_offers_the_project_tasks_and_queues(admin_client: Client) -> None:
    html = admin_client.get(LIST).content.decode()
    assert "Enqueue a task" in html and f'href="{LIST}add/"' in html
    html = admin_client.get(f"{LIST}add/").content.decode()
    for path in control.project_tasks():
        assert f'<option value="{path}"' in html
    for queue in ("default", "emails", "reports"):
        assert f'<option value="{queue}"' in html


def test_enqueue_good_input_writes_a_task(admin_client: Client) -> None:
    response = enqueue(
        admin_client,
        kwargs='{"b": 2}',
        args="[1]",
        queue="reports",
        priority="7",
        run_after="2031-01-02T03:04:05",
    )
    task = Task.objects.get()
    assert response.status_code == 302 and response["Location"] == page(task)
    assert said(response) == f"Enqueued add as task {task.id.hex[:8]}."
    assert (task.args, task.kwargs, task.queue_name, task.priority) == ([1], {"b": 2}, "reports", 7)
    assert task.run_after == datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"args": "[1,"}, "args is not valid JSON"),
        ({"args": '{"a": 1}'}, "args must be a JSON list"),
        ({"kwargs": "[]"}, "kwargs must be a JSON object"),
        ({"args": "[1]"}, "Arguments do not match add(a: int, b: int)"),
        ({"args": "[1, 2, 3]"}, "Arguments do not match"),
        ({"queue": "nowhere"}, "Select a valid choice"),
        ({"priority": "101"}, "Ensure this value is less than or equal to 100"),
        ({"priority": "-101"}, "Ensure this value is greater than or equal to -100"),
        ({"task": "os.system"}, "Select a valid choice"),
        ({"args": "[" * 5000 + "]" * 5000}, "args is not valid JSON: nested too deeply"),
        ({"args": f"[{'1' * 5000}, 2]"}, "args is not valid JSON: Exceeds the limit"),
        ({"args": '["\\u0000", 2]'}, "Task arguments hold text no database stores"),
        (
            {"kwargs": '{"b": "\\ud800"}', "args": "[1]"},
            "Task keyword arguments hold text no database stores",
        ),
    ],
)
def test_enqueue_bad_input_writes_nothing(admin_client: Client, fields: dict, message: str) -> None:
    response = enqueue(admin_client, **fields)
    assert response.status_code == 200
    assert message in response.content.decode().replace("&#x27;", "'")
    assert not Task.objects.exists()


def test_enqueue_a_run_after_past_the_last_year_in_utc_writes_nothing(
    admin_client: Client, settings
) -> None:
    settings.TIME_ZONE = "America/New_York"
    response = enqueue(admin_client, run_after="9999-12-31T23:59:59")
    assert response.status_code == 200 and "is out of range" in response.content.decode()
    assert not Task.objects.exists()


# -- permissions --------------------------------------------------------------------------------


def test_view_permission_alone_sees_everything_and_can_do_nothing() -> None:
    client = staff("view_task")
    failed, ready = finished(), TaskFactory()
    listing = client.get(LIST).content.decode()
    assert str(failed.pk) in listing  # the rows are there …
    assert 'name="action"' not in listing and "Enqueue a task" not in listing  # … no actions
    html = client.get(page(failed)).content.decode()
    assert "dtdb-action" not in html and "/do/" not in html
    assert client.get(f"{LIST}{failed.pk}/live.json").status_code == 200
    # forged requests change nothing
    for action, task in (
        ("retry", failed),
        ("cancel", ready),
        ("abort", ready),
        ("run_again", failed),
    ):
        assert client.post(action_url(task, action)).status_code == 403
        bulk(client, action, task)
    assert enqueue(client).status_code == 403
    assert client.get(f"{LIST}add/").status_code == 403
    assert fresh(failed).status == TaskStatus.FAILED and fresh(ready).status == TaskStatus.READY
    assert Task.objects.count() == 2


def test_change_permission_without_add_may_retry_but_not_run_again_or_enqueue() -> None:
    client = staff("view_task", "change_task")
    failed = finished()
    listing = client.get(LIST).content.decode()
    for name in ("retry", "cancel", "abort"):
        assert f'<option value="{name}"' in listing
    assert '<option value="run_again"' not in listing and "Enqueue a task" not in listing
    html = client.get(page(failed)).content.decode()
    assert action_url(failed, "retry") in html and action_url(failed, "run_again") not in html
    assert client.post(action_url(failed, "run_again")).status_code == 403
    bulk(client, "run_again", failed)
    assert enqueue(client).status_code == 403
    assert Task.objects.count() == 1
    assert client.post(action_url(failed, "retry")).status_code == 302
    assert fresh(failed).status == TaskStatus.READY


def test_no_view_permission_sees_nothing() -> None:
    client = staff()
    task = TaskFactory()
    assert client.get(LIST).status_code == 403
    assert client.get(page(task)).status_code == 403
    assert client.get(f"{LIST}{task.pk}/live.json").status_code == 403


def test_the_worker_filter_lists_live_and_recent_workers(admin_client: Client) -> None:
    live = WorkerFactory(status=Worker.Status.RUNNING)
    stopped = WorkerFactory(status=Worker.Status.STOPPED)
    html = admin_client.get(LIST).content.decode()
    assert f"?worker__id__exact={live.pk}" in html
    assert f"?worker__id__exact={stopped.pk}" in html
