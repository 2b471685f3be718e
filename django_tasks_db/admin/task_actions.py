"""The operator actions of the task admin: what each is called, which permission it
needs, how it reports. They run through ``control``, as ``manage.py tasks`` does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from .. import control
from ..models import Task
from .task_display import short_id


@dataclass(frozen=True)
class Action:
    label: Any
    #: The ModelAdmin permission it needs: "change" or "add".
    permission: str
    done: Any
    skipped: Any


ACTIONS: dict[str, Action] = {
    "retry": Action(
        _("Retry"),
        "change",
        ngettext_lazy("%(count)d task retried", "%(count)d tasks retried", "count"),
        ngettext_lazy(
            "%(count)d was not in a retryable state",
            "%(count)d were not in a retryable state",
            "count",
        ),
    ),
    "cancel": Action(
        _("Cancel"),
        "change",
        ngettext_lazy("%(count)d task cancelled", "%(count)d tasks cancelled", "count"),
        ngettext_lazy("%(count)d was not ready", "%(count)d were not ready", "count"),
    ),
    "abort": Action(
        _("Abort"),
        "change",
        ngettext_lazy("%(count)d task aborted", "%(count)d tasks aborted", "count"),
        ngettext_lazy("%(count)d had already finished", "%(count)d had already finished", "count"),
    ),
    "run_again": Action(
        _("Run again"),
        "add",
        ngettext_lazy("%(count)d task enqueued again", "%(count)d tasks enqueued again", "count"),
        ngettext_lazy(
            "%(count)d could not be enqueued", "%(count)d could not be enqueued", "count"
        ),
    ),
}


@dataclass
class Outcome:
    action: str
    done: int
    total: int
    new_ids: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return self.total - self.done

    def message(self) -> str:
        """``2 tasks retried; 1 was not in a retryable state.``"""
        spec = ACTIONS[self.action]
        text = str(spec.done % {"count": self.done})
        if self.skipped:
            text += "; " + str(spec.skipped % {"count": self.skipped})
        if self.problems:
            text += " (" + "; ".join(self.problems[:5]) + ")"
        return text + "."


def perform(action: str, rows: Sequence[Task]) -> Outcome:
    """Apply ``action`` to ``rows``; rows it does not apply to are left alone."""
    if action == "retry":
        return Outcome(action, control.retry(rows), len(rows))
    if action == "cancel":
        return Outcome(action, control.cancel(rows), len(rows))
    if action == "abort":
        return Outcome(action, control.abort(rows), len(rows))
    if action != "run_again":
        raise ValueError(f"No action {action!r}.")
    outcome = Outcome(action, 0, len(rows))
    for row in rows:  # one by one: a task whose code is gone fails alone
        try:
            outcome.new_ids += [str(result.id) for result in control.run_again([row])]
        except control.ControlError as exc:
            outcome.problems.append(f"{short_id(row)}: {exc}")
    outcome.done = len(outcome.new_ids)
    return outcome
