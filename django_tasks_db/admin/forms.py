"""The admin's "Enqueue a task" form. It checks what a form can (a task the project
defines, a known queue, JSON, the priority range); ``control.enqueue`` then validates
the arguments against the task's signature before anything is written."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import control
from ..framework import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskResult

#: Which field an error of the task API belongs to, by the start of its message
#: (those messages are not translated; ``control``'s own errors name their field).
_FIELD_OF_ERROR = {
    "args": "args",
    "kwargs": "kwargs",
    "priority": "priority",
    "run_after": "run_after",
}
_FIELDS = {"task", "args", "kwargs", "queue", "priority", "run_after"}


def field_of(exc: control.ControlError) -> str | None:
    """The form field an error of ``control.enqueue`` is about (None: the whole form)."""
    if exc.field is not None:
        return exc.field if exc.field in _FIELDS else None
    text = str(exc)
    return next((f for prefix, f in _FIELD_OF_ERROR.items() if text.startswith(prefix)), None)


def _priority_help() -> str:
    """Filled in when shown, in the language of the moment (a lazy string's ``%``
    would translate it once, at import)."""
    return gettext("From %(low)d to %(high)d; empty: the task's own.") % {
        "low": TASK_MIN_PRIORITY,
        "high": TASK_MAX_PRIORITY,
    }


class EnqueueForm(forms.Form):
    required_css_class = "required"

    task = forms.ChoiceField(label=_("Task"), help_text=_("A task the project defines."))
    args = forms.CharField(
        label=_("Arguments"),
        required=False,
        initial="[]",
        widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField dtdb-json"}),
        help_text=_('A JSON list, e.g. [1, "two"].'),
    )
    kwargs = forms.CharField(
        label=_("Keyword arguments"),
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField dtdb-json"}),
        help_text=_('A JSON object, e.g. {"report_id": 42}.'),
    )
    queue = forms.ChoiceField(label=_("Queue"), required=False)
    priority = forms.IntegerField(
        label=_("Priority"),
        required=False,
        min_value=TASK_MIN_PRIORITY,
        max_value=TASK_MAX_PRIORITY,
        help_text=lazy(_priority_help, str)(),
    )
    run_after = forms.DateTimeField(
        label=_("Run after"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}),
        help_text=_("Optional: not before this time (in the site's time zone)."),
    )

    def __init__(self, *args: Any, backend: str = "default", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend
        tasks = control.project_tasks()
        task_field = self.fields["task"]
        assert isinstance(task_field, forms.ChoiceField)
        task_field.choices = [("", "---------")] + [
            (path, f"{path} ({task.queue_name})") for path, task in tasks.items()
        ]
        try:
            queues = control.known_queues(control.backend_for(backend))
        except control.ControlError:
            queues = []
        queue_field = self.fields["queue"]
        assert isinstance(queue_field, forms.ChoiceField)
        queue_field.choices = [("", _("The task's own queue"))] + [(q, q) for q in queues]

    def clean_args(self) -> object:
        return self._json("args", [])

    def clean_kwargs(self) -> object:
        return self._json("kwargs", {})

    def _json(self, name: str, default: object) -> object:
        try:
            return control.parse_json(self.cleaned_data.get(name), name, default)
        except control.ControlError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def enqueue(self) -> TaskResult[..., Any] | None:
        """Enqueue the valid form's task; None (and the reason as a form error) when
        ``control.enqueue`` refuses it, in which case nothing was written."""
        data = self.cleaned_data
        try:
            return control.enqueue(
                data["task"],
                data["args"],
                data["kwargs"],
                backend=self.backend,
                queue=data["queue"] or None,
                priority=data["priority"],
                run_after=data["run_after"],
            )
        except control.ControlError as exc:
            self.add_error(field_of(exc), str(exc))
            return None
