"""A view that enqueues inside a transaction, as a project's views do
(tests/two_databases.py calls it with the queue in its own database)."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from .tasks import record_run


def enqueue_record_run(request: HttpRequest) -> JsonResponse:
    """Enqueue ``record_run(key)`` inside ``transaction.atomic(using=<atomic>)``;
    ``?fail=1`` then rolls that transaction back, as a view that raises would."""
    using = request.GET["atomic"]
    with transaction.atomic(using=using):
        result = record_run.enqueue(request.GET["key"])
        rolled_back = request.GET.get("fail") == "1"
        if rolled_back:
            transaction.set_rollback(True, using=using)
    return JsonResponse({"id": result.id, "rolled_back": rolled_back})
