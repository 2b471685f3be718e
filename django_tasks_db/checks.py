"""System checks: configuration mistakes surface with ids before a worker starts.

Ids: E001 invalid OPTIONS; E002 DATABASE is not a configured alias; E003 the app is
not installed (``DatabaseBackend.check`` says so itself: without the app nothing here
runs); E004 the database cannot skip locked rows; W001 SQLite without an immediate
transaction mode; E005 an installed app's ``tasks`` module fails to import; E010-E015
a schedule declared in OPTIONS['SCHEDULES'] (see ``code_schedules.check_code_schedules``);
E006 ``QueueRouter`` with DatabaseBackends that name different databases; W002 the
routers send the app's models elsewhere than the backend's DATABASE. The database is
only contacted when the check run names databases (``migrate``, ``check --database``).

``DatabaseBackend.check`` reaches this module through the app (``apps.py``), so the
backend module, which loads with the settings, never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.utils.module_loading import module_has_submodule

from .code_schedules import check_code_schedules
from .conf import BackendOptions
from .db import skip_locked_problem, sqlite_without_immediate_mode

if TYPE_CHECKING:
    from .backend import DatabaseBackend


def check_backend(
    backend: DatabaseBackend,
    peers: Sequence[DatabaseBackend],
    databases: list[str] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """The checks of one DatabaseBackend (``DatabaseBackend.check`` asks the app for
    them); ``peers`` are all the DatabaseBackends in TASKS, in order."""
    where = f"TASKS[{backend.alias!r}]"
    problems = BackendOptions.validate(backend._raw_options)
    if problems:
        return [
            checks.Error(f"{where}['OPTIONS']: {p}", id="django_tasks_db.E001") for p in problems
        ]
    messages: list[checks.CheckMessage] = []
    alias = backend.database
    if alias not in settings.DATABASES:
        return [
            checks.Error(
                f"{where}['OPTIONS']['DATABASE'] is {alias!r}, which is not in DATABASES.",
                id="django_tasks_db.E002",
            )
        ]
    connection = connections[alias]
    if databases and alias in databases:
        problem = skip_locked_problem(connection)
        if problem:
            messages.append(
                checks.Error(
                    f"{where}: database {alias!r} cannot be a task queue: {problem}",
                    hint="Use PostgreSQL, MySQL >= 8.0.1, MariaDB >= 10.6 or SQLite.",
                    id="django_tasks_db.E004",
                )
            )
    if sqlite_without_immediate_mode(connection):
        messages.append(
            checks.Warning(
                f"{where}: SQLite database {alias!r} starts transactions DEFERRED.",
                hint=(
                    f"Set DATABASES[{alias!r}]['OPTIONS']['transaction_mode'] = 'IMMEDIATE' "
                    "so that concurrent writers wait for each other instead of failing with "
                    "'database is locked'. Claims are serialised either way."
                ),
                id="django_tasks_db.W001",
            )
        )
    messages += check_code_schedules(backend)
    messages += check_routing(backend, peers)
    if _is_first(backend, peers):
        messages += check_task_modules()
    return messages


def check_routing(
    backend: DatabaseBackend, peers: Sequence[DatabaseBackend]
) -> list[checks.CheckMessage]:
    """E006 and W002: Django's own code (the admin, ``migrate``, ``Model.save()``
    without ``using``) asks the routers where the app's models live; the backend
    and its workers use ``DATABASE``. Both must name the same database."""
    from .models import Task
    from .routers import QueueRouter, queue_database, queue_databases

    if any(isinstance(r, QueueRouter) for r in router.routers):
        try:
            queue_database()
        except ImproperlyConfigured as exc:  # said once, not once per backend
            first = _is_first(backend, peers)
            return [checks.Error(str(exc), id="django_tasks_db.E006")] if first else []
    where = f"TASKS[{backend.alias!r}]"
    routed = router.db_for_write(Task)
    if routed == backend.database:
        return []
    if len(set(queue_databases().values())) > 1:
        hint = (
            "The DatabaseBackends name different databases, which QueueRouter refuses: "
            "route django_tasks_db's models with a router of your own, or silence this."
        )
    else:
        hint = (
            "Add 'django_tasks_db.routers.QueueRouter' to DATABASE_ROUTERS and run "
            f'`manage.py migrate --database {backend.database}` (README: "The queue in its '
            'own database").'
        )
    return [
        checks.Warning(
            f"{where} keeps its queue in database {backend.database!r}, but Django's routing "
            f"sends django_tasks_db's models to {routed!r}: the admin, and code that uses "
            f"the models without .using(), read and write {routed!r}, and migrate creates "
            f"the tables there.",
            hint=hint,
            id="django_tasks_db.W002",
        )
    ]


def _is_first(backend: DatabaseBackend, peers: Sequence[DatabaseBackend]) -> bool:
    """Whether ``backend`` is the first DatabaseBackend in TASKS (checks that do not
    depend on the backend report once, not once per alias)."""
    return not peers or peers[0].alias == backend.alias


def check_task_modules() -> list[checks.CheckMessage]:
    """E005: import the ``tasks`` module of every installed app, as a worker does at start.

    A module that fails to import (say ``@task(queue_name="nosuch")``) would otherwise
    pass ``check`` and only show when a worker starts. Same modules as
    ``task_paths.import_task_modules`` (``autodiscover_modules("tasks")``), but every
    failing one is named, not just the first.
    """
    messages: list[checks.CheckMessage] = []
    for app_config in apps.get_app_configs():
        name = f"{app_config.name}.tasks"
        try:
            import_module(name)
        except Exception as exc:
            if not module_has_submodule(app_config.module, "tasks"):
                continue  # the app has no tasks module: nothing to import
            messages.append(
                checks.Error(
                    f"Task module {name!r} cannot be imported: {type(exc).__name__}: {exc}",
                    hint="Workers import it when they start and enqueuing needs it. "
                    f"`manage.py shell -c 'import {name}'` shows the traceback.",
                    id="django_tasks_db.E005",
                )
            )
    return messages
