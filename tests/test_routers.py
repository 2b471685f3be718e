"""QueueRouter: where Django's own code (admin, ``save()``, ``migrate``) finds the
queue, and check E006. The suite's settings have one database; the router only
compares aliases, so these name ``queue`` without it. With a second real database
(check W002 too): tests/two_databases.py, run by tests/test_queue_database.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import router
from django.test import override_settings

from django_tasks_db import framework
from django_tasks_db.framework import task_backends
from django_tasks_db.models import Schedule, Task, Worker
from django_tasks_db.routers import QueueRouter, queue_database

ROUTER = ["django_tasks_db.routers.QueueRouter"]
DUMMY = {"BACKEND": f"{framework.MODULE}.backends.dummy.DummyBackend"}


def database_backend(database: str | None = None) -> dict[str, Any]:
    options = {} if database is None else {"DATABASE": database}
    return {
        "BACKEND": "django_tasks_db.backend.DatabaseBackend",
        "QUEUES": ["default", "emails", "reports"],  # those of tests.testapp's tasks
        "OPTIONS": options,
    }


def check_ids() -> list[str]:
    return [m.id or "" for backend in task_backends.all() for m in backend.check()]


@override_settings(TASKS={"default": database_backend("queue")}, DATABASE_ROUTERS=ROUTER)
def test_the_app_s_models_go_to_the_backend_s_database() -> None:
    for model in (Task, Worker, Schedule):
        assert router.db_for_read(model) == router.db_for_write(model) == "queue"
    assert router.db_for_read(User) == router.db_for_write(User) == "default"
    assert router.allow_migrate("queue", "django_tasks_db", model_name="task")
    assert not router.allow_migrate("default", "django_tasks_db", model_name="task")
    # Other apps are not its business: Django's default (migrate anywhere) stands.
    assert router.allow_migrate("default", "auth") and router.allow_migrate("queue", "auth")


@override_settings(TASKS={"default": database_backend()}, DATABASE_ROUTERS=ROUTER)
def test_without_the_option_the_queue_stays_in_default() -> None:
    assert router.db_for_write(Task) == "default"
    assert router.allow_migrate("default", "django_tasks_db")
    assert not router.allow_migrate("queue", "django_tasks_db")


@override_settings(TASKS={"default": DUMMY}, DATABASE_ROUTERS=ROUTER)
def test_without_a_database_backend_it_has_no_opinion() -> None:
    assert queue_database() is None
    assert QueueRouter().db_for_read(Task) is None
    assert QueueRouter().allow_migrate("queue", "django_tasks_db") is None
    assert router.db_for_write(Task) == "default"


@override_settings(
    TASKS={
        "default": database_backend("queue"),
        "also_queue": database_backend("queue"),
        "dummy": DUMMY,
    },
    DATABASE_ROUTERS=ROUTER,
)
def test_backends_that_agree_share_the_database() -> None:
    assert router.db_for_read(Task) == "queue"
    assert "django_tasks_db.E006" not in check_ids()


@override_settings(
    TASKS={"default": database_backend(), "other": database_backend("queue")},
    DATABASE_ROUTERS=ROUTER,
)
def test_backends_that_disagree_are_refused_not_guessed() -> None:
    with pytest.raises(ImproperlyConfigured, match="name the same OPTIONS\\['DATABASE'\\]"):
        router.db_for_read(Task)
    with pytest.raises(ImproperlyConfigured):
        Task(task_path="tests.testapp.tasks.add").save()
    assert check_ids().count("django_tasks_db.E006") == 1  # once, not per backend


@pytest.mark.django_db  # JSONField's check asks the database what it supports
@override_settings(
    TASKS={"default": database_backend(), "other": database_backend("queue")},
    DATABASE_ROUTERS=ROUTER,
)
def test_manage_py_check_and_migrate_stop_on_e006() -> None:
    """The model checks ask ``allow_migrate`` about every model: it must not raise
    there, or ``check`` would end in a traceback before it could name the problem."""
    assert QueueRouter().allow_migrate("default", "django_tasks_db") is None
    with pytest.raises(SystemCheckError, match=r"django_tasks_db\.E006"):
        call_command("check")
    with pytest.raises(SystemCheckError, match=r"django_tasks_db\.E006"):
        call_command("migrate", verbosity=0, skip_checks=False)  # before migrating anything


def test_the_suite_s_own_settings_pass() -> None:
    assert not {"django_tasks_db.E006", "django_tasks_db.W002"} & set(check_ids())


@override_settings(
    TASKS={"default": {**database_backend(), "OPTIONS": {"DATABASE": "queue", "TYPO": 1}}},
    DATABASE_ROUTERS=ROUTER,
)
def test_an_invalid_option_is_left_to_e001() -> None:
    """The router reads only DATABASE: a typo elsewhere must not fail every query."""
    assert router.db_for_read(Task) == "queue"
    assert "django_tasks_db.E001" in check_ids()
