"""The metrics view: Prometheus text format, values from the rows, who may read it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from django_tasks_db.metrics import CONTENT_TYPE, escape_label
from django_tasks_db.models import Queue, TaskStatus, Worker
from tests.factories import TaskFactory, WorkerFactory

pytestmark = pytest.mark.django_db

TOKEN = "scrape-me-please-0123456789"

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN"
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? ({VALUE})$")
PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse(text: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """The exposition text as {metric: {labels: value}}, asserting the format on the way:
    every line a HELP, a TYPE or a sample; HELP and TYPE once per metric, before its
    samples; samples of one metric together; the text ends with a newline."""
    assert text.endswith("\n")
    families: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    helped: set[str] = set()
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert re.fullmatch(NAME, name) and name not in helped, line
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helped and name not in typed, line
            assert kind in {"gauge", "counter", "untyped", "summary", "histogram"}
            typed[name] = kind
            families[name] = {}
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert name in typed and name == list(families)[-1], f"{name} out of its family"
            key = frozenset(PAIR.findall(labels or ""))
            assert key not in families[name], f"duplicate sample {line!r}"
            families[name][key] = float(value)
    return families


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


@pytest.fixture
def token(settings) -> str:
    settings.TASKS = {
        **settings.TASKS,
        "default": {
            **settings.TASKS["default"],
            "OPTIONS": {**settings.TASKS["default"]["OPTIONS"], "METRICS_TOKEN": TOKEN},
        },
    }
    return TOKEN


def scrape(client, token: str | None = TOKEN, **params: str):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/metrics", params, headers=headers)


def test_the_format_and_the_values(client, token) -> None:
    now = timezone.now()
    for _ in range(3):
        TaskFactory(queue_name="emails")
    TaskFactory(queue_name="emails", available_at=now - timedelta(seconds=60))
    TaskFactory(queue_name="reports", status=TaskStatus.RUNNING)
    TaskFactory(status=TaskStatus.SUCCESSFUL, finished_at=now - timedelta(minutes=1))
    TaskFactory(status=TaskStatus.FAILED, finished_at=now - timedelta(minutes=2))
    TaskFactory(status=TaskStatus.FAILED, finished_at=now - timedelta(minutes=30))
    Queue.objects.create(name="reports", paused=True)
    WorkerFactory(domains=["emails"])
    WorkerFactory(last_heartbeat_at=now - timedelta(seconds=1))
    WorkerFactory(last_heartbeat_at=now - timedelta(seconds=10))
    WorkerFactory(status=Worker.Status.STOPPED)
    WorkerFactory(status=Worker.Status.STOPPED)

    response = scrape(client)
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert "no-store" in response["Cache-Control"]
    metrics = parse(response.content.decode())

    tasks = metrics["django_tasks_db_tasks"]
    assert len(tasks) == 3 * 6  # every known queue, every status: series do not vanish
    assert tasks[labels(queue="emails", status="READY")] == 4
    assert tasks[labels(queue="reports", status="RUNNING")] == 1
    assert tasks[labels(queue="default", status="FAILED")] == 2
    assert tasks[labels(queue="default", status="ABORTED")] == 0
    assert metrics["django_tasks_db_queue_depth"] == {
        labels(queue="default"): 0,
        labels(queue="emails"): 4,
        labels(queue="reports"): 0,
    }
    lag = metrics["django_tasks_db_queue_lag_seconds"]
    assert 59 < lag[labels(queue="emails")] < 90 and lag[labels(queue="default")] == 0
    assert metrics["django_tasks_db_queue_paused"][labels(queue="reports")] == 1
    assert metrics["django_tasks_db_queue_paused"][labels(queue="emails")] == 0
    # Live workers: the one serving emails, the stale one serving every queue.
    assert metrics["django_tasks_db_queue_workers"][labels(queue="emails")] == 2
    assert metrics["django_tasks_db_queue_workers"][labels(queue="default")] == 1
    assert metrics["django_tasks_db_workers"] == {
        labels(status="alive"): 1,
        labels(status="stale"): 1,
        labels(status="dead"): 1,
        labels(status="stopped"): 2,
    }
    finished = metrics["django_tasks_db_tasks_finished_last_5m"]
    assert finished[labels(queue="default", status="SUCCESSFUL")] == 1
    assert finished[labels(queue="default", status="FAILED")] == 1  # not the one 30 min ago
    assert finished[labels(queue="emails", status="FAILED")] == 0


def test_label_values_are_escaped(client, token) -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    TaskFactory(queue_name='we"ird\\queue\nname')
    text = scrape(client).content.decode()
    assert 'django_tasks_db_queue_depth{queue="we\\"ird\\\\queue\\nname"} 1\n' in text
    assert parse(text)["django_tasks_db_queue_depth"][labels(queue='we\\"ird\\\\queue\\nname')] == 1


def staff(*, is_staff: bool = True, permission: bool = True) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=is_staff)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="view_task"))
    return user


@pytest.mark.parametrize(
    ("user", "status"),
    [
        ({}, 200),
        ({"permission": False}, 403),
        ({"is_staff": False}, 403),
    ],
)
def test_staff_sessions_with_view_task(client, user, status) -> None:
    client.force_login(staff(**user))
    assert scrape(client, token=None).status_code == status


def test_a_superuser_may_read(admin_client) -> None:
    assert scrape(admin_client, token=None).status_code == 200


def test_the_bearer_token(client, token) -> None:
    assert scrape(client).status_code == 200
    assert scrape(client, token="wrong-token-0123456789").status_code == 403
    assert scrape(client, token=None).status_code == 403
    basic = client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 403
    assert client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_no_token_configured_means_no_bearer_access(client) -> None:
    assert scrape(client).status_code == 403
    assert scrape(client, token="None").status_code == 403


def test_the_backend_parameter(client, token) -> None:
    assert scrape(client, backend="default").status_code == 200
    assert scrape(client, backend="nope").status_code == 404
    # Without the token no one learns which backends exist.
    assert scrape(client, backend="nope", token=None).status_code == 403
    assert scrape(client, backend="nope", token="wrong-token-0123456789").status_code == 403
