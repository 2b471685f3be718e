"""The app speaks the active language: model and choice names, admin pages and
messages come out of ``django_tasks_db/locale`` (a small German catalogue), English
stays the default, and ``makemessages`` finds the app's strings.

The catalogue tests need GNU gettext (``xgettext``, ``msgfmt``): without it they are
skipped saying so, except under ``.ci/run`` (``TASKS_GETTEXT_TEST=1``), where that is
a failure.
"""

from __future__ import annotations

import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.utils import translation

import django_tasks_db
from django_tasks_db.cron_text import describe
from django_tasks_db.models import Schedule, Task, TaskStatus, Worker
from tests.admin_helpers import admin_user  # noqa: F401  (the fixture admin_client signs in)
from tests.factories import TaskFactory

PACKAGE = Path(django_tasks_db.__file__).resolve().parent
CATALOGUE = PACKAGE / "locale" / "de" / "LC_MESSAGES"
TASKS = "/admin/django_tasks_db/task/"
DASHBOARD = "/admin/django_tasks_db/dashboard/"


def test_model_and_choice_names_in_german() -> None:
    with translation.override("de"):
        assert Task._meta.verbose_name == "Aufgabe"
        assert Task._meta.verbose_name_plural == "Aufgaben"
        assert Schedule._meta.verbose_name_plural == "Zeitpläne"
        assert TaskStatus.SUCCESSFUL.label == "Erfolgreich"
        assert dict(Task._meta.get_field("status").choices)["FAILED"] == "Fehlgeschlagen"
        assert apps.get_app_config("django_tasks_db").verbose_name == (
            "Aufgaben (Datenbank-Warteschlange)"
        )
        # A string the catalogue leaves untranslated falls back to English.
        assert Worker._meta.get_field("host").verbose_name == "host"
    # English is the default.
    assert Task._meta.verbose_name == "task"
    assert TaskStatus.SUCCESSFUL.label == "Successful"


def test_cron_in_words_names_months_and_days_in_the_active_language() -> None:
    """The names come from Django's own catalogue (``django.utils.dates``)."""
    with translation.override("de"):
        assert "Montag" in describe("0 9 * * 1-5") and "März" in describe("0 9 * 3 *")
    assert describe("0 9 * * 1-5") == "at 09:00 Monday to Friday"


@pytest.mark.django_db
def test_the_task_list_in_german(admin_client) -> None:
    TaskFactory(status=TaskStatus.FAILED)
    with translation.override("de"):
        html = admin_client.get(TASKS).content.decode()
    assert "<h1>Aufgaben</h1>" in html
    assert ">Fehlgeschlagen</span>" in html  # the status badge
    assert "Ausgewählte Aufgaben erneut versuchen" in html  # an action
    assert "Aufgabe einreihen" in html  # the add button
    assert "Warteschlange" in html  # a list filter's title
    english = admin_client.get(TASKS).content.decode()
    assert "<h1>Tasks</h1>" in english and ">Failed</span>" in english


@pytest.mark.django_db
def test_the_dashboard_in_german(admin_client) -> None:
    TaskFactory(status=TaskStatus.SUCCESSFUL)
    with translation.override("de"):
        html = admin_client.get(DASHBOARD).content.decode()
    assert "Dashboard der Aufgabenwarteschlange" in html  # its title, built in Python
    assert "Jetzt aktualisieren" in html  # a template string
    assert re.search(r'<th scope="col" class="tdb-num">Erfolgreich</th>', html)  # a choice


@pytest.mark.django_db
def test_an_action_message_in_german_singular_and_plural(admin_client) -> None:
    failed = [TaskFactory(status=TaskStatus.FAILED) for _ in range(3)]

    def retry(*tasks: Task) -> list[str]:
        response = admin_client.post(
            TASKS,
            {"action": "retry", "_selected_action": [str(t.pk) for t in tasks]},
            follow=True,
        )
        return [str(m) for m in response.context["messages"]]

    with translation.override("de"):
        assert retry(failed[0]) == ["1 Aufgabe erneut versucht."]
        assert retry(*failed[1:]) == ["2 Aufgaben erneut versucht."]


# -- the catalogue ---------------------------------------------------------------------------


def need_gettext() -> None:
    missing = [tool for tool in ("xgettext", "msgfmt", "msgmerge") if not shutil.which(tool)]
    if not missing:
        return
    problem = f"GNU gettext is missing ({', '.join(missing)}): apt-get install gettext"
    if os.environ.get("TASKS_GETTEXT_TEST"):
        pytest.fail(problem)
    pytest.skip(problem)


def entries(po: Path) -> dict[str, tuple[str, bool]]:
    """msgid -> (msgstr, fuzzy) of a .po file; a plural entry by its singular, its
    first form as msgstr. Enough of the format for a file makemessages wrote."""

    def text(lines: list[str]) -> str:
        return "".join(re.fullmatch(r'"(.*)"', line).group(1) for line in lines)

    found: dict[str, tuple[str, bool]] = {}
    for block in po.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.strip().splitlines() if not line.startswith("#~")]
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in lines)
        parts: dict[str, list[str]] = {}
        key = None
        for line in lines:
            if line.startswith("#"):
                continue
            if line.startswith('"'):
                if key is not None:
                    parts[key].append(line)
                continue
            key, _sep, rest = line.partition(" ")
            parts[key] = [rest]
        if "msgid" in parts:
            msgstr = parts.get("msgstr", parts.get("msgstr[0]", []))
            found[text(parts["msgid"])] = (text(msgstr), fuzzy)
    return found


def translated(po: Path) -> dict[str, str]:
    return {k: v for k, (v, _fuzzy) in entries(po).items() if k and v}


def test_the_shipped_catalogue_is_compiled_and_nothing_in_it_is_fuzzy(tmp_path) -> None:
    need_gettext()
    po, mo = CATALOGUE / "django.po", CATALOGUE / "django.mo"
    found = entries(po)
    assert not [msgid for msgid, (_msgstr, fuzzy) in found.items() if fuzzy], (
        "fuzzy entries are not compiled: check and unmark them"
    )
    assert translated(po)["Task queue dashboard"] == "Dashboard der Aufgabenwarteschlange"
    # The committed .mo is the .po compiled (run compilemessages after editing the .po).
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(fresh), str(po)], check=True)
    with mo.open("rb") as shipped, fresh.open("rb") as compiled:
        assert gettext.GNUTranslations(shipped)._catalog == (
            gettext.GNUTranslations(compiled)._catalog  # what each msgid translates to
        )


def test_makemessages_finds_the_apps_strings(tmp_path) -> None:
    """The README's command, on a copy of the package: Python, lazy and plural strings
    and templates are all found, and every shipped translation is of a string the
    code still has."""
    need_gettext()
    copy = tmp_path / "django_tasks_db"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "de", "--no-obsolete"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
    )
    made = entries(copy / "locale" / "de" / "LC_MESSAGES" / "django.po")
    for msgid in (
        "Tasks (database queue)",  # apps.py
        "task",  # a model's verbose name
        "Successful",  # a choice label
        "Dotted path of the django.tasks Task.",  # a help text
        "Retry the selected tasks",  # an admin action
        "%(count)d task retried",  # a plural message
        "waiting for %(n)d parent task",  # text built at run time
        "Refresh now",  # a template's {% translate %}
        "Figures as of %(at)s (database clock).",  # a template's {% blocktranslate %}
    ):
        assert msgid in made, f"makemessages did not find {msgid!r}"
    stale = set(translated(CATALOGUE / "django.po")) - set(made)
    assert not stale, f"translations of strings the code no longer has: {sorted(stale)}"
