"""Backend options and the system checks that guard them."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from django_tasks_db import checks
from django_tasks_db.conf import BackendOptions
from django_tasks_db.framework import task_backends


def backend_with(options: dict, **extra) -> dict:
    return {
        "default": {
            "BACKEND": "django_tasks_db.backend.DatabaseBackend",
            "OPTIONS": options,
            **extra,
        }
    }


def check_ids(**kwargs) -> list[str]:
    return [message.id for message in task_backends["default"].check(**kwargs)]


def test_defaults() -> None:
    options = BackendOptions.from_options({}, "default")
    assert options == BackendOptions(
        database="default",
        poll_interval=1.0,
        heartbeat_interval=5.0,
        worker_dead_after=30.0,
        max_attempts=1,
        timeout=None,
        shutdown_grace_period=30.0,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"POLL_INTERVALL": 1}, "Unknown option 'POLL_INTERVALL'"),
        ({"POLL_INTERVAL": 0}, "POLL_INTERVAL must be a positive number"),
        ({"HEARTBEAT_INTERVAL": "5"}, "HEARTBEAT_INTERVAL must be a positive number"),
        ({"WORKER_DEAD_AFTER": True}, "WORKER_DEAD_AFTER must be a positive number"),
        ({"MAX_ATTEMPTS": 0}, "MAX_ATTEMPTS must be a whole number"),
        ({"TIMEOUT": -1}, "TIMEOUT must be a positive number"),
        ({"DATABASE": 1}, "DATABASE must be a database alias"),
        ({"HEARTBEAT_INTERVAL": 10, "WORKER_DEAD_AFTER": 10}, "must be longer than"),
        ({"MAX_LOG_BYTES": 0}, "MAX_LOG_BYTES must be a whole number"),
        ({"MAX_LOG_BYTES": 16 * 2**20}, "MAX_LOG_BYTES must be at most 8388608"),
        ({"PRUNE_AFTER": 0}, "PRUNE_AFTER must be a positive number of days"),
        ({"PRUNE_AFTER": float("inf")}, "PRUNE_AFTER must be a positive number of days"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN must be a string of at least 16"),
        ({"METRICS_TOKEN": 12345678901234567890}, "METRICS_TOKEN must be a string"),
    ],
)
def test_invalid_options_fail_checks_and_use(options: dict, message: str) -> None:
    with override_settings(TASKS=backend_with(options)):
        messages = task_backends["default"].check()
        assert [m.id for m in messages] == ["django_tasks_db.E001"]
        assert message in messages[0].msg
        with pytest.raises(ImproperlyConfigured, match=message):
            task_backends["default"].config  # noqa: B018


def test_unknown_database_alias() -> None:
    with override_settings(TASKS=backend_with({"DATABASE": "queue"})):
        assert check_ids() == ["django_tasks_db.E002"]


def test_app_must_be_installed(settings) -> None:
    apps = [a for a in settings.INSTALLED_APPS if a != "django_tasks_db"]
    with override_settings(INSTALLED_APPS=apps):
        assert "django_tasks_db.E003" in check_ids()


def test_database_check_connects_only_when_asked(monkeypatch) -> None:
    """A plain ``check`` names no database: the backend's is not asked (and with no
    django_db mark here, pytest-django fails any connection), ``migrate`` and ``check
    --database`` name it."""
    asked: list[str] = []

    def cannot_skip_locked(connection) -> str:
        asked.append(connection.alias)
        return "it cannot skip locked rows."

    monkeypatch.setattr(checks, "skip_locked_problem", cannot_skip_locked)
    assert "django_tasks_db.E004" not in check_ids()
    assert "django_tasks_db.E004" not in check_ids(databases=["elsewhere"])
    assert asked == []
    assert "django_tasks_db.E004" in check_ids(databases=["default"])
    assert asked == ["default"]


@pytest.mark.django_db
def test_the_suite_database_can_be_a_queue() -> None:
    assert "django_tasks_db.E004" not in check_ids(databases=["default"])


@pytest.mark.django_db
def test_skip_locked_problems() -> None:
    from django.db import connection

    from django_tasks_db import db

    class Features:
        has_select_for_update = True
        has_select_for_update_skip_locked = True

    class FakeMariaDB:
        vendor = "mysql"
        mysql_is_mariadb = True
        mysql_version = (10, 5, 9)
        display_name = "MariaDB"
        features = Features()

    assert "older than 10.6" in db.skip_locked_problem(FakeMariaDB())
    FakeMariaDB.mysql_version = (10, 6, 0)
    assert db.skip_locked_problem(FakeMariaDB()) is None
    FakeMariaDB.mysql_is_mariadb = False
    FakeMariaDB.mysql_version = (8, 0, 0)
    assert "older than 8.0.1" in db.skip_locked_problem(FakeMariaDB())
    Features.has_select_for_update_skip_locked = False
    assert "cannot SELECT ... FOR UPDATE SKIP LOCKED" in db.skip_locked_problem(FakeMariaDB())
    assert db.skip_locked_problem(connection) is None


@pytest.mark.parametrize(
    ("vendor", "options", "deferred"),
    [
        ("sqlite", {}, True),
        ("sqlite", {"transaction_mode": "DEFERRED"}, True),
        ("sqlite", {"transaction_mode": "IMMEDIATE"}, False),
        ("sqlite", {"transaction_mode": "exclusive"}, False),
        ("postgresql", {}, False),
    ],
)
def test_sqlite_transaction_mode_detection(vendor, options, deferred) -> None:
    from types import SimpleNamespace

    from django_tasks_db.db import sqlite_without_immediate_mode

    connection = SimpleNamespace(vendor=vendor, settings_dict={"OPTIONS": options})
    assert sqlite_without_immediate_mode(connection) is deferred


def test_sqlite_deferred_mode_warns(monkeypatch) -> None:
    monkeypatch.setattr("django_tasks_db.checks.sqlite_without_immediate_mode", lambda c: True)
    messages = task_backends["default"].check()
    assert [m.id for m in messages] == ["django_tasks_db.W001"]
    assert "transaction_mode" in messages[0].hint


@pytest.mark.django_db
def test_system_check_command_is_clean() -> None:
    call_command("check", fail_level="WARNING")
