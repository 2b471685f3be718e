"""The Schedule admin: cron in words, times in the schedule's zone, the next five
runs, the last run's task, and run now / enable / disable with permissions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from django_tasks_db.cron import Cron
from django_tasks_db.models import Schedule, ScheduleTick, Task
from tests.admin_helpers import admin_user, staff  # noqa: F401  (fixtures)
from tests.factories import ScheduleFactory, TaskFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/django_tasks_db/schedule/"


def page(schedule: Schedule) -> str:
    return f"{LIST}{schedule.pk}/change/"


def button(schedule: Schedule, name: str) -> str:
    return f"{LIST}{schedule.pk}/{name}/"


def nightly(**fields: object) -> Schedule:
    return ScheduleFactory(name="nightly", cron="30 2 * * *", timezone="Europe/Paris", **fields)


class TestWhatItShows:
    def test_the_list_says_the_cron_in_words_and_times_in_the_zone(self, admin_client) -> None:
        schedule = nightly()
        ScheduleFactory(name="often", cron="*/5 * * * *")
        html = admin_client.get(LIST).content.decode()
        assert "at 02:30 every day" in html and "every 5 minutes" in html
        local = schedule.next_run_at.astimezone(Cron("* * * * *", "Europe/Paris").zone)
        assert local.strftime("%H:%M:%S") == "02:30:00"
        assert f"{local:%Y-%m-%d %H:%M:%S}<br>" in html and "Europe/Paris" in html

    def test_the_page_lists_the_next_five_runs_in_the_zone(self, admin_client) -> None:
        schedule = nightly()
        html = admin_client.get(page(schedule)).content.decode()
        cron = schedule.get_cron()
        moment, expected = timezone.now(), []
        for _ in range(5):
            moment = cron.next_after(moment)
            expected.append(
                f"<li>{moment.astimezone(cron.zone):%Y-%m-%d} 02:30:00 Europe/Paris</li>"
            )
        assert "".join(expected) in html
        assert "at 02:30 every day" in html
        assert (
            f"{schedule.next_run_at.astimezone(cron.zone):%Y-%m-%d} 02:30:00 Europe/Paris" in html
        )

    def test_the_last_run_links_the_task_of_the_latest_tick(self, admin_client) -> None:
        schedule = nightly()
        older, latest = TaskFactory(), TaskFactory(status="SUCCESSFUL")
        for day, task in ((1, older), (2, latest)):
            at = datetime(2026, 3, day, 1, 30, tzinfo=UTC)
            ScheduleTick.objects.create(
                schedule=schedule, scheduled_at=at, enqueued_at=at, task=task
            )
        Schedule.objects.filter(pk=schedule.pk).update(
            last_run_at=datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
        )
        for html in (
            admin_client.get(LIST).content.decode(),
            admin_client.get(page(schedule)).content.decode(),
        ):
            assert f"/admin/django_tasks_db/task/{latest.pk}/change/" in html
            assert f"/admin/django_tasks_db/task/{older.pk}/change/" not in html
            assert "2026-03-02" in html and "02:30:00" in html  # 01:30 UTC, in Paris
        assert (
            "2026-03-02 02:30:00 Europe/Paris" in admin_client.get(page(schedule)).content.decode()
        )

    def test_a_disabled_schedule_says_it_will_not_run(self, admin_client) -> None:
        schedule = nightly(enabled=False)
        assert "none (disabled)" in admin_client.get(LIST).content.decode()
        assert (
            "none of these runs until enabled" in admin_client.get(page(schedule)).content.decode()
        )

    def test_a_broken_cron_still_renders(self, admin_client) -> None:
        schedule = nightly()
        Schedule.objects.filter(pk=schedule.pk).update(cron="61 * * * *")
        assert admin_client.get(LIST).status_code == 200
        html = admin_client.get(page(schedule)).content.decode()
        assert "minute 61, hour *" in html

    def test_the_add_page_still_works(self, admin_client) -> None:
        assert admin_client.get(f"{LIST}add/").status_code == 200
        response = admin_client.post(
            f"{LIST}add/",
            {
                "name": "new",
                "task_path": "tests.testapp.tasks.add",
                "args": "[1, 2]",
                "kwargs": "{}",
                "cron": "0 9 * * 1-5",
                "timezone": "UTC",
                "enabled": "on",
                "backend_name": "default",
                "queue_name": "",
                "priority": "",
                "missed_policy": "skip",
                "catchup_window": "3600",
            },
        )
        assert response.status_code == 302
        assert Schedule.objects.get(name="new").next_run_at is not None


class TestActions:
    def test_run_now_enqueues_without_a_tick_and_keeps_the_cron(self, admin_client) -> None:
        schedule = ScheduleFactory(
            name="mail", task_path="tests.testapp.tasks.send_email", args=["a@example.com"]
        )
        Schedule.objects.filter(pk=schedule.pk).update(queue_name="reports", priority=7)
        armed = Schedule.objects.get(pk=schedule.pk).next_run_at
        response = admin_client.post(
            LIST, {"action": "run_now", "_selected_action": [schedule.pk]}, follow=True
        )
        task = Task.objects.get()
        assert (task.task_path, task.args, task.queue_name, task.priority) == (
            "tests.testapp.tasks.send_email",
            ["a@example.com"],
            "reports",
            7,
        )
        assert not ScheduleTick.objects.exists()
        assert Schedule.objects.get(pk=schedule.pk).next_run_at == armed
        assert f"/admin/django_tasks_db/task/{task.pk}/change/" in response.content.decode()

    def test_run_now_of_a_schedule_that_cannot_run_says_why(self, admin_client) -> None:
        schedule = nightly()
        Schedule.objects.filter(pk=schedule.pk).update(task_path="tests.testapp.tasks.nope")
        response = admin_client.post(button(schedule, "run_now"), follow=True)
        assert "Could not run nightly" in response.content.decode()
        assert not Task.objects.exists()

    def test_disable_and_enable_from_the_list(self, admin_client) -> None:
        first, second = nightly(), ScheduleFactory(name="other")
        selected = {"_selected_action": [first.pk, second.pk]}
        response = admin_client.post(LIST, {"action": "disable", **selected}, follow=True)
        assert "2 schedules disabled" in response.content.decode()
        assert not Schedule.objects.filter(enabled=True).exists()
        Schedule.objects.update(next_run_at=datetime(2020, 1, 1, tzinfo=UTC))  # long past
        response = admin_client.post(LIST, {"action": "enable", **selected}, follow=True)
        assert "2 schedules enabled" in response.content.decode()
        for schedule in Schedule.objects.all():
            # Re-armed from now: no run for the time it was off.
            assert schedule.enabled and schedule.next_run_at > timezone.now()

    def test_a_schedule_that_no_longer_validates_stays_disabled(self, admin_client) -> None:
        schedule = nightly(enabled=False)
        Schedule.objects.filter(pk=schedule.pk).update(task_path="tests.testapp.tasks.nope")
        response = admin_client.post(button(schedule, "enable"), follow=True)
        assert "Schedule nightly stays disabled" in response.content.decode()
        assert not Schedule.objects.get(pk=schedule.pk).enabled

    def test_the_page_offers_run_now_and_the_opposite_of_its_state(self, admin_client) -> None:
        schedule = nightly()
        html = admin_client.get(page(schedule)).content.decode()
        assert button(schedule, "run_now") in html and button(schedule, "disable") in html
        assert button(schedule, "enable") not in html
        admin_client.post(button(schedule, "disable"))
        html = admin_client.get(page(schedule)).content.decode()
        assert button(schedule, "enable") in html and button(schedule, "disable") not in html
        assert admin_client.get(button(schedule, "run_now")).status_code == 405

    def test_a_view_only_user_sees_no_buttons_and_cannot_forge_them(self) -> None:
        client = staff("view_schedule")
        schedule = nightly()
        html = client.get(page(schedule)).content.decode()
        assert "/run_now/" not in html and "/disable/" not in html and 'name="_save"' not in html
        listing = client.get(LIST).content.decode()
        assert 'value="run_now"' not in listing and 'value="disable"' not in listing
        for name in ("run_now", "disable", "enable"):
            assert client.post(button(schedule, name)).status_code == 403
            client.post(LIST, {"action": name, "_selected_action": [schedule.pk]})
        assert Schedule.objects.get(pk=schedule.pk).enabled
        assert not Task.objects.exists()
