"""Migrations are committed, named, and match the models."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

import django_tasks_db


@pytest.mark.django_db
def test_no_missing_migrations() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=StringIO())
    assert "No changes detected" in out.getvalue()


def test_migrations_have_descriptive_names() -> None:
    names = [p.stem for p in (Path(django_tasks_db.__file__).parent / "migrations").glob("0*.py")]
    assert names and not [n for n in names if "auto" in n]
