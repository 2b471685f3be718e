"""Turning a stored dotted path back into a ``django.tasks`` Task, safely.

A task row is data: whoever can write to the table chooses its path. So a path is
resolved only to an object that already *is* a Task, and a module is imported only
when it belongs to an installed app (workers import every app's ``tasks`` module at
start). ``os.system`` resolves to nothing and imports nothing.
"""

from __future__ import annotations

import re
import sys
from importlib import import_module
from typing import Any

from django.apps import apps
from django.utils.module_loading import autodiscover_modules

from .exceptions import UnknownTaskPath
from .framework import Task

_DOTTED_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def validate_task_path(path: object) -> str:
    """Check the form of a dotted path (no import); return it."""
    if not isinstance(path, str) or not _DOTTED_PATH.match(path):
        raise UnknownTaskPath(f"{path!r} is not a dotted path such as 'myapp.tasks.send_email'.")
    return path


def may_import(module_name: str) -> bool:
    """Only modules inside an installed app may be imported on a row's say-so."""
    return apps.get_containing_app_config(module_name) is not None


def resolve_task(path: str) -> Task[..., Any]:
    """Return the Task a path names, or raise ``UnknownTaskPath`` saying why not."""
    validate_task_path(path)
    module_name, _, attribute = path.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None:
        if not may_import(module_name):
            raise UnknownTaskPath(
                f"{path!r}: module {module_name!r} is not loaded and is not part of an "
                "installed app, so it is not imported."
            )
        try:
            module = import_module(module_name)
        except Exception as exc:  # ImportError, or whatever the module raises at import
            raise UnknownTaskPath(
                f"{path!r}: module {module_name!r} cannot be imported: {exc!r}"
            ) from exc
    obj = getattr(module, attribute, None)
    if not isinstance(obj, Task):
        raise UnknownTaskPath(f"{path!r} is not a django.tasks Task (decorate it with @task).")
    return obj


def import_task_modules() -> None:
    """Import the ``tasks`` module of every installed app, as the admin does for ``admin``."""
    autodiscover_modules("tasks")
