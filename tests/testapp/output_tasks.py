"""Tasks that print, one of each kind (plain, async, with context), for the log capture tests."""

from __future__ import annotations

from django_tasks_db import task
from django_tasks_db.framework import TaskContext


@task
def say(text: str) -> str:
    print(text)
    return text


@task
async def async_say(text: str) -> str:
    print(text)
    return text


@task(takes_context=True)
def context_say(context: TaskContext, text: str) -> str:
    print(text)
    return text
