"""Cron expressions in words (``django_tasks_db.cron_text``)."""

import pytest

from django_tasks_db.cron_text import describe


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("*/1 * * * *", "every minute"),
        ("0 * * * *", "every hour, on the hour"),
        ("15 * * * *", "every hour at minute 15"),
        ("0,30 * * * *", "every hour at minutes 0 and 30"),
        ("0 */2 * * *", "every 2 hours, on the hour"),
        ("30 */3 * * *", "every 3 hours at minute 30"),
        ("30 2 * * *", "at 02:30 every day"),
        ("30 8,20 * * *", "at 08:30 and 20:30 every day"),
        ("0 9 * * 1-5", "at 09:00 Monday to Friday"),
        ("0 9 * * MON-FRI", "at 09:00 Monday to Friday"),
        ("0 9 * * 1", "at 09:00 on Monday"),
        ("0 9 * * 1,3,5", "at 09:00 on Monday, Wednesday and Friday"),
        ("0 9 * * 6,0", "at 09:00 on Saturday and Sunday"),
        ("0 0 * * 7", "at 00:00 on Sunday"),
        ("0 9-17 * * *", "every hour from 09:00 to 17:00"),
        ("*/15 9-17 * * 1-5", "every 15 minutes from 09:00 to 17:59 Monday to Friday"),
        ("0 0 1 * *", "at 00:00 on day 1 of every month"),
        ("0 0 1,15 * *", "at 00:00 on days 1 and 15 of every month"),
        ("0 0 1 1 *", "at 00:00 on 1 January"),
        ("0 0 1 1,7 *", "at 00:00 on day 1 of January and July"),
        ("0 12 * JAN *", "at 12:00 every day in January"),
        ("*/5 * * 1 *", "every 5 minutes in January"),
        ("@daily", "at 00:00 every day"),
        ("@hourly", "every hour, on the hour"),
        ("@weekly", "at 00:00 on Sunday"),
        ("@monthly", "at 00:00 on day 1 of every month"),
        ("@yearly", "at 00:00 on 1 January"),
        ("* * * * * */10", "every 10 seconds"),
        ("* * * * * *", "every second"),
        ("* * * * * 0,30", "at seconds 0 and 30 of every minute"),
        ("*/5 9-11,14-16 * * *", "every 5 minutes during hours 9 to 11 and 14 to 16"),
        ("0 9-11,14-16 * * *", "at 09:00, 10:00, 11:00, 14:00, 15:00 and 16:00 every day"),
    ],
)
def test_common_shapes_read_as_words(expression: str, words: str) -> None:
    assert describe(expression) == words


@pytest.mark.parametrize(
    ("expression", "fields"),
    [
        ("0 0 L * *", "minute 0, hour 0, day of month L, month *, day of week *"),
        ("5/7 * * * *", "minute 5/7, hour *, day of month *, month *, day of week *"),
        # A day of the month *and* a weekday: cron runs on either, too subtle for words.
        ("0 0 1 * 1", "minute 0, hour 0, day of month 1, month *, day of week 1"),
        ("61 * * * *", "minute 61, hour *, day of month *, month *, day of week *"),
        ("*/0 * * * *", "minute */0, hour *, day of month *, month *, day of week *"),
        ("5-1 * * * *", "minute 5-1, hour *, day of month *, month *, day of week *"),
        ("* * */2 * *", "minute *, hour *, day of month */2, month *, day of week *"),
        ("0 9 * */2 *", "minute 0, hour 9, day of month *, month */2, day of week *"),
        (
            "0 0 1 * * 30",
            "minute 0, hour 0, day of month 1, month *, day of week *, second 30",
        ),
    ],
)
def test_what_it_cannot_say_falls_back_to_the_fields(expression: str, fields: str) -> None:
    assert describe(expression) == fields


@pytest.mark.parametrize("expression", ["", "not a cron", "1 2 3", None])
def test_nonsense_never_raises(expression) -> None:
    assert "not understood" in describe(expression)
