"""The Task admin: the list, the task page, operator actions and enqueueing.

Viewing needs ``view_task``; ``retry``, ``cancel`` and ``abort`` need ``change_task``;
``run_again`` and enqueueing need ``add_task``. Nothing on a task is edited by hand:
its page is read-only and every change goes through ``control``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .. import control
from ..db import DatabaseNow, LastItemText, database_time
from ..models import Task, TaskStatus
from . import task_actions, task_page
from . import task_display as display
from .forms import EnqueueForm
from .generic import ModelAdmin
from .pagination import EstimatedCountPaginator
from .task_actions import ACTIONS
from .task_dates import date_hierarchy
from .task_filters import QueueFilter, TaskPathFilter, WorkerFilter, search

#: A task in one of these states shows its last error as the reason it ended.
ENDED_BADLY = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.ABORTED})

#: Columns the list never shows: not read for it (a log alone may be 64 KiB a row).
HEAVY_COLUMNS = ("args", "kwargs", "return_value", "errors", "log", "progress", "worker_ids")


class TaskChangeList(ChangeList):
    """The list reads what it shows and no more: no heavy JSON or log columns, the
    last error's class computed by the database, and the database's clock for the
    running time of running tasks."""

    def get_queryset(
        self, request: HttpRequest, exclude_parameters: list[str | None] | None = None
    ) -> QuerySet[Task]:
        queryset: QuerySet[Task] = super().get_queryset(request, exclude_parameters)
        return queryset.defer(*HEAVY_COLUMNS).annotate(
            last_error_path=LastItemText("errors", "exception_class_path"),
            database_now=DatabaseNow(),
        )

    @cached_property
    def probed_date_hierarchy(self) -> dict[str, Any]:
        return date_hierarchy(self)


@admin.register(Task)
class TaskAdmin(ModelAdmin[Task]):
    list_display = [
        "short_id",
        "name",
        "queue",
        "priority",
        "status_badge",
        "attempts_made",
        "worker_link",
        "enqueued",
        "started",
        "finished",
        "duration",
        "error_class",
    ]
    list_display_links = ["short_id"]
    list_filter = [
        "status",
        QueueFilter,
        TaskPathFilter,
        WorkerFilter,
        ("finished_at", admin.DateFieldListFilter),
        ("enqueued_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["worker"]
    empty_value_display = "—"
    search_fields = ["task_path"]  # shows the box; get_search_results does the work
    search_help_text = _(
        "A task id (whole, or its first 8 or more characters) or part of a task's path."
    )
    date_hierarchy = "enqueued_at"
    show_full_result_count = False
    # Facet counts are a COUNT per filter choice over the whole list: millions of rows.
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    actions = ["retry", "cancel", "abort", "run_again"]
    change_list_template = "admin/django_tasks_db/task/change_list.html"

    class Media:
        css = {"all": ["django_tasks_db/tasks.css", "django_tasks_db/breadcrumbs.css"]}
        js = ["django_tasks_db/tasks.js"]

    # -- the list ------------------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": _("Tasks"), **(extra_context or {})})

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Task], search_term: str
    ) -> tuple[QuerySet[Task], bool]:
        return search(queryset, search_term), False

    @admin.display(description=_("id"), ordering="id")
    def short_id(self, task: Task) -> SafeString:
        return format_html('<code title="{}">{}</code>', task.pk, display.short_id(task))

    @admin.display(description=_("task"), ordering="task_path")
    def name(self, task: Task) -> SafeString:
        return format_html(
            '<span title="{}">{}</span>', task.task_path, display.task_name(task.task_path)
        )

    @admin.display(description=_("queue"), ordering="queue_name")
    def queue(self, task: Task) -> str:
        return task.queue_name

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, task: Task) -> SafeString:
        return display.status_badge(task.status)

    @admin.display(description=_("attempts"), ordering="attempts")
    def attempts_made(self, task: Task) -> str:
        return display.attempts_text(task)

    @admin.display(description=_("worker"), ordering="worker__name")
    def worker_link(self, task: Task) -> SafeString | str:
        if task.worker is None:
            return "—"
        url = reverse("admin:django_tasks_db_worker_change", args=[task.worker.pk])
        return format_html('<a href="{}">{}</a>', url, task.worker.name)

    @admin.display(description=_("enqueued"), ordering="enqueued_at")
    def enqueued(self, task: Task) -> SafeString | str:
        return display.show_time(task.enqueued_at)

    @admin.display(description=_("started"), ordering="started_at")
    def started(self, task: Task) -> SafeString | str:
        return display.show_time(task.started_at)

    @admin.display(description=_("finished"), ordering="finished_at")
    def finished(self, task: Task) -> SafeString | str:
        return display.show_time(task.finished_at)

    @admin.display(description=_("duration"))
    def duration(self, task: Task) -> str:
        return display.show_duration(display.duration(task, getattr(task, "database_now", None)))

    @admin.display(description=_("error"))
    def error_class(self, task: Task) -> SafeString | str:
        path = getattr(task, "last_error_path", None)
        if not path:
            return ""
        # An earlier attempt's error on a task that went on: shown, but quietly.
        past = "" if task.status in ENDED_BADLY else " dtdb-past-error"
        return format_html(
            '<span class="dtdb-error{}" title="{}">{}</span>', past, path, display.class_name(path)
        )

    # -- actions, in bulk on the list and one at a time on the page -----------------------

    @admin.action(description=_("Retry the selected tasks"), permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self.perform(request, "retry", queryset)

    @admin.action(description=_("Cancel the selected tasks"), permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self.perform(request, "cancel", queryset)

    @admin.action(description=_("Abort the selected tasks"), permissions=["change"])
    def abort(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self.perform(request, "abort", queryset)

    @admin.action(description=_("Run the selected tasks again"), permissions=["add"])
    def run_again(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self.perform(request, "run_again", queryset)

    def may(self, request: HttpRequest, action: str, task: Task | None = None) -> bool:
        if ACTIONS[action].permission == "add":
            return self.has_add_permission(request)
        return self.has_change_permission(request, task)

    def perform(
        self, request: HttpRequest, action: str, rows: QuerySet[Task] | list[Task]
    ) -> list[str]:
        """Run ``action`` on ``rows`` and say what happened in a message; return the
        ids of the tasks ``run_again`` enqueued."""
        if isinstance(rows, QuerySet):
            # run_again needs the arguments the list skips; the others only the ids (a
            # "select all" of a million rows must not read a million logs).
            rows = list(
                rows.defer(None) if action == "run_again" else rows.select_related(None).only("pk")
            )
        outcome = task_actions.perform(action, rows)
        level = messages.SUCCESS if outcome.done and not outcome.skipped else messages.WARNING
        self.message_user(request, outcome.message(), level)
        return outcome.new_ids

    # -- the task page, its actions and its live view -----------------------------------

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/live.json",
                self.admin_site.admin_view(self.live_view),
                name="django_tasks_db_task_live",
            ),
            path(
                "<path:object_id>/do/<str:action>/",
                self.admin_site.admin_view(self.action_view),
                name="django_tasks_db_task_action",
            ),
        ]
        return own + super().get_urls()

    def page_url(self, task_id: object) -> str:
        return reverse("admin:django_tasks_db_task_change", args=[quote(str(task_id))])

    def viewable(self, request: HttpRequest, object_id: str) -> Task:
        task = self.get_object(request, unquote(object_id))
        if task is None:
            raise Http404(_("No task with id %(id)s.") % {"id": object_id})
        if not self.has_view_or_change_permission(request, task):
            raise PermissionDenied
        return task

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The read-only task page (there is nothing to save: no form, no Save button)."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        task = self.get_object(request, unquote(object_id))
        if task is None:
            self.message_user(
                request, _("No task with id %(id)s.") % {"id": object_id}, messages.WARNING
            )
            return HttpResponseRedirect(reverse("admin:django_tasks_db_task_changelist"))
        if not self.has_view_or_change_permission(request, task):
            raise PermissionDenied
        now = database_time(task._state.db or "default")
        actions = [
            {
                "name": name,
                "label": ACTIONS[name].label,
                "url": self.action_url(task, name),
            }
            for name in control.actions_for(task)
            if self.may(request, name, task)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Task %(id)s") % {"id": display.short_id(task)},
            "subtitle": task.task_path,
            "task": task,
            "original": task,
            "name": display.task_name(task.task_path),
            "status": display.status_badge(task.status),
            "waiting": control.why_waiting(task, now),
            "attempts_text": display.attempts_text(task),
            "times": task_page.times(task, now),
            "attempts": task_page.attempts(task),
            "errors_unreadable": task_page.unreadable(task.errors),
            "args_json": task_page.pretty_json(task.args),
            "kwargs_json": task_page.pretty_json(task.kwargs),
            "has_result": task.status == TaskStatus.SUCCESSFUL,
            "result_json": task_page.pretty_json(task.return_value),
            "progress": task_page.progress(task),
            "abort_requested": display.show_time(task.abort_requested_at),
            "worker_url": reverse("admin:django_tasks_db_worker_change", args=[task.worker.pk])
            if task.worker
            else None,
            "live_url": reverse("admin:django_tasks_db_task_live", args=[quote(str(task.pk))])
            if task.status in task_page.LIVE_STATUSES
            else None,
            "task_actions": actions,
            "has_delete_permission": self.has_delete_permission(request, task),
            "media": self.media,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_tasks_db/task/task_page.html", context)

    def action_url(self, task: Task, action: str) -> str:
        return reverse("admin:django_tasks_db_task_action", args=[quote(str(task.pk)), action])

    def action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponseBase:
        """A button of the task page (POST only, CSRF-protected by ``admin_view``)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if action not in ACTIONS:
            raise Http404(_("No action %(action)s.") % {"action": action})
        task = self.viewable(request, object_id)
        if not self.may(request, action, task):
            raise PermissionDenied
        if action not in control.actions_for(task):
            self.message_user(
                request,
                _("%(action)s does not apply to a task that is %(status)s.")
                % {
                    "action": ACTIONS[action].label,
                    "status": task.get_status_display(),
                },
                messages.WARNING,
            )
            return HttpResponseRedirect(self.page_url(task.pk))
        new_ids = self.perform(request, action, [task])
        return HttpResponseRedirect(self.page_url(new_ids[0] if new_ids else task.pk))

    def live_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """A running task's log, progress and state, for its page to refresh itself."""
        return JsonResponse(task_page.live_payload(self.viewable(request, object_id)))

    # -- enqueueing ------------------------------------------------------------------------

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The "Enqueue a task" page: the list's add button leads here."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = EnqueueForm(request.POST)
            if form.is_valid() and (result := form.enqueue()) is not None:
                self.message_user(
                    request,
                    _("Enqueued %(task)s as task %(id)s.")
                    % {"task": result.task.name, "id": str(result.id)[:8]},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self.page_url(result.id))
        else:
            wanted = {k: v for k, v in request.GET.items() if k in EnqueueForm.base_fields}
            form = EnqueueForm(initial=wanted)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Enqueue a task"),
            "form": form,
            # The admin's own fieldset template lays the fields out: each Django's markup.
            # (The stubs ask for a ModelForm; the layout needs only fields.)
            "adminform": helpers.AdminForm(
                form,  # type: ignore[arg-type]
                [(None, {"fields": list(form.fields)})],
                {},
            ),
            "media": self.media + form.media,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_tasks_db/task/enqueue.html", context)
