"""E005: a ``tasks`` module that fails to import fails ``manage.py check``.

The apps live in a temporary directory and are installed with ``override_settings``
for one test each, so nothing here touches the suite's own apps.
"""

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_tasks_db import framework
from django_tasks_db.framework import check_tasks

APPS = {
    # An app whose tasks module fails when @task validates it against the backend.
    "e005_bad_queue": (
        "from django_tasks_db import task\n\n\n"
        '@task(queue_name="nosuch")\n'
        "def job() -> None:\n"
        "    pass\n"
    ),
    # An app whose tasks module imports something that is not there.
    "e005_bad_import": "import e005_no_such_module  # noqa: F401\n",
    # An app whose tasks module raises something else at import.
    "e005_raises": 'raise RuntimeError("settings.FOO is missing")\n',
    # Apps that are fine: tasks that import, and no tasks module at all.
    "e005_good": ("from django_tasks_db import task\n\n\n@task\ndef job() -> int:\n    return 1\n"),
    "e005_no_tasks": None,
}


@pytest.fixture
def install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings
) -> Iterator[Callable[..., None]]:
    """``install("e005_good", ...)``: write those apps and add them to INSTALLED_APPS."""
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides: list[override_settings] = []

    def install(*names: str) -> None:
        for name in names:
            (tmp_path / name).mkdir()
            (tmp_path / name / "__init__.py").write_text("")
            if APPS[name] is not None:
                (tmp_path / name / "tasks.py").write_text(APPS[name])
        override = override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, *names])
        override.enable()
        overrides.append(override)

    yield install
    for override in reversed(overrides):
        override.disable()
    for module in [m for m in sys.modules if m.startswith("e005_")]:
        del sys.modules[module]


def e005() -> list[str]:
    """The E005 messages of the checks of every TASKS backend."""
    return [m.msg for m in check_tasks() if m.id == "django_tasks_db.E005"]


def test_a_task_module_that_fails_to_import_is_an_error(install) -> None:
    install("e005_bad_queue")
    [message] = e005()
    assert message.startswith("Task module 'e005_bad_queue.tasks' cannot be imported")
    invalid = framework.InvalidTask.__name__  # the backport's is InvalidTaskError
    assert f"{invalid}: Queue 'nosuch' is not valid for backend." in message


def test_every_failing_module_is_named_with_its_exception(install) -> None:
    install("e005_bad_import", "e005_good", "e005_raises", "e005_no_tasks", "e005_bad_queue")
    messages = e005()
    assert len(messages) == 3, messages
    assert "'e005_bad_import.tasks'" in messages[0]
    assert "ModuleNotFoundError: No module named 'e005_no_such_module'" in messages[0]
    assert "'e005_raises.tasks'" in messages[1]
    assert "RuntimeError: settings.FOO is missing" in messages[1]
    assert "'e005_bad_queue.tasks'" in messages[2]


@pytest.mark.django_db  # JSONField's check asks the database what it supports
def test_manage_py_check_fails(install) -> None:
    install("e005_bad_queue")
    with pytest.raises(SystemCheckError, match=r"django_tasks_db\.E005.*e005_bad_queue\.tasks"):
        call_command("check")


@pytest.mark.django_db  # JSONField's check asks the database what it supports
def test_modules_that_import_and_apps_without_one_pass(install) -> None:
    install("e005_good", "e005_no_tasks")
    assert e005() == []
    assert sys.modules["e005_good.tasks"].job.call() == 1
    call_command("check")


def test_reported_once_however_many_database_backends(install, settings) -> None:
    install("e005_bad_queue")
    backend = settings.TASKS["default"]
    with override_settings(TASKS={"default": backend, "other": backend}):
        assert len(e005()) == 1
