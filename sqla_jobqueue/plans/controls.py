"""The plans of pausing and resuming job types, and of listing the paused ones."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from .. import validation as check
from ..errors import InvalidJobError
from .core import J, Plan, QueueCore

__all__ = ["MAX_REASON_LENGTH", "PausedType", "pause", "paused", "resume"]

MAX_REASON_LENGTH = 500
"""Longest reason a pause may give, in characters."""


class PausedType(NamedTuple):
    """A paused job type: since when, and why."""

    job_type: str
    paused_at: datetime
    reason: str | None


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
