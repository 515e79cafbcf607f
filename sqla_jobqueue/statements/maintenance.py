"""Maintenance: taking back the jobs of workers that stopped heartbeating, and pruning.

A rescue (:meth:`MaintenanceStatements.recover_stale`) refunds the attempt of a job that
never started and charges one that ran, so that a job that keeps killing workers ends
``failed`` after ``max_attempts``; pruning deletes finished jobs only.

Neither waits on a row that another transaction has locked (an operator's open
transaction, a report reading ``FOR UPDATE``, a worker writing that job): each first locks
the rows it will change with ``SKIP LOCKED``, so a locked row is left for a later round
and every other one is handled now. A duty also bounds its wait on any other lock (on the
whole table: ``LOCK TABLE``, an ``ALTER TABLE``), and how long its transaction may sit
idle, with :func:`~sqla_jobqueue.statements.session.bound_waits`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, Interval, and_, any_, case, delete, func, select, update

from ..model import FINISHED_STATUSES, JobStatus
from .base import Bound, StatementsBase, param
from .fence import is_stale, status_literals

__all__ = ["MaintenanceStatements"]


class MaintenanceStatements(StatementsBase):
    """The statements of the maintenance duties."""

    def recover_stale(self, timeout: timedelta) -> Bound:
        """Held jobs whose heartbeat is older than ``timeout`` go back to ``pending``: a
        ``claimed`` one with its attempt refunded, a ``running`` one charged (``failed``
        when none remain). A job whose row another transaction has locked is skipped."""

        def build() -> Any:
            c = self.table.c
            now = self._now
            never_started = c.status == JobStatus.CLAIMED.value
            spent = and_(~never_started, c.attempts >= c.max_attempts)
            lost = func.concat(
                "worker ",
                c.worker_id,
                " stopped heartbeating (last at ",
                c.heartbeat_at,
                "); rescued by recover_stale",
            )
            # FOR NO KEY UPDATE, the lock the UPDATE takes: a foreign key check on the job
            # (FOR KEY SHARE) neither blocks the rescue nor is blocked by it.
            stale = (
                select(c.id)
                .where(is_stale(c, param("p_timeout", Interval())))
                .with_for_update(skip_locked=True, key_share=True)
            )
            return (
                update(self.table)
                .where(c.id == any_(func.array(stale.scalar_subquery())))
                .values(
                    status=case((spent, JobStatus.FAILED.value), else_=JobStatus.PENDING.value),
                    attempts=case(
                        (never_started, func.greatest(c.attempts - 1, 0)), else_=c.attempts
                    ),
                    last_error=case((never_started, c.last_error), else_=lost),
                    completed_at=case((spent, now), else_=None),
                    run_at=case((spent, c.run_at), else_=now),
                    worker_id=case((spent, c.worker_id), else_=None),
                    claimed_at=None,
                    heartbeat_at=None,
                    started_at=case((spent, c.started_at), else_=None),
                )
            )

        return Bound(self._once(("recover_stale",), build), {"p_timeout": timeout})

    def prune(self, older_than: timedelta, limit: int | None) -> Bound:
        """Delete finished jobs whose ``completed_at`` is older than ``older_than``, at
        most ``limit`` of them. A job whose row another transaction has locked is skipped,
        and one changed since the statement began (retried, say) is checked again before
        it is deleted."""
        limited = limit is not None

        def build() -> Any:
            c = self.table.c
            doomed = select(c.id).where(
                c.status.in_(status_literals(FINISHED_STATUSES)),
                c.completed_at < self._now - param("p_older_than", Interval()),
            )
            if limited:
                doomed = doomed.limit(param("p_limit", Integer()))
            doomed = doomed.with_for_update(skip_locked=True)
            return delete(self.table).where(c.id == any_(func.array(doomed.scalar_subquery())))

        params: dict[str, Any] = {"p_older_than": older_than}
        if limit is not None:
            params["p_limit"] = limit
        return Bound(self._once(("prune", limited), build), params)
