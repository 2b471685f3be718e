"""Signed-in admin clients for the control room's tests, without password hashing
(a PBKDF2 hash per test would cost more than the test)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client


@pytest.fixture
def admin_user(db) -> User:
    """pytest-django's ``admin_user`` (which ``admin_client`` signs in), minus the hash."""
    return User.objects.create_superuser("admin", "admin@example.com", password=None)


@pytest.fixture
def slow_heartbeats(settings):
    """Heartbeats every 5 s, dead after 30 s: ages of seconds are stable in a test."""
    settings.TASKS = {
        **settings.TASKS,
        "default": {
            **settings.TASKS["default"],
            "OPTIONS": {"HEARTBEAT_INTERVAL": 5, "WORKER_DEAD_AFTER": 30},
        },
    }


def staff(*codenames: str) -> Client:
    """A client signed in as a staff user holding exactly these permissions."""
    user = User.objects.create_user("staff-" + "-".join(codenames), is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client
