"""``QueueRouter``: Django's own code finds the queue in the database the backend names.

The backend, its workers, schedulers and commands pass ``using=OPTIONS["DATABASE"]``
on every query. Django's admin, model forms, ``Model.save()`` without ``using`` and
``migrate`` know nothing of that option: they ask ``DATABASE_ROUTERS``. With

    DATABASE_ROUTERS = ["django_tasks_db.routers.QueueRouter"]

reads and writes of this app's models go to that database, and so do its
migrations: ``manage.py migrate --database queue`` creates the tables there, while
``migrate`` on ``default`` leaves them out. Other apps' models are none of its business.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Model

#: The app whose models this router places.
APP_LABEL = "django_tasks_db"


def queue_databases() -> dict[str, str]:
    """``DATABASE`` of every ``DatabaseBackend`` in ``TASKS``, by backend alias.

    Read from the raw ``OPTIONS``: an invalid option elsewhere in them is check
    ``E001``'s to report, not a reason for every query of the app to fail.
    """
    from .backend import DatabaseBackend
    from .framework import task_backends

    found: dict[str, str] = {}
    for backend in task_backends.all():
        if isinstance(backend, DatabaseBackend):
            options = backend.options if isinstance(backend.options, dict) else {}
            database = options.get("DATABASE", DEFAULT_DB_ALIAS)
            if isinstance(database, str):  # anything else is E001
                found[backend.alias] = database
    return found


def queue_database() -> str | None:
    """The one database every ``DatabaseBackend`` keeps its queue in; None when
    ``TASKS`` has no DatabaseBackend.

    Raises ``ImproperlyConfigured`` when they name different databases: a model has
    one database in Django's routing, and picking one of them would show the admin
    one queue while the others' workers run unseen, or migrate only one of them.
    """
    databases = queue_databases()
    distinct = set(databases.values())
    if len(distinct) > 1:
        raise ImproperlyConfigured(
            "django_tasks_db.routers.QueueRouter needs every DatabaseBackend in TASKS to "
            f"name the same OPTIONS['DATABASE'], but they differ: {databases}. Point them "
            "at one alias, or replace QueueRouter with a router of your own."
        )
    return distinct.pop() if distinct else None


class QueueRouter:
    """Routes the queue's models (``django_tasks_db``) to the queue's database.

    The database is ``OPTIONS["DATABASE"]`` of the ``TASKS`` backends that are
    ``DatabaseBackend``s, read at each call (so ``override_settings`` applies):

    - reads and writes of this app's models go there;
    - this app's migrations run only there (``allow_migrate`` is False elsewhere);
    - several DatabaseBackends must agree on it. When they name different databases
      it does not choose one: reads and writes raise ``ImproperlyConfigured``, and
      the system checks report ``django_tasks_db.E006``, which stops ``migrate``
      and ``runserver`` (``allow_migrate`` has no opinion then, so that the checks,
      which ask it about every model and database, get as far as saying so);
    - with no DatabaseBackend in ``TASKS`` it has no opinion, nor for other apps'
      models: the next router, then ``default``, decides.
    """

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return queue_database() if model._meta.app_label == APP_LABEL else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return queue_database() if model._meta.app_label == APP_LABEL else None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label != APP_LABEL:
            return None
        try:
            database = queue_database()
        except ImproperlyConfigured:
            return None  # E006 says it, and stops migrate
        return None if database is None else db == database
