"""The queue in its own database (``OPTIONS["DATABASE"]`` with ``QueueRouter``), end
to end on a second real database of the server the suite runs on.

The two-database layout cannot share this pytest session: a session's settings and
test databases are made once, and an alias added to the suite's settings would be
touched by every system check (Django checks models against every alias). So:

- ``test_the_two_database_session`` runs tests/two_databases.py in a pytest session
  of its own with ``--ds tests.settings_queue_db``, whose test databases are named
  apart (``DATABASE_URL``'s name + ``_qdb``, or ``TASKS_TEST_SQLITE_FILE`` +
  ``-qdb``): the router, views in a transaction on either alias, the admin, and
  ``runworker``, ``runscheduler``, ``manage.py tasks`` as processes.
- ``test_migrate_...`` runs the README's two ``migrate`` commands on a fresh pair of
  databases and lists the tables of each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connections

from tests.processes import ROOT, command_env


def with_database_name(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_the_two_database_session(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)  # --ds decides
    if connections["default"].vendor == "sqlite":
        test_file = Path(settings.SQLITE_TEST_FILE)
        env["TASKS_TEST_SQLITE_FILE"] = str(test_file.with_name(f"{test_file.stem}-qdb.sqlite3"))
    else:
        url = env["DATABASE_URL"]
        env["DATABASE_URL"] = with_database_name(url, urlsplit(url).path.lstrip("/") + "_qdb")
    args = ["-m", "pytest", "-q", "-p", "no:randomly", "--ds", "tests.settings_queue_db"]
    done = run(*args, f"--basetemp={tmp_path}", "tests/two_databases.py", env=env, timeout=300)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    print(f"tests/two_databases.py: {summary}")
    assert done.returncode == 0 and " passed" in summary and "skipped" not in summary, (
        done.stdout[-20000:] + done.stderr[-5000:]
    )


# -- migrations ----------------------------------------------------------------------------------


@pytest.fixture
def fresh_databases(
    tmp_path: Path, django_db_setup: None, django_db_blocker: Any
) -> Iterator[dict[str, str]]:
    """A process environment for tests.settings_queue_db whose ``default`` and
    ``queue`` are new, empty databases (named after this session's test database)."""
    default = connections["default"]
    if default.vendor == "sqlite":
        yield fresh_env(f"sqlite:///{tmp_path / 'migrate.sqlite3'}")
        return
    name = f"{default.settings_dict['NAME']}_migrate"
    names = [name, f"{name}_queue"]  # the queue alias of tests/settings_queue_db.py

    def sql(template: str) -> None:
        with django_db_blocker.unblock(), default._nodb_cursor() as cursor:
            for each in names:
                cursor.execute(template.format(default.ops.quote_name(each)))

    sql("DROP DATABASE IF EXISTS {}")
    sql("CREATE DATABASE {}" + (" CHARACTER SET utf8mb4" if default.vendor == "mysql" else ""))
    try:
        yield fresh_env(with_database_name(os.environ["DATABASE_URL"], name))
    finally:
        sql("DROP DATABASE IF EXISTS {}")


def fresh_env(database_url: str) -> dict[str, str]:
    env = command_env(DJANGO_SETTINGS_MODULE="tests.settings_queue_db", DATABASE_URL=database_url)
    del env["TASKS_TEST_WORKER"]  # these databases, not a session's test databases
    return env


def manage(*args: str, env: dict[str, str]) -> str:
    """``python -m django <args>``: its output and errors (a non-zero exit fails the test)."""
    done = run("-m", "django", *args, env=env)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


TABLES = (
    "import json; from django.db import connections; "
    "print(json.dumps({a: connections[a].introspection.table_names() for a in connections}))"
)


@pytest.mark.slow
def test_migrate_puts_the_queue_tables_in_the_queue_database_only(
    fresh_databases: dict[str, str],
) -> None:
    env = fresh_databases
    manage("migrate", "-v", "0", env=env)
    manage("migrate", "--database", "queue", "-v", "0", env=env)
    listed = json.loads(manage("shell", "-v", "0", "-c", TABLES, env=env))
    tables = {alias: set(names) for alias, names in listed.items()}

    models = apps.get_app_config("django_tasks_db").get_models()
    queue_tables = {model._meta.db_table for model in models if not model._meta.proxy}
    assert queue_tables <= tables["queue"]
    assert not queue_tables & tables["default"]
    assert {"testapp_run", "auth_user", "django_migrations"} <= tables["default"]
    checked = manage("check", "--database", "default", "--database", "queue", env=env)
    assert "django_tasks_db." not in checked  # no E004, E006, W002
