"""Pure text helpers of the command line: durations written back, the line of an error."""

from __future__ import annotations

import traceback

import pytest

from sqla_jobqueue.cli.output import error_line
from sqla_jobqueue.cli.params import MAX_DURATION, duration_text, parse_duration


@pytest.mark.parametrize("text", ["2s", "250ms", "1m", "1h30m", "7d", "1d2h3m4s5ms", "36600d"])
def test_duration_text_is_read_back_as_the_same_duration(text: str) -> None:
    assert duration_text(parse_duration(text)) == text


def test_durations_stop_at_a_hundred_years() -> None:
    assert parse_duration("36600d") == MAX_DURATION
    for text in ("36601d", "100000000d", "9" * 400 + "w"):
        with pytest.raises(ValueError, match="at most 36600d"):
            parse_duration(text)


class FeedError(Exception):
    pass


def test_error_line_is_the_exception_a_traceback_ends_with() -> None:
    try:
        try:
            missing: dict[str, int] = {}
            missing["feed"]
        except KeyError as cause:
            raise FeedError("feed 7 answered 500\nbody: <html>") from cause
    except FeedError as error:
        text = "".join(traceback.format_exception(error))
    assert text.startswith("Traceback (most recent call last)")
    line = error_line(text)
    # The exception raised last, its module-qualified name and its whole message.
    assert line.endswith("FeedError: feed 7 answered 500 body: <html>"), line
    assert "KeyError" not in line and "Traceback" not in line


def test_error_line_of_a_plain_message_is_the_message_on_one_line() -> None:
    assert error_line("TimeoutError: handler did not finish\nwithin 5s") == (
        "TimeoutError: handler did not finish within 5s"
    )
    assert error_line(None) == ""
