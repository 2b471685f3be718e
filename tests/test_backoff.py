"""The package's one doubling wait."""

from __future__ import annotations

import pytest

from django_tasks_db.backoff import Backoff


def test_doubles_up_to_the_cap_and_starts_over_on_reset() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


@pytest.mark.parametrize(("initial", "cap"), [(0, 1), (-1, 1), (2, 1)])
def test_refuses_a_wait_that_cannot_grow(initial: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < initial <= cap"):
        Backoff(initial, cap)
