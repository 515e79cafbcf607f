"""The holder fence: one definition of "this worker still holds this attempt of this job".

Every write to a job that a worker holds is fenced by :func:`holder_fence`, whether it
changes one job or a batch of them. Statuses are inlined as literals (:func:`status_literals`):
a constant that selects a partial index must not be a parameter, since a generic plan cannot
use a partial index through one. :func:`stale_condition` is the other side of holding: the
held jobs whose holder stopped heartbeating.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, Table, and_, func, literal, literal_column

from ..model import HELD_STATUSES, JobStatus

__all__ = ["holder_fence", "is_stale", "stale_condition", "status_literal", "status_literals"]


def status_literals(statuses: Iterable[JobStatus]) -> list[Any]:
    """``statuses`` as inlined SQL string literals."""
    return [literal_column(f"'{status.value}'") for status in statuses]


def status_literal(status: JobStatus) -> Any:
    """``status`` as an inlined SQL string literal."""
    return literal_column(f"'{status.value}'")


def holder_fence(
    table: Table,
    job_id: Any,
    *,
    attempt: Any | None,
    worker_id: Any | None,
    statuses: Sequence[JobStatus] = HELD_STATUSES,
    batch: bool = False,
) -> tuple[ColumnElement[bool], ...]:
    """Whether a worker still holds a job: the job's id, its ``attempt``, the ``worker_id``
    that claimed it, and a status of ``statuses``. ``None`` leaves that part out.

    ``batch`` is for a relation of many jobs joined by primary key (one index probe per
    job): there neither the worker nor the status condition may select an index, on
    purpose, since through the partial index of held jobs a generic plan (estimating one
    held row) would rescan the whole batch for every held row.
    """
    c = table.c
    conditions: list[ColumnElement[bool]] = [c.id == job_id]
    if attempt is not None:
        conditions.append(c.attempts == attempt)
    if batch:
        if worker_id is not None:
            conditions.append(func.coalesce(c.worker_id, "") == worker_id)
        others = [status for status in JobStatus if status not in statuses]
        conditions.append(c.status.not_in(status_literals(others)))
    else:
        if worker_id is not None:
            conditions.append(c.worker_id == worker_id)
        conditions.append(
            c.status == status_literal(statuses[0])
            if len(statuses) == 1
            else c.status.in_(status_literals(statuses))
        )
    return tuple(conditions)


def is_stale(c: Any, timeout: Any) -> ColumnElement[bool]:
    """:func:`stale_condition` on the columns ``c``, ``timeout`` an interval expression."""
    return and_(
        c.status.in_(status_literals(HELD_STATUSES)),
        func.coalesce(c.heartbeat_at, c.claimed_at) < func.statement_timestamp() - timeout,
    )


def stale_condition(model: Any, timeout: timedelta) -> ColumnElement[bool]:
    """Held jobs whose heartbeat (or claim, before any heartbeat) is older than ``timeout``
    by the database clock: what a rescue takes back. ``model`` is a job model or table."""
    columns = model.c if isinstance(model, Table) else model.__table__.c
    return is_stale(columns, literal(timeout, Interval()))
