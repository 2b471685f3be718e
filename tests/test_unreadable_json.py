"""A JSON value the database took but Python cannot read (``json_columns``).

Written by hand: an array nested deeper than Python's recursion limit (jsonb and
SQLite take 1,500 levels; MariaDB refuses more than 32) or an integer longer than
Python's 4,300 digits (every database takes it). Loading such a row used to raise:
the admin's task page and its actions answered 500, ``tasks show``, ``cancel`` and
``retry`` said the id was not a task id, ``tasks list`` crashed on unreadable errors.
One such schedule broke the whole schedule list. Now the row loads with the value
as ``UnreadableJSON``, can be seen and acted on, a worker fails such a task alone,
and a schedule's form shows the stored text to be corrected.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client

from django_tasks_db.framework import default_task_backend
from django_tasks_db.json_columns import UnreadableJSON, json_text
from django_tasks_db.models import Schedule, Task, TaskStatus
from tests.factories import ScheduleFactory, TaskFactory
from tests.test_schedule_model import form_data

pytestmark = pytest.mark.django_db

DEEP = "[" * 1500 + "]" * 1500
LONG_NUMBER = "[" + "7" * 5000 + "]"
LIST = "/admin/django_tasks_db/task/"


@pytest.fixture(params=["deep", "long number"])
def unreadable(request: pytest.FixtureRequest) -> str:
    if request.param == "deep" and connection.vendor == "mysql":
        pytest.skip("MariaDB refuses JSON nested deeper than 32 levels")
    return DEEP if request.param == "deep" else LONG_NUMBER


def write_by_hand(row: Task, column: str, text: str) -> None:
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Task._meta.db_table} SET {column} = %s{cast} WHERE id = %s",
            [text, row.pk.hex if connection.vendor != "postgresql" else row.pk],
        )


def tasks_command(*args: str) -> str:
    out = StringIO()
    call_command("tasks", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", password=None))
    return client


def test_the_row_loads_with_the_value_marked_unreadable(unreadable: str) -> None:
    row = TaskFactory(args=[1], errors=[])
    write_by_hand(row, "args", unreadable)
    loaded = Task.objects.get(pk=row.pk)
    assert isinstance(loaded.args, UnreadableJSON)
    assert loaded.args.text.replace(" ", "") == unreadable
    problem = loaded.content_problem()
    assert problem is not None and "column 'args' cannot be read" in problem
    assert type(loaded.args.error).__name__ in problem
    assert json_text(loaded.args).startswith("(cannot be read: ")
    with pytest.raises(TypeError, match="not written back"), transaction.atomic():
        loaded.save()
    assert isinstance(Task.objects.get(pk=row.pk).args, UnreadableJSON)


def test_the_admin_shows_the_row_and_cancels_it(admin_client: Client, unreadable: str) -> None:
    row = TaskFactory(args=[1], errors=[])
    write_by_hand(row, "args", unreadable)
    write_by_hand(row, "errors", unreadable)
    page = admin_client.get(f"{LIST}{row.pk}/change/")
    assert page.status_code == 200
    assert page.content.decode().count("(cannot be read: ") == 2  # args, failed attempts
    assert admin_client.get(LIST).status_code == 200
    answer = admin_client.post(f"{LIST}{row.pk}/do/cancel/")
    assert answer.status_code == 302
    assert Task.objects.get(pk=row.pk).status == TaskStatus.CANCELLED


def test_run_again_refuses_arguments_it_cannot_read(admin_client: Client, unreadable: str) -> None:
    row = TaskFactory(status=TaskStatus.FAILED, args=[1], errors=[])
    write_by_hand(row, "args", unreadable)
    answer = admin_client.post(f"{LIST}{row.pk}/do/run_again/", follow=True)
    assert answer.status_code == 200
    assert "its args cannot be read" in answer.content.decode()
    assert Task.objects.count() == 1  # no copy with arguments nobody can read


def test_the_tasks_command_shows_lists_and_cancels_it(unreadable: str) -> None:
    row = TaskFactory(args=[1], errors=[])
    write_by_hand(row, "args", unreadable)
    write_by_hand(row, "errors", unreadable)
    shown = tasks_command("show", str(row.pk))
    assert "args              (cannot be read: " in shown
    assert str(row.pk)[:8] in tasks_command("list")
    assert tasks_command("cancel", str(row.pk)).strip() == f"{row.pk}: cancelled"


def test_get_result_reads_what_it_can(unreadable: str) -> None:
    row = TaskFactory(status=TaskStatus.FAILED, args=[1], errors=[])
    write_by_hand(row, "errors", unreadable)
    write_by_hand(row, "return_value", unreadable)
    result = default_task_backend.get_result(str(row.pk))
    assert result.status == "FAILED"
    assert result.errors == []


def test_a_schedule_shows_its_text_to_be_corrected(admin_client: Client, unreadable: str) -> None:
    schedule = ScheduleFactory(name="nightly", cron="0 3 * * *")
    table = connection.ops.quote_name(Schedule._meta.db_table)
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET args = %s{cast} WHERE id = %s", [unreadable, schedule.pk]
        )
    assert admin_client.get("/admin/django_tasks_db/schedule/").status_code == 200
    change = f"/admin/django_tasks_db/schedule/{schedule.pk}/change/"
    form = admin_client.get(change).content.decode()
    assert unreadable[:50] in form.replace(" ", "")  # the stored text, in the args box
    kept = admin_client.post(change, form_data(cron="0 3 * * *", timezone="UTC", args=unreadable))
    assert kept.status_code == 200
    assert "This JSON cannot be read" in kept.content.decode()
    assert (
        admin_client.post(
            change, form_data(cron="0 3 * * *", timezone="UTC", args="[1, 2]")
        ).status_code
        == 302
    )
    assert Schedule.objects.get(pk=schedule.pk).args == [1, 2]
