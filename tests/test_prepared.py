"""``db.PreparedStatement`` and ``db.inline_parameters``: PostgreSQL parses and plans
the claim (and the batched success) once per connection, and a statement the
session lost (DEALLOCATE, DISCARD ALL, a new connection) is prepared again."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_tasks_db.db import PreparedStatement, inline_parameters, prepares_statements
from tests.test_refused_outcomes import tasks_setting

pytestmark = pytest.mark.django_db(transaction=True)

KEEP = object()


@pytest.fixture
def postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PREPARE is PostgreSQL's")


def run(statement: PreparedStatement, *params: Any) -> tuple[list[Any], list[str]]:
    """The statement's rows, and the first word of each query sent to run it."""
    with CaptureQueriesContext(connection) as sent, connection.cursor() as cursor:
        statement.execute(connection, cursor, list(params))
        rows = cursor.fetchall()
    return rows, [query["sql"].split()[0] for query in sent.captured_queries]


def test_inline_parameters_keeps_only_what_varies(postgresql: None) -> None:
    sql, kept = inline_parameters(
        connection,
        "SELECT %s, %s WHERE 'a' LIKE %s AND 50 %% 7 = 1",
        [KEEP, "it's", "%a%"],
        keep=lambda value: value is KEEP,
    )
    assert kept == [KEEP]
    assert sql.count("%s") == 1 and "'it''s'" in sql and "'%%a%%'" in sql and "50 %% 7" in sql
    with connection.cursor() as cursor:
        cursor.execute(sql, [7])
        assert cursor.fetchone() == (7, "it's")
    with pytest.raises(ValueError, match="more parameters"):
        inline_parameters(connection, "SELECT %s", [1, 2], keep=lambda value: False)


def test_a_statement_is_prepared_once_then_executed(postgresql: None) -> None:
    statement = PreparedStatement("SELECT %s + 1, 'x%%s%%'")  # a literal %s is no parameter
    assert run(statement, 1) == ([(2, "x%s%")], ["PREPARE", "EXECUTE"])
    assert run(statement, 2) == ([(3, "x%s%")], ["EXECUTE"])


def test_it_is_prepared_again_when_the_session_lost_it(postgresql: None) -> None:
    statement = PreparedStatement("SELECT %s * 2")
    run(statement, 1)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as PgBouncer's server_reset_query may
    assert run(statement, 2) == ([(4,)], ["EXECUTE", "PREPARE", "EXECUTE"])
    connection.close()  # a new connection holds nothing
    assert run(statement, 3) == ([(6,)], ["PREPARE", "EXECUTE"])


def test_in_a_transaction_a_lost_statement_fails_and_is_prepared_next_time(
    postgresql: None,
) -> None:
    statement = PreparedStatement("SELECT %s - 1")
    run(statement, 1)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with pytest.raises(DatabaseError), transaction.atomic():
        run(statement, 2)
    assert run(statement, 3) == ([(2,)], ["PREPARE", "EXECUTE"])


@pytest.mark.parametrize("off", ["LISTEN_NOTIFY", "prepare_threshold"])
def test_it_is_sent_whole_where_prepared_statements_are_off(postgresql: None, off: str) -> None:
    """PgBouncer in transaction mode keeps no statement for a client: this app's
    ``LISTEN_NOTIFY`` False, or psycopg's ``prepare_threshold`` None set by hand."""
    statement = PreparedStatement("SELECT %s + 10")
    original = connection.settings_dict
    if off == "LISTEN_NOTIFY":
        context = override_settings(TASKS=tasks_setting(LISTEN_NOTIFY=False))
    else:
        options = {**original.get("OPTIONS", {}), "prepare_threshold": None}
        connection.settings_dict = {**original, "OPTIONS": options}
        context = override_settings()
    try:
        with context:
            assert not prepares_statements(connection)
            assert run(statement, 1) == ([(11,)], ["SELECT"])
    finally:
        connection.settings_dict = original
    assert prepares_statements(connection)


def test_threads_share_a_statement_each_on_its_own_connection(postgresql: None) -> None:
    """The worker's thread and its outcome timer write successes with the same
    statement, each on its connection: each prepares it once."""
    import threading

    from django.db import connections

    statement = PreparedStatement("SELECT %s * 3")
    seen: list[Any] = []

    def other() -> None:
        try:
            seen.extend(run(statement, 2))
            seen.extend(run(statement, 3))
        finally:
            connections.close_all()

    assert run(statement, 1) == ([(3,)], ["PREPARE", "EXECUTE"])
    thread = threading.Thread(target=other)
    thread.start()
    thread.join(30)
    assert seen == [[(6,)], ["PREPARE", "EXECUTE"], [(9,)], ["EXECUTE"]]
    assert run(statement, 4) == ([(12,)], ["EXECUTE"])  # not prepared twice here
