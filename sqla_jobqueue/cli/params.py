"""The values options take, as click parameter types: each reads its text and refuses bad
input with a message that says what to write instead.

Durations are a number and a unit, ``30s``, ``5m``, ``2h``, ``7d``, ``1w``, ``250ms``, or a
sum of them (``1h30m``), at most :data:`MAX_DURATION`. Job ids are a UUID or
:data:`ID_FRAGMENT_DIGITS` or more of its hex digits, from its start or its end.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..model import JobStatus, Priority
from ..validation import MAX_DELAY, MAX_JSON_DEPTH

__all__ = [
    "DURATION",
    "ID_FRAGMENT_DIGITS",
    "JOB_ID",
    "JSON_OBJECT",
    "MAX_DURATION",
    "NAMES",
    "POSITIVE_INT",
    "PRIORITY",
    "RATE",
    "RUN_AT",
    "STATUSES",
    "duration_text",
    "parse_duration",
]

MAX_DURATION = MAX_DELAY
"""The longest duration any option takes (100 years)."""
ID_FRAGMENT_DIGITS = 8
"""The fewest hex digits of a job id that commands taking an id accept (``watch`` shows 8)."""

if TYPE_CHECKING:
    # Generic from click 8.5 on; a plain class before, which this package also runs on.
    _ParamType = click.ParamType[Any, Any]
else:
    _ParamType = click.ParamType

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ID_FRAGMENT = re.compile(rf"[0-9a-f]{{{ID_FRAGMENT_DIGITS},31}}")


def parse_duration(value: str) -> timedelta:
    """Parse ``30s``, ``5m``, ``2h``, ``7d``, ``1w``, ``250ms`` or a sum like ``1h30m``.

    Raises
    ------
    ValueError
        When ``value`` is not such a duration, is zero, or is longer than
        :data:`MAX_DURATION`.
    """
    text = value.strip().lower()
    # The reason must survive on an error line of bounded length, whatever was typed.
    shown = repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(
            f"invalid duration {shown}: write a number and a unit, e.g. 30s, 5m, 2h, 7d"
        )
    try:
        total = sum((float(n) * _UNITS[u] for n, u in parts), timedelta(0))
    except OverflowError:
        total = timedelta.max
    if total <= timedelta(0):
        raise ValueError(f"invalid duration {shown}: must be more than zero")
    if total > MAX_DURATION:
        # Beyond this, "now minus the duration" leaves PostgreSQL's timestamp range.
        raise ValueError(
            f"invalid duration {shown}: at most {duration_text(MAX_DURATION)} (100 years)"
        )
    return total


def duration_text(duration: timedelta) -> str:
    """``duration`` written as :func:`parse_duration` reads it: ``2s``, ``1h30m``, ``250ms``."""
    milliseconds = round(duration.total_seconds() * 1000)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if milliseconds or not parts:
        parts.append(f"{milliseconds}ms")
    return "".join(parts)


class _Duration(_ParamType):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


class _PositiveInt(_ParamType):
    name = "n"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(value)
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < 1:
            self.fail(f"must be at least 1, got {number}", param, ctx)
        return number


class _JobId(_ParamType):
    """A whole job id (a :class:`uuid.UUID`), or the hex digits its id begins or ends with."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip().lower()
        with contextlib.suppress(ValueError):
            return uuid.UUID(text)
        digits = text.replace("-", "")
        if _ID_FRAGMENT.fullmatch(digits):
            return digits
        self.fail(
            f"{value!r} is not a job id: give the whole id (a UUID) or at least "
            f"{ID_FRAGMENT_DIGITS} of its hex digits, from its start or its end as watch shows",
            param,
            ctx,
        )


class _Priority(_ParamType):
    name = "priority"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        name = value.strip().upper()
        if name in Priority.__members__:
            return int(Priority[name])
        try:
            return int(value)
        except ValueError:
            names = ", ".join(p.name.lower() for p in Priority)
            self.fail(f"{value!r} is not a priority: a whole number or one of {names}", param, ctx)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


class _JsonObject(_ParamType):
    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dict):
            return value
        try:
            # json.loads accepts NaN and Infinity, which jsonb cannot store.
            data = json.loads(value, parse_constant=_no_constant)
        except ValueError as error:
            self.fail(f"not valid JSON ({error})", param, ctx)
        except RecursionError:
            self.fail(f"nests deeper than {MAX_JSON_DEPTH} levels of objects and lists",
                      param, ctx)  # fmt: skip
        if not isinstance(data, dict):
            self.fail(
                f'must be a JSON object like \'{{"key": "value"}}\', got {type(data).__name__}',
                param,
                ctx,
            )
        return data


class _RunAt(_ParamType):
    """A delay (a :class:`~datetime.timedelta`) or an ISO 8601 time with a zone."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (datetime, timedelta)):
            return value
        try:
            return parse_duration(value)
        except ValueError as error:
            if re.fullmatch(f"(?:{_DURATION_PART.pattern})+", value.strip().lower()):
                self.fail(str(error), param, ctx)
        iso = value.strip()
        if iso.endswith(("Z", "z")):
            iso = iso[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(iso)
        except ValueError:
            self.fail(
                f"{value!r} is neither a delay (10m, 2h) nor an ISO 8601 time "
                "(2030-01-31T09:00:00+00:00)",
                param,
                ctx,
            )
        if moment.tzinfo is None:
            self.fail(
                f"{value!r} has no time zone: add one, e.g. {value}+00:00 or {value}Z", param, ctx
            )
        return moment


class _Names(_ParamType):
    """Comma-separated names, as a list; with ``choices``, only those (each a ``what``)."""

    name = "names"

    def __init__(self, choices: list[str] | None = None, what: str = "name") -> None:
        self.choices = choices
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, list):
            return value
        names = [name.strip() for name in value.split(",") if name.strip()]
        if not names:
            self.fail(f"{value!r} names nothing: write a,b,c", param, ctx)
        unknown = [name for name in names if self.choices and name not in self.choices]
        if unknown and self.choices:
            choices = ", ".join(self.choices)
            self.fail(f"unknown {self.what} {unknown[0]!r}: choose from {choices}", param, ctx)
        return names


class _Rate(_ParamType):
    """``N/PERIOD``: at most N per PERIOD, a duration or a bare unit (``20/s``, ``500/5m``)."""

    name = "rate"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        count, slash, period = str(value).partition("/")
        if not slash:
            self.fail(f"{value!r} is not N/PERIOD: write e.g. 20/s or 500/5m", param, ctx)
        number = _PositiveInt().convert(count.strip(), param, ctx)
        period = period.strip()
        try:
            duration = parse_duration(period if period[:1].isdigit() else "1" + period)
        except ValueError as error:
            self.fail(f"{value!r}: {error}", param, ctx)
        if duration <= timedelta(0):
            self.fail(f"{value!r}: the period must be longer than 0", param, ctx)
        return number, duration


DURATION = _Duration()
"""A duration (:func:`parse_duration`), as a :class:`~datetime.timedelta`."""
POSITIVE_INT = _PositiveInt()
"""A whole number of at least 1."""
JOB_ID = _JobId()
"""A job id: a :class:`uuid.UUID`, or a string of 8 to 31 hex digits of one."""
PRIORITY = _Priority()
"""A priority: a number, or a :class:`~sqla_jobqueue.model.Priority` name in any case."""
JSON_OBJECT = _JsonObject()
"""A JSON object, as a ``dict``; NaN and Infinity are refused."""
RATE = _Rate()
"""A rate limit ``N/PERIOD``, as ``(N, timedelta)``."""
RUN_AT = _RunAt()
"""When a job is due: a delay or a time with a zone."""
NAMES = _Names()
"""Comma-separated names (job types), as a list."""
STATUSES = _Names([status.value for status in JobStatus], "status")
"""Comma-separated job states, as a list."""
