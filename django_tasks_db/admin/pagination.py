"""The task list's paginator: on PostgreSQL a large list is counted by the query
planner's estimate, not by a ``COUNT(*)`` that reads millions of rows for every
page shown. A list the planner thinks small is counted, but never past the
threshold: a wrong estimate (a ``LIKE`` search) cannot bring the full count back.
Databases without a cheap estimate count exactly, as Django does."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import QuerySet
from django.utils.formats import number_format
from django.utils.functional import cached_property

from ..db import estimated_count
from .generic import Paginator

_T = TypeVar("_T")

#: Above this many rows (estimated) the list shows an estimate, not a count.
ESTIMATE_ABOVE = 10_000


class EstimatedCountPaginator(Paginator[_T]):
    #: True when ``count`` is not exact (the list says "about" or "more than").
    estimated = False
    #: True when ``count`` is only known to be above ``ESTIMATE_ABOVE``.
    at_least = False

    @cached_property
    def count(self) -> int:
        objects: Any = self.object_list
        estimate = estimated_count(objects) if isinstance(objects, QuerySet) else None
        if estimate is None:
            return int(super().count)
        if estimate > ESTIMATE_ABOVE:
            self.estimated = True
            return estimate
        # COUNT(*) over a LIMIT subquery: reads at most ESTIMATE_ABOVE + 1 rows.
        counted = int(objects.order_by().values("pk")[: ESTIMATE_ABOVE + 1].count())
        if counted > ESTIMATE_ABOVE:
            self.estimated = self.at_least = True
        return counted

    @property
    def shown_count(self) -> str:
        """The count as the list shows it, grouped by thousands (``1,000,000``)."""
        shown = ESTIMATE_ABOVE if self.at_least else self.count
        return str(number_format(shown, force_grouping=True))
