"""The plan of ``wait``: until a job is finished, or the time runs out.

It runs on a connection of its own in autocommit mode, not on the caller's session: the
``LISTEN`` and the ``awaited`` mark must take effect at once, and a worker finishing the
job must never wait for the waiter's transaction. Besides statements it yields
:class:`Listen` (answered with whether notifications can be heard on that connection) and
:class:`Notice` (answered once the job's id was announced, or the time given has passed).

The order closes every gap: listen first, then mark the job, then read its status (a
wait told not to listen marks nothing and only reads). A job
that finished before the mark committed is seen by the read; one that finishes after it
is announced while the connection listens. The read repeats at least every
``poll_interval``, for a connection that cannot listen (a transaction pooler) or a
notification lost with its connection.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Generator
from datetime import timedelta
from typing import Any, NamedTuple

from ..errors import InvalidJobError, JobNotFoundError, WaitTimeoutError
from ..model import FINISHED_STATUSES, JobStatus, claim_function_name
from ..sql import QueueObjects
from ..statements import Bound
from .core import J, JobRef, QueueCore, job_id_of

__all__ = ["DEFAULT_POLL_INTERVAL", "Listen", "Notice", "WaitPlan", "check_seconds", "wait"]

DEFAULT_POLL_INTERVAL = 1.0
"""Seconds between two reads of a job's status while waiting for its notification."""

_FINISHED = frozenset(status.value for status in FINISHED_STATUSES)


class Listen(NamedTuple):
    """``LISTEN`` on ``channel``; answered ``True`` when notifications can be heard."""

    channel: str


class Notice(NamedTuple):
    """Wait until ``payload`` is announced or ``timeout`` seconds pass (answered ``None``)."""

    payload: str
    timeout: float


WaitPlan = Generator[Bound | Listen | Notice, Any, uuid.UUID]
"""The plan of ``wait``: it returns the id of the finished job."""


def check_seconds(value: object, what: str) -> float:
    """Seconds given as a number or a ``timedelta``: finite, zero or more."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidJobError(
            f"{what} must be a number of seconds or a timedelta, got {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidJobError(f"{what} must be zero or more seconds, got {value!r}")
    return float(seconds)


def wait(
    q: QueueCore[J], job: JobRef, timeout: object, poll_interval: object, listen: bool = True
) -> WaitPlan:
    """:meth:`JobQueue.wait` up to loading the job: returns its id once it is finished.

    Raises :class:`JobNotFoundError` and :class:`WaitTimeoutError`.
    """
    job_id = job_id_of(job)
    seconds = check_seconds(timeout, "timeout")
    poll = check_seconds(poll_interval, "poll_interval")
    if poll == 0:
        raise InvalidJobError("poll_interval must be more than 0 seconds")
    deadline = time.monotonic() + seconds
    if listen:
        table = q.table
        schema = table.schema
        if schema is None:
            schema = str((yield q.statements.current_schema()).scalar_one())
        yield Listen(QueueObjects(schema, table.name, claim_function_name(table)).finished_channel)
        yield q.statements.mark_awaited(job_id)
    while True:
        status = (yield q.statements.status_of(job_id)).scalar_one_or_none()
        if status is None:
            raise JobNotFoundError(job_id)
        if str(status) in _FINISHED:
            return job_id
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeoutError(job_id, seconds, JobStatus(status).value)
        yield Notice(str(job_id), min(remaining, poll))
