"""Schedules declared in OPTIONS['SCHEDULES']: system checks and syncing without clobbering."""

from copy import deepcopy

import pytest
from django.core.checks import run_checks
from django.db import OperationalError
from django.test import override_settings

from django_tasks_db import code_schedules
from django_tasks_db.code_schedules import sync_code_schedules
from django_tasks_db.framework import task_backends
from django_tasks_db.models import Schedule
from tests.factories import ScheduleFactory

pytestmark = pytest.mark.django_db

NIGHTLY = {"task": "tests.testapp.tasks.add", "cron": "30 2 * * *", "args": [1, 2]}


def tasks_setting(schedules: dict) -> dict:
    return {
        "default": {
            "BACKEND": "django_tasks_db.backend.DatabaseBackend",
            "QUEUES": ["default", "emails", "reports"],
            "OPTIONS": {"SCHEDULES": schedules},
        }
    }


def sync(schedules: dict):
    with override_settings(TASKS=tasks_setting(schedules)):
        return sync_code_schedules(task_backends["default"])


def check_ids(schedules: object) -> list[str]:
    with override_settings(TASKS=tasks_setting(schedules)):  # type: ignore[arg-type]
        return sorted(m.id for m in run_checks() if m.id and m.id.startswith("django_tasks_db"))


def test_valid_schedules_pass_the_checks() -> None:
    assert check_ids({"nightly": NIGHTLY}) == []


@pytest.mark.parametrize(
    ("definition", "check_id"),
    [
        ({"cron": "* * * * *"}, "django_tasks_db.E010"),  # no task
        ({**NIGHTLY, "cronn": "x"}, "django_tasks_db.E010"),
        ({**NIGHTLY, "cron": "99 * * * *"}, "django_tasks_db.E011"),
        ({**NIGHTLY, "timezone": "Moon/Base"}, "django_tasks_db.E012"),
        ({**NIGHTLY, "task": "tests.testapp.tasks.not_a_task"}, "django_tasks_db.E013"),
        ({**NIGHTLY, "args": [1]}, "django_tasks_db.E014"),
        ({**NIGHTLY, "queue_name": "nope"}, "django_tasks_db.E015"),
        ({**NIGHTLY, "missed_policy": "maybe"}, "django_tasks_db.E015"),
    ],
)
def test_bad_definitions_fail_the_checks(definition: dict, check_id: str) -> None:
    assert check_ids({"nightly": definition}) == [check_id]


def test_schedules_that_are_not_a_mapping_fail_e001() -> None:
    assert check_ids(["nightly"]) == ["django_tasks_db.E001"]


def test_sync_creates_then_leaves_unchanged() -> None:
    report = sync({"nightly": NIGHTLY})
    assert report.created == ["nightly"]
    schedule = Schedule.objects.get(name="nightly")
    assert schedule.defined_in_code and schedule.next_run_at is not None
    assert (schedule.cron, schedule.timezone, schedule.args) == ("30 2 * * *", "UTC", [1, 2])
    assert sync({"nightly": NIGHTLY}).unchanged == ["nightly"]


def test_admin_edits_stand_while_the_code_definition_is_unchanged() -> None:
    sync({"nightly": NIGHTLY})
    schedule = Schedule.objects.get(name="nightly")
    schedule.cron, schedule.args, schedule.enabled = "45 3 * * *", [5, 6], False
    schedule.save()
    assert sync({"nightly": NIGHTLY}).unchanged == ["nightly"]
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.args, schedule.enabled) == ("45 3 * * *", [5, 6], False)


def test_a_changed_code_definition_wins_except_enabled() -> None:
    sync({"nightly": NIGHTLY})
    schedule = Schedule.objects.get(name="nightly")
    schedule.cron, schedule.enabled = "45 3 * * *", False
    schedule.save()
    changed = {**NIGHTLY, "cron": "0 4 * * *", "timezone": "Europe/Berlin", "enabled": True}
    assert sync({"nightly": changed}).updated == ["nightly"]
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.timezone) == ("0 4 * * *", "Europe/Berlin")
    assert schedule.enabled is False  # the operator paused it; a deploy does not resume it


def test_a_same_named_admin_schedule_is_taken_over_by_the_code() -> None:
    ScheduleFactory(name="nightly", cron="* * * * *")
    assert sync({"nightly": NIGHTLY}).updated == ["nightly"]
    assert Schedule.objects.get(name="nightly").defined_in_code


def test_schedules_removed_from_code_are_deleted_admin_ones_stay() -> None:
    sync({"nightly": NIGHTLY, "hourly": {**NIGHTLY, "cron": "0 * * * *"}})
    ScheduleFactory(name="made-in-admin")
    assert sync({"nightly": deepcopy(NIGHTLY)}).deleted == ["hourly"]
    assert sorted(Schedule.objects.values_list("name", flat=True)) == ["made-in-admin", "nightly"]


@pytest.mark.parametrize("collisions", [1, 2])
def test_a_collision_with_another_starting_scheduler_is_tried_again(
    monkeypatch, collisions: int, caplog
) -> None:
    """MySQL can make two schedulers that sync at once deadlock: the sync starts over."""
    real = code_schedules._sync
    left = [collisions]

    def collides(backend):  # type: ignore[no-untyped-def]
        if left[0]:
            left[0] -= 1
            raise OperationalError("Deadlock found when trying to get lock")
        return real(backend)

    monkeypatch.setattr(code_schedules, "_sync", collides)
    assert sync({"nightly": NIGHTLY}).created == ["nightly"]
    assert caplog.text.count("collided with another scheduler; retrying") == collisions


def test_a_sync_that_keeps_colliding_gives_up_with_the_error(monkeypatch) -> None:
    def collides(backend):  # type: ignore[no-untyped-def]
        raise OperationalError("Deadlock found when trying to get lock")

    monkeypatch.setattr(code_schedules, "_sync", collides)
    with pytest.raises(OperationalError, match="Deadlock"):
        sync({"nightly": NIGHTLY})
    assert not Schedule.objects.exists()
