"""The plans of pausing, resuming and limiting job types, and of listing them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .. import validation as check
from ..errors import InvalidJobError
from .core import J, Plan, QueueCore

__all__ = [
    "MAX_REASON_LENGTH",
    "PausedType",
    "TypeLimits",
    "limit",
    "limits",
    "pause",
    "paused",
    "remove_limits",
    "resume",
]

MAX_REASON_LENGTH = 500
"""Longest reason a pause may give, in characters."""


class PausedType(NamedTuple):
    """A paused job type: since when, and why."""

    job_type: str
    paused_at: datetime
    reason: str | None


class TypeLimits(NamedTuple):
    """The limits of a job type, kept by every claim (``None``: no such limit)."""

    job_type: str
    max_running: int | None
    """Most jobs of the type claimed or running at once, across all workers."""
    max_running_per_key: int | None
    """Most jobs of one ``concurrency_key`` claimed or running at once; each key's jobs
    are claimed oldest first."""
    rate_limit: int | None
    """Most jobs claimed per :attr:`rate_period` (at most this many at once)."""
    rate_period: timedelta | None


def _at_least_one(value: object, what: str) -> int | None:
    if value is None:
        return None
    number = check.check_int32(value, what)
    if number < 1:
        raise InvalidJobError(f"{what} must be at least 1, got {number}")
    return number


def limit(
    q: QueueCore[J],
    job_type: str,
    max_running: int | None,
    max_running_per_key: int | None,
    rate_limit: int | None,
    rate_period: timedelta | float,
) -> Plan[TypeLimits]:
    """:meth:`JobQueue.limit`."""
    job_type = check.check_job_type(job_type)
    values: dict[str, Any] = {
        "max_running": _at_least_one(max_running, "max_running"),
        "max_running_per_key": _at_least_one(max_running_per_key, "max_running_per_key"),
        "rate_limit": _at_least_one(rate_limit, "rate_limit"),
    }
    if isinstance(rate_period, (int, float)) and not isinstance(rate_period, bool):
        rate_period = timedelta(seconds=rate_period)
    period = check.check_positive_interval(rate_period, "rate_period")
    values["rate_period"] = period if values["rate_limit"] is not None else None
    if all(value is None for value in values.values()):
        raise InvalidJobError(
            f"limit {job_type!r} with max_running, max_running_per_key or rate_limit; "
            "to remove its limits, call remove_limits"
        )
    row = (yield q.statements.limit(job_type, values)).one()
    return TypeLimits(*row)


def remove_limits(q: QueueCore[J], job_types: Sequence[str]) -> Plan[list[str]]:
    """:meth:`JobQueue.remove_limits`."""
    types = _types(job_types, "remove_limits")
    return sorted((yield q.statements.remove_limits(types)).scalars())


def limits(q: QueueCore[J]) -> Plan[list[TypeLimits]]:
    """:meth:`JobQueue.limits`."""
    return [TypeLimits(*row) for row in (yield q.statements.limits())]


def _types(job_types: Sequence[str], action: str) -> list[str]:
    if isinstance(job_types, str):
        raise InvalidJobError(
            f"{action} takes a list of job types, not the string {job_types!r}; "
            f"write [{job_types!r}]"
        )
    types = sorted({check.check_job_type(job_type) for job_type in job_types})
    if not types:
        raise InvalidJobError(f"{action} needs at least one job type")
    return types


def pause(q: QueueCore[J], job_types: Sequence[str], reason: str | None) -> Plan[list[str]]:
    """:meth:`JobQueue.pause`."""
    types = _types(job_types, "pause")
    if reason is not None:
        check.check_text(reason, "reason", MAX_REASON_LENGTH)
    return sorted((yield q.statements.pause(types, reason)).scalars())


def resume(q: QueueCore[J], job_types: Sequence[str]) -> Plan[list[str]]:
    """:meth:`JobQueue.resume`."""
    types = _types(job_types, "resume")
    return sorted((yield q.statements.resume(types)).scalars())


def paused(q: QueueCore[J]) -> Plan[list[PausedType]]:
    """:meth:`JobQueue.paused`."""
    return [PausedType(*row) for row in (yield q.statements.paused())]
