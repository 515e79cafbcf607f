"""Changes of one job: start, progress, complete, fail, cancel, retry, and a handler's
``Snooze`` and ``Cancel``.

Each is one ``UPDATE`` of the job by id that returns it. A change through the repository is
fenced by :func:`~sqla_jobqueue.statements.holder_fence` as far as the caller knows the
holder (its worker id, the attempt); a handler's outcome always is. When a change updates
nothing, :meth:`TransitionStatements.holder_of` tells why.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Interval,
    String,
    Text,
    Uuid,
    case,
    func,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB

from ..backoff import Backoff, sql_delay
from ..model import HELD_STATUSES, UNFINISHED_STATUSES, JobStatus
from ..validation import storable_text
from .base import Bound, StatementsBase, param
from .fence import holder_fence

__all__ = ["TransitionStatements", "cancelled_values", "retried_values"]

_MAX_INT32 = 2_147_483_647


def cancelled_values(now: Any) -> dict[str, Any]:
    """What a cancel writes: one job's (:meth:`TransitionStatements.cancel`) or many's."""
    return {"status": JobStatus.CANCELLED.value, "completed_at": now}


def retried_values(now: Any) -> dict[str, Any]:
    """What a retry writes: back to ``pending``, attempts reset, due ``now``."""
    return {
        "status": JobStatus.PENDING.value,
        "attempts": 0,
        "run_at": now,
        "worker_id": None,
        "claimed_at": None,
        "heartbeat_at": None,
        "started_at": None,
        "completed_at": None,
        "progress": 0,
    }


class TransitionStatements(StatementsBase):
    """The statements that change one job."""

    def _fenced_one(self) -> tuple[ColumnElement[bool], ...]:
        """The job ``p_id`` held by ``p_worker_id`` in its attempt ``p_attempt``."""
        return holder_fence(
            self.table,
            param("p_id", Uuid()),
            attempt=param("p_attempt", Integer()),
            worker_id=self._worker,
        )

    def _change(
        self,
        action: str,
        statuses: Sequence[JobStatus],
        values: Any,
        *,
        worker: bool,
        attempt: bool,
        variant: Any = None,
    ) -> Any:
        """``UPDATE`` of one job by id, optionally fenced, returning every column."""

        def build() -> Any:
            fence = holder_fence(
                self.table,
                param("p_id", Uuid()),
                attempt=param("p_attempt", Integer()) if attempt else None,
                worker_id=self._worker if worker else None,
                statuses=statuses,
            )
            return update(self.table).where(*fence).values(values()).returning(*self.table.c)

        return self._once((action, worker, attempt, variant), build)

    @staticmethod
    def _fence_params(
        job_id: uuid.UUID, worker_id: str | None, attempt: int | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"p_id": job_id}
        if worker_id is not None:
            params["p_worker_id"] = worker_id
        if attempt is not None:
            params["p_attempt"] = attempt
        return params

    def start(self, job_id: uuid.UUID, worker_id: str | None, attempt: int | None) -> Bound:
        """A ``claimed`` job becomes ``running`` (``started_at``, heartbeat refreshed)."""

        def values() -> dict[str, Any]:
            running = JobStatus.RUNNING.value
            return {"status": running, "started_at": self._now, "heartbeat_at": self._now}

        statement = self._change(
            "start",
            (JobStatus.CLAIMED,),
            values,
            worker=worker_id is not None,
            attempt=attempt is not None,
        )
        return Bound(statement, self._fence_params(job_id, worker_id, attempt))

    def update_progress(
        self,
        job_id: uuid.UUID,
        worker_id: str | None,
        attempt: int | None,
        percent: int | None,
        stage: str | None,
        events: int,
    ) -> Bound:
        """Progress of a held job: percent and stage (``None`` keeps them), ``events``
        added to ``events_count``; the heartbeat refreshed."""
        c = self.table.c

        def values() -> dict[str, Any]:
            return {
                "heartbeat_at": self._now,
                "progress": func.coalesce(param("p_percent", Integer()), c.progress),
                "current_stage": func.coalesce(param("p_stage", String()), c.current_stage),
                "events_count": c.events_count + param("p_events", Integer()),
            }

        statement = self._change(
            "progress",
            HELD_STATUSES,
            values,
            worker=worker_id is not None,
            attempt=attempt is not None,
        )
        params = self._fence_params(job_id, worker_id, attempt)
        params.update(p_percent=percent, p_stage=stage, p_events=events)
        return Bound(statement, params)

    def complete(
        self, job_id: uuid.UUID, worker_id: str | None, attempt: int | None, result: str | None
    ) -> Bound:
        """A held job ends ``completed`` with ``result`` (JSON text, or ``None``)."""

        def values() -> dict[str, Any]:
            return {
                "status": JobStatus.COMPLETED.value,
                "progress": 100,
                "completed_at": self._now,
                "result": sql_cast(param("p_result", Text()), JSONB()),
            }

        statement = self._change(
            "complete",
            HELD_STATUSES,
            values,
            worker=worker_id is not None,
            attempt=attempt is not None,
        )
        params = self._fence_params(job_id, worker_id, attempt)
        params["p_result"] = result
        return Bound(statement, params)

    def fail(
        self,
        job_id: uuid.UUID,
        worker_id: str | None,
        attempt: int | None,
        error: str,
        *,
        run_again_in: timedelta | None,
        backoff: Backoff,
    ) -> Bound:
        """A failed attempt of a held job: back to ``pending`` after ``run_again_in`` (or
        ``backoff``, from its attempts) while attempts remain, else ``failed``;
        ``last_error`` keeps ``error`` either way."""
        c = self.table.c
        fixed = run_again_in is not None

        def values() -> dict[str, Any]:
            delay = param("p_run_again_in", Interval()) if fixed else sql_delay(c.attempts)
            spent = c.attempts >= c.max_attempts
            now = self._now
            return {
                "status": case((spent, JobStatus.FAILED.value), else_=JobStatus.PENDING.value),
                "last_error": param("p_error", Text()),
                "run_at": case((spent, c.run_at), else_=now + delay),
                "completed_at": case((spent, now), else_=None),
                "worker_id": case((spent, c.worker_id), else_=None),
                "claimed_at": None,
                "heartbeat_at": None,
            }

        statement = self._change(
            "fail",
            HELD_STATUSES,
            values,
            worker=worker_id is not None,
            attempt=attempt is not None,
            variant=fixed,
        )
        params = self._fence_params(job_id, worker_id, attempt)
        params["p_error"] = storable_text(error)
        if run_again_in is not None:
            params["p_run_again_in"] = run_again_in
        else:
            params.update(backoff.sql_params())
        return Bound(statement, params)

    def cancel(self, job_id: uuid.UUID) -> Bound:
        """A job that has not finished ends ``cancelled`` (whoever holds it)."""

        def values() -> dict[str, Any]:
            return cancelled_values(self._now)

        statement = self._change("cancel", UNFINISHED_STATUSES, values, worker=False, attempt=False)
        return Bound(statement, {"p_id": job_id})

    def retry(self, job_id: uuid.UUID) -> Bound:
        """A ``failed`` job goes back to ``pending``, attempts reset, due now."""

        def values() -> dict[str, Any]:
            return retried_values(self._now)

        statement = self._change("retry", (JobStatus.FAILED,), values, worker=False, attempt=False)
        return Bound(statement, {"p_id": job_id})

    def snooze(self, job_id: uuid.UUID, worker_id: str, attempt: int, after: timedelta) -> Bound:
        """A handler's ``Snooze``: the held job goes back to ``pending`` until ``after``
        passed, without counting a failure. Returns its id when the worker held it."""

        def build() -> Any:
            c = self.table.c
            return (
                update(self.table)
                .where(*self._fenced_one())
                .values(
                    status=JobStatus.PENDING.value,
                    max_attempts=func.least(c.max_attempts + 1, _MAX_INT32),
                    run_at=self._now + param("p_after", Interval()),
                    worker_id=None,
                    claimed_at=None,
                    heartbeat_at=None,
                    started_at=None,
                )
                .returning(c.id)
            )

        params = {"p_id": job_id, "p_attempt": attempt, "p_worker_id": worker_id, "p_after": after}
        return Bound(self._once(("snooze",), build), params)

    def cancel_held(self, job_id: uuid.UUID, worker_id: str, attempt: int, reason: str) -> Bound:
        """A handler's ``Cancel``: the held job ends ``cancelled`` with ``reason`` in
        ``last_error``. Returns its id when the worker held it."""

        def build() -> Any:
            return (
                update(self.table)
                .where(*self._fenced_one())
                .values(
                    status=JobStatus.CANCELLED.value,
                    completed_at=self._now,
                    last_error=param("p_reason", Text()),
                )
                .returning(self.table.c.id)
            )

        params = {
            "p_id": job_id,
            "p_attempt": attempt,
            "p_worker_id": worker_id,
            "p_reason": storable_text(reason),
        }
        return Bound(self._once(("cancel_held",), build), params)

    def holder_of(self, job_id: uuid.UUID) -> Bound:
        """``status``, ``worker_id`` and ``attempts`` of a job: why a change was refused."""

        def build() -> Any:
            c = self.table.c
            return select(c.status, c.worker_id, c.attempts).where(self._job)

        return Bound(self._once(("holder_of",), build), {"p_id": job_id})
