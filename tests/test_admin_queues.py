"""The Queue admin: pause state visible, pause/resume actions, read-only otherwise."""

from __future__ import annotations

import pytest

from django_tasks_db.models import Queue
from tests.admin_helpers import admin_user, staff  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

LIST = "/admin/django_tasks_db/queue/"


def test_the_list_shows_who_paused_what(admin_client) -> None:
    Queue.objects.create(name="reports", paused=True, changed_by="alice")
    Queue.objects.create(name="emails", paused=False, changed_by="cli")
    html = admin_client.get(LIST).content.decode()
    assert "reports" in html and "alice" in html and ">paused<" in html and ">running<" in html


def test_pause_and_resume_actions_record_the_user(admin_client) -> None:
    emails = Queue.objects.create(name="emails")
    reports = Queue.objects.create(name="reports", paused=True)
    response = admin_client.post(
        LIST, {"action": "pause", "_selected_action": [emails.pk, reports.pk]}, follow=True
    )
    assert "1 queue paused" in response.content.decode()
    emails.refresh_from_db()
    assert emails.paused and emails.changed_by == "admin"
    admin_client.post(LIST, {"action": "resume", "_selected_action": [emails.pk, reports.pk]})
    assert not Queue.objects.filter(paused=True).exists()


def test_read_only_no_add_no_delete_no_save(admin_client) -> None:
    queue = Queue.objects.create(name="emails")
    assert admin_client.get(f"{LIST}add/").status_code == 403
    assert admin_client.get(f"{LIST}{queue.pk}/delete/").status_code == 403
    html = admin_client.get(f"{LIST}{queue.pk}/change/").content.decode()
    assert 'name="_save"' not in html
    assert admin_client.post(f"{LIST}{queue.pk}/change/", {"paused": "on"}).status_code == 405
    assert not Queue.objects.get(pk=queue.pk).paused


def test_a_view_only_user_cannot_pause() -> None:
    client = staff("view_queue")
    queue = Queue.objects.create(name="emails")
    assert 'value="pause"' not in client.get(LIST).content.decode()
    client.post(LIST, {"action": "pause", "_selected_action": [queue.pk]})
    assert not Queue.objects.get(pk=queue.pk).paused
