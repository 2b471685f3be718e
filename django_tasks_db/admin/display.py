"""Small display helpers shared by the worker, schedule, queue and dashboard pages:
times to the second, times in a named zone, ages, badges, and the database's
clock read once per request."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from ..cron import InvalidCron, parse_zone
from ..db import database_time

#: What an empty cell shows (the admin's own empty value).
EMPTY = "-"
SECOND = "%Y-%m-%d %H:%M:%S"


def to_second(value: datetime | None) -> str:
    """An instant in the site's current time zone, to the second."""
    if value is None:
        return EMPTY
    return timezone.localtime(value).strftime(SECOND) if timezone.is_aware(value) else str(value)


def clock(value: datetime) -> str:
    """The time of day to the second when it is today (site time zone), else the full time."""
    local = timezone.localtime(value)
    if local.date() == timezone.localdate():
        return local.strftime("%H:%M:%S")
    return local.strftime(SECOND)


def in_zone(value: datetime | None, zone_name: str) -> str:
    """An instant on the wall clock of ``zone_name``, with the zone's name
    ("2026-11-23 02:30:00 Europe/Paris"); UTC when the name is not a zone."""
    if value is None:
        return EMPTY
    try:
        zone = parse_zone(zone_name)
    except InvalidCron:
        zone, zone_name = ZoneInfo("UTC"), "UTC"
    return f"{value.astimezone(zone).strftime(SECOND)} {zone_name}"


def age(seconds: float) -> str:
    """How long ago, in whole seconds while that reads well ("3 s ago")."""
    whole = int(seconds)
    if whole < 600:
        return _("%(n)d s ago") % {"n": whole}
    if whole < 7200:
        return _("%(n)d min ago") % {"n": whole // 60}
    if whole < 172800:
        return _("%(n)d h ago") % {"n": whole // 3600}
    return _("%(n)d days ago") % {"n": whole // 86400}


def duration(seconds: float) -> str:
    """A lag or a wait: "0 s", "42 s", "12 min 5 s", "3 h 20 min"."""
    whole = int(seconds)
    if whole < 120:
        return _("%(n)d s") % {"n": whole}
    if whole < 7200:
        return _("%(m)d min %(s)d s") % {"m": whole // 60, "s": whole % 60}
    if whole < 172800:
        return _("%(h)d h %(m)d min") % {"h": whole // 3600, "m": whole % 3600 // 60}
    return _("%(d)d days %(h)d h") % {"d": whole // 86400, "h": whole % 86400 // 3600}


def badge(text: str, kind: str, title: str = "") -> SafeString:
    """A coloured label; ``kind`` picks the colour (see dashboard.css)."""
    return format_html('<span class="tdb-badge tdb-{}" title="{}">{}</span>', kind, title, text)


def database_now(request: HttpRequest, using: str) -> datetime:
    """The database's clock, read once per request and database: every age on a
    page is measured against the same instant, the one heartbeats are written with."""
    cache: dict[str, datetime] = request.__dict__.setdefault("_django_tasks_db_now", {})
    if using not in cache:
        cache[using] = database_time(using)
    return cache[using]


if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _ModelAdminMixin = ModelAdmin[Any]  # what ReadOnlyPage is mixed into
else:
    _ModelAdminMixin = object


class ReadOnlyPage(_ModelAdminMixin):
    """A model admin whose object page shows and never saves: no Save buttons, and a
    POST is refused (it would write back the row as it was read, e.g. a worker's
    heartbeat and status). ``page_title`` names the page."""

    page_title: Any = ""  # a lazy translation

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST":
            return HttpResponseNotAllowed(["GET"])
        context = {
            "title": self.page_title,
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, context)
