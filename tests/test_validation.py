"""The rules for values people give us (validation.py), written once."""

from __future__ import annotations

import pytest
from django.utils import translation

from django_tasks_db import validation


@pytest.mark.parametrize(
    ("value", "positive", "time_limit", "delay"),
    [
        (1, True, True, True),
        (0.5, True, True, True),
        (0, False, False, True),
        (-1, False, False, False),
        (True, False, False, False),
        (float("inf"), False, False, False),
        (float("nan"), False, False, False),
        (validation.MAX_DELAY_SECONDS + 1, True, False, False),
        ("5", False, False, False),
    ],
)
def test_one_rule_for_seconds(value: object, positive: bool, time_limit: bool, delay: bool) -> None:
    """Options, task options and Snooze all ask here (one rule, one place)."""
    assert validation.is_positive_number(value) is positive
    assert validation.is_time_limit(value) is time_limit
    assert validation.is_delay(value) is delay


@pytest.mark.parametrize(
    ("queue", "priority", "field"),
    [
        ("default", 0, None),
        ("nope", 0, "queue_name"),
        ("default", 101, "priority"),
        ("default", True, "priority"),
        (None, None, None),
    ],
)
def test_one_rule_for_placement(queue: str | None, priority: object, field: str | None) -> None:
    problem = validation.placement_problem(queue, priority, ["default"], "default")
    assert (problem[0] if problem else None) == field


def test_seconds_problems_name_the_setting() -> None:
    assert validation.seconds_problem("POLL_INTERVAL", 1) is None
    assert validation.seconds_problem("POLL_INTERVAL", 0) == (
        "POLL_INTERVAL must be a positive number of seconds, not 0."
    )


def test_placement_messages_follow_the_active_language() -> None:
    with translation.override("en"):
        _, message = validation.placement_problem("nope", 0, ["default"], "default")  # type: ignore[misc]
    assert message == "Queue 'nope' is not valid for backend 'default' (QUEUES: default)."
