"""Maintenance: taking back the jobs of workers that stopped heartbeating, and pruning.

A rescue (:meth:`MaintenanceStatements.recover_stale`) refunds the attempt of a job that
never started and counts a crash of one that ran: charged when it ran alone, given an
attempt more when other jobs ran beside it (any of them may be the cause), and alone from
then on, so that a job that keeps killing workers ends ``failed`` after ``max_attempts``
crashes of its own and the jobs beside it are never charged for it. Pruning deletes
finished jobs only. Settling (:meth:`MaintenanceStatements.settle_waiting`) runs the
installed settle function over every waiting job, for the rare job whose last dependency
finished while the job itself was being enqueued or settled by another transaction.

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

from sqlalchemy import Integer, Interval, Uuid, and_, any_, case, delete, func, null, select, update
from sqlalchemy.sql.functions import Function

from ..model import FINISHED_STATUSES, JobStatus, claim_function_name
from ..sql import QueueObjects
from .base import Bound, StatementsBase, param
from .fence import is_stale, status_literal, status_literals

__all__ = ["MaintenanceStatements"]


class MaintenanceStatements(StatementsBase):
    """The statements of the maintenance duties."""

    def recover_stale(self, timeout: timedelta) -> Bound:
        """Held jobs whose heartbeat is older than ``timeout`` go back to ``pending``.

        A ``claimed`` one gets its attempt back. A ``running`` one counts a crash: charged
        its attempt (``failed`` when none remain) if it was the only job its worker was
        running; otherwise, since any of the jobs beside it may have killed the worker,
        given an attempt more (``max_attempts + 1``, as a snooze is). Either way it runs
        alone from then on, so that its next crash is its own. A job whose row another
        transaction has locked is skipped.
        """

        def build() -> Any:
            c = self.table.c
            now = self._now
            never_started = c.status == JobStatus.CLAIMED.value
            beside = self.table.alias("beside")
            crowded = and_(
                ~never_started,
                select(beside.c.id)
                .where(
                    beside.c.worker_id == c.worker_id,
                    beside.c.status == status_literal(JobStatus.RUNNING),
                    beside.c.id != c.id,
                )
                .exists(),
            )
            charged = and_(~never_started, ~crowded)
            spent = and_(charged, c.attempts >= c.max_attempts)
            stopped = ("worker ", c.worker_id, " stopped heartbeating (last at ", c.heartbeat_at)
            lost = func.concat(*stopped, "); rescued by recover_stale")
            lost_in_a_crowd = func.concat(
                *stopped,
                ") while running other jobs too; rescued by recover_stale with an attempt "
                "more, to run alone",
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
                    # Given back as a snooze gives it back: attempt numbers only grow,
                    # so each run of the job keeps a fence of its own.
                    max_attempts=case((crowded, c.max_attempts + 1), else_=c.max_attempts),
                    crashes=case((never_started, c.crashes), else_=c.crashes + 1),
                    last_error=case(
                        (never_started, c.last_error), (crowded, lost_in_a_crowd), else_=lost
                    ),
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
                # Oldest first, along the index of finished jobs: each chunk of a long
                # prune starts where the last one stopped, not after its dead rows.
                doomed = doomed.order_by(c.completed_at).limit(param("p_limit", Integer()))
            doomed = doomed.with_for_update(skip_locked=True)
            return delete(self.table).where(c.id == any_(func.array(doomed.scalar_subquery())))

        params: dict[str, Any] = {"p_older_than": older_than}
        if limit is not None:
            params["p_limit"] = limit
        return Bound(self._once(("prune", limited), build), params)

    def settle_waiting(self, limit: int) -> Bound:
        """Settle at most ``limit`` waiting jobs of each kind: pending once everything they
        depend on completed, cancelled once something they depend on failed, was
        cancelled or is gone. One row: how many were settled. Locked rows are skipped."""

        def build() -> Any:
            table = self.table
            name = QueueObjects("", table.name, claim_function_name(table)).settle_function
            packages = () if table.schema is None else (table.schema,)
            settle = Function(
                name,
                null().cast(Uuid()),
                param("p_limit", Integer()),
                packagenames=packages,
                type_=Integer(),
            )
            return select(settle)

        return Bound(self._once(("settle_waiting",), build), {"p_limit": limit})
