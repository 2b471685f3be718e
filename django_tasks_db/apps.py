"""The app: its name, and the checks of every DatabaseBackend (``checks.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.core.checks import CheckMessage
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from .backend import DatabaseBackend


class DjangoTasksDbConfig(AppConfig):
    name = "django_tasks_db"
    verbose_name = _("Tasks (database queue)")
    default_auto_field = "django.db.models.BigAutoField"

    def check_backend(
        self, backend: DatabaseBackend, peers: list[DatabaseBackend], **kwargs: Any
    ) -> list[CheckMessage]:
        """``DatabaseBackend.check`` asks the installed app: the checks read the app's
        models, and the backend module must not import them (it loads with settings)."""
        from .checks import check_backend

        return check_backend(backend, peers, **kwargs)
