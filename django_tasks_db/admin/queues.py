"""The Queue admin: which queues are paused, since when and by whom; pause and resume.

A queue needs no row to exist (the dashboard lists every known queue); a row is
written the first time someone pauses it. Nothing else on it is edited here.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from .. import control
from ..models import Queue
from .display import ReadOnlyPage, badge, to_second
from .generic import ModelAdmin


def pause_or_resume(request: HttpRequest, queues: list[tuple[str, str]], paused: bool) -> int:
    """Pause or resume (backend, queue) pairs as the signed-in user; how many changed.
    ``ControlError`` for an unknown queue or backend."""
    by = request.user.get_username()
    return sum(control.set_paused(name, paused, backend=alias, by=by) for alias, name in queues)


@admin.register(Queue)
class QueueAdmin(ReadOnlyPage, ModelAdmin[Queue]):
    page_title = gettext_lazy("Queue")

    list_display = ["name", "backend_name", "state", "changed", "changed_by"]
    list_filter = ["paused", "backend_name"]
    search_fields = ["name"]
    actions = ["pause", "resume"]
    fields = readonly_fields = ("name", "backend_name", "state", "changed", "changed_by")

    class Media:
        css = {"all": ["django_tasks_db/dashboard.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Queue | None = None) -> bool:
        """Deleting a row would resume its queue behind everyone's back: resume instead."""
        return False

    @admin.display(description=gettext_lazy("State"), ordering="paused")
    def state(self, queue: Queue) -> str:
        return badge(_("paused"), "warn") if queue.paused else badge(_("running"), "ok")

    @admin.display(description=gettext_lazy("Changed"), ordering="changed_at")
    def changed(self, queue: Queue) -> str:
        return to_second(queue.changed_at)

    @admin.action(description=gettext_lazy("Pause selected queues"), permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        """Workers stop claiming from them within POLL_INTERVAL; running tasks finish."""
        self._set(request, queryset, paused=True)

    @admin.action(description=gettext_lazy("Resume selected queues"), permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        self._set(request, queryset, paused=False)

    def _set(self, request: HttpRequest, queryset: QuerySet[Queue], paused: bool) -> None:
        rows = [(q.backend_name, q.name) for q in queryset]
        try:
            changed = pause_or_resume(request, rows, paused)
        except control.ControlError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        if paused:
            text = ngettext("%(n)d queue paused.", "%(n)d queues paused.", changed)
        else:
            text = ngettext("%(n)d queue resumed.", "%(n)d queues resumed.", changed)
        self.message_user(request, text % {"n": changed}, messages.SUCCESS)
