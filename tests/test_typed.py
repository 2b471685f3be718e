"""Typed for its users: the ``py.typed`` marker ships, and the generic bases the type
checker sees (``ModelAdmin[Task]``, ``GenericTask[P, R]``) are Django's own classes at
runtime. What the checker sees of the API is checked by mypy: ``tests/typing_usage.py``."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path

from django.contrib.admin import ModelAdmin
from django.core.paginator import Paginator
from django.forms import ModelForm

from django_tasks_db import framework
from django_tasks_db.admin.pagination import EstimatedCountPaginator
from django_tasks_db.admin.schedules import ScheduleAdmin, ScheduleForm
from django_tasks_db.admin.tasks import TaskAdmin
from django_tasks_db.backend import DatabaseTask

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_the_package_has_the_py_typed_marker() -> None:
    assert files("django_tasks_db").joinpath("py.typed").is_file()


def test_the_built_package_ships_the_marker() -> None:
    package_data = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["django_tasks_db"]


def test_generic_bases_are_the_plain_classes_at_runtime() -> None:
    assert DatabaseTask.__bases__ == (framework.Task,)
    assert TaskAdmin.__bases__ == (ModelAdmin,)
    assert ScheduleAdmin.__bases__ == (ModelAdmin,)
    assert ScheduleForm.__bases__ == (ModelForm,)
    assert EstimatedCountPaginator.__bases__ == (Paginator,)
