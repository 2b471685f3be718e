"""Views a project mounts in its own URLconf (the admin pages live in ``admin``).

``metrics``: the queue's figures for Prometheus, e.g. ``path("metrics", metrics)``.
"""

from __future__ import annotations

import hmac

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from .control import ControlError, backend_for
from .metrics import CONTENT_TYPE, render

#: The permission a staff session needs to read the metrics.
VIEW_PERMISSION = "django_tasks_db.view_task"


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, computed from the database now. ``?backend=ALIAS`` picks
    the TASKS backend (default ``default``). Readable with ``Authorization: Bearer
    <METRICS_TOKEN>`` or by a staff session with ``view_task``; 403 for anyone else."""
    try:
        backend = backend_for(request.GET.get("backend", "default"))
    except ControlError as exc:
        # Only a reader learns which backends exist; anyone else gets the same 403.
        if not may_read(request, default_token()):
            return forbidden()
        raise Http404(str(exc)) from exc
    if not may_read(request, backend.config.metrics_token):
        return forbidden()
    response = HttpResponse(render(backend), content_type=CONTENT_TYPE)
    add_never_cache_headers(response)
    return response


def forbidden() -> HttpResponse:
    text = _(
        "Send 'Authorization: Bearer <METRICS_TOKEN>' or log in as staff with %(permission)s."
    ) % {"permission": VIEW_PERMISSION}
    return HttpResponseForbidden(text + "\n", content_type="text/plain; charset=utf-8")


def default_token() -> str | None:
    """The default backend's METRICS_TOKEN (None when it is not this app's backend)."""
    try:
        return backend_for("default").config.metrics_token
    except ControlError:
        return None


def may_read(request: HttpRequest, token: str | None) -> bool:
    """A bearer ``token`` (never when unset), or a staff session with view_task."""
    if bearer_matches(request, token):
        return True
    user = getattr(request, "user", None)
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_staff
        and user.has_perm(VIEW_PERMISSION)
    )


def bearer_matches(request: HttpRequest, token: str | None) -> bool:
    """Whether the request brings ``token`` as a bearer token (never when it is unset)."""
    if not token:
        return False
    scheme, _sep, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
