"""Views that enqueue inside the request's transaction and show results."""

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from django_tasks_db.framework import TaskResultDoesNotExist, default_task_backend
from django_tasks_db.models import Task

from . import tasks


class RolledBack(Exception):
    """Raised on purpose to roll back the enqueue transaction."""


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            with transaction.atomic():
                result = _enqueue(request.POST)
                if request.POST.get("rollback"):
                    raise RolledBack
        except RolledBack:
            messages.info(request, f"Rolled back: task {result.id} was never committed.")
            return redirect("demo:index")
        except ValueError as exc:  # a bad number, or django.tasks' InvalidTask
            messages.error(request, f"Not enqueued: {exc}")
            return redirect("demo:index")
        return redirect("demo:result", task_id=result.id)
    recent = Task.objects.order_by("-enqueued_at")[:20]
    return render(request, "demo/index.html", {"recent": recent})


def _enqueue(data):  # type: ignore[no-untyped-def]
    match data.get("task"):
        case "add":
            return tasks.add.enqueue(int(data.get("a", 0)), int(data.get("b", 0)))
        case "slow_squares":
            return tasks.slow_squares.enqueue(int(data.get("n", 10)))
        case "greet":
            return tasks.greet.enqueue(data.get("name") or "world")
        case "always_fails":
            return tasks.always_fails.enqueue("on purpose")
    raise ValueError(f"unknown task {data.get('task')!r}")


def result(request: HttpRequest, task_id: str) -> HttpResponse:
    try:
        task_result = default_task_backend.get_result(task_id)
    except TaskResultDoesNotExist:
        raise Http404(f"No task {task_id}") from None
    row = Task.objects.get(pk=task_id)
    return render(request, "demo/result.html", {"result": task_result, "row": row})
