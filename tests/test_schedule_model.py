"""The Schedule model: validation at the edge (save and admin form), arming, the admin."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from django_tasks_db.admin import ScheduleForm
from django_tasks_db.models import Schedule
from tests.factories import ScheduleFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"cron": "61 * * * *"}, "cron", "not a valid cron expression"),
        ({"cron": "* * * *"}, "cron", "has 4 fields"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "not a known IANA time zone"),
        ({"task_path": "elsewhere.tasks.run"}, "task_path", "not part of an installed app"),
        ({"task_path": "os.system"}, "task_path", "not a django.tasks Task"),
        ({"task_path": "tests.testapp.tasks.not_a_task"}, "task_path", "not a django.tasks Task"),
        ({"task_path": "not a path"}, "task_path", "not a dotted path"),
        ({"args": [1]}, "args", "Arguments do not match add"),
        ({"args": [1, 2], "kwargs": {"c": 3}}, "args", "Arguments do not match add"),
        ({"args": {"a": 1}}, "args", "must be a JSON list"),
        ({"kwargs": [1]}, "kwargs", "must be a JSON object"),
        ({"queue_name": "nope"}, "queue_name", "not valid for backend 'default'"),
        ({"priority": 101}, "priority", "between -100 and 100"),
        ({"backend_name": "nope"}, "backend_name", "nope"),
        ({"missed_policy": "sometimes"}, "missed_policy", "not a valid choice"),
    ],
)
def test_bad_schedules_are_refused_on_save(changes, field, message) -> None:
    schedule = ScheduleFactory.build(**changes)
    with pytest.raises(ValidationError) as caught:
        schedule.save()
    assert field in caught.value.message_dict
    assert message in " ".join(caught.value.message_dict[field])
    assert not Schedule.objects.exists()


def test_a_valid_schedule_is_armed_at_its_next_tick() -> None:
    before = timezone.now()
    schedule = ScheduleFactory(cron="0 * * * *")
    assert schedule.next_run_at > before
    assert schedule.next_run_at <= before + timedelta(hours=1)
    assert (schedule.next_run_at.minute, schedule.next_run_at.second) == (0, 0)


def test_an_explicit_next_run_is_kept() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert ScheduleFactory(next_run_at=when).next_run_at == when


def test_changing_the_timing_rearms_and_other_edits_do_not() -> None:
    schedule = ScheduleFactory(next_run_at=datetime(2026, 1, 1, tzinfo=UTC))
    schedule = Schedule.objects.get(pk=schedule.pk)
    schedule.args = [3, 4]
    schedule.save()
    assert schedule.next_run_at == datetime(2026, 1, 1, tzinfo=UTC)
    schedule.cron = "0 0 * * *"
    schedule.save()
    assert schedule.next_run_at > timezone.now()


def test_enabling_rearms_so_a_paused_schedule_does_not_catch_up() -> None:
    schedule = ScheduleFactory(enabled=False, next_run_at=datetime(2026, 1, 1, tzinfo=UTC))
    schedule = Schedule.objects.get(pk=schedule.pk)
    schedule.enabled = True
    schedule.save(update_fields=["enabled"])
    schedule.refresh_from_db()
    assert schedule.next_run_at > timezone.now()


def test_overrides_apply_to_the_task() -> None:
    schedule = ScheduleFactory(task_path="tests.testapp.tasks.send_email", args=["a@b.c"])
    task = schedule.get_task()
    assert (task.queue_name, task.priority) == ("emails", 5)
    schedule.queue_name, schedule.priority = "reports", -3
    task = schedule.get_task()
    assert (task.queue_name, task.priority) == ("reports", -3)


def form_data(**changes):
    data = {
        "name": "nightly",
        "task_path": "tests.testapp.tasks.add",
        "args": "[1, 2]",
        "kwargs": "{}",
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "enabled": "on",
        "backend_name": "default",
        "queue_name": "",
        "priority": "",
        "missed_policy": "skip",
        "catchup_window": "3600",
    }
    return {**data, **changes}


def test_the_admin_form_validates_through_the_model() -> None:
    form = ScheduleForm(
        data=form_data(cron="61 * * * *", task_path="tests.testapp.tasks.not_a_task")
    )
    assert not form.is_valid()
    assert "not a valid cron expression" in str(form.errors["cron"])
    assert "not a django.tasks Task" in str(form.errors["task_path"])
    form = ScheduleForm(data=form_data(args="[1]"))
    assert not form.is_valid() and "Arguments do not match" in str(form.errors["args"])


def test_the_admin_form_saves_a_good_schedule() -> None:
    form = ScheduleForm(data=form_data(kwargs=""))
    assert form.is_valid(), form.errors.as_json()
    schedule = form.save()
    assert schedule.next_run_at is not None and schedule.timezone == "Europe/Berlin"


def test_the_admin_pages(admin_client) -> None:
    schedule = ScheduleFactory(name="every-minute")
    response = admin_client.get(reverse("admin:django_tasks_db_schedule_changelist"))
    assert response.status_code == 200 and b"every-minute" in response.content
    url = reverse("admin:django_tasks_db_schedule_change", args=[schedule.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, form_data(name="every-minute", cron="61 * * * *"))
    assert response.status_code == 200 and b"not a valid cron expression" in response.content


def test_every_save_validates_even_of_run_state_alone() -> None:
    """The scheduler writes last_run_at/next_run_at with update(); save() has no
    carve-out that would let an invalid row be written."""
    schedule = ScheduleFactory()
    Schedule.objects.filter(pk=schedule.pk).update(cron="not a cron")
    schedule = Schedule.objects.get(pk=schedule.pk)
    schedule.last_run_at = timezone.now()
    with pytest.raises(ValidationError):
        schedule.save(update_fields=["last_run_at"])
