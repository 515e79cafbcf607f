"""The jobs a worker holds, as a set: heartbeats, batched progress, giving jobs back.

The worker's own writes skip rows that another transaction is writing instead of waiting for
them (:meth:`HeldStatements.heartbeat_unlocked`), and carry many jobs in one statement, each
fenced by the holder fence. A job given back (:meth:`HeldStatements.release`,
:meth:`HeldStatements.give_back`) has the attempt of its claim refunded.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, Integer, Text, Uuid, all_, any_, func, select, update

from ..model import HELD_STATUSES, JobStatus
from .base import Bound, StatementsBase, counts_or_null, or_null, param, per_job
from .fence import status_literal, status_literals

__all__ = ["HeldStatements"]

# (column of the per-job relation, its array parameter, its type)
_PROGRESS_COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("id", "p_ids", Uuid()),
    ("attempt", "p_attempts", Integer()),
    ("percent", "p_percents", Integer()),
    ("stage", "p_stages", Text()),
    ("events", "p_events", Integer()),
)


class HeldStatements(StatementsBase):
    """The statements over the jobs a worker holds."""

    def heartbeat(self, worker_id: str, ids: list[uuid.UUID] | None) -> Bound:
        """Refresh the heartbeat of the jobs ``worker_id`` holds (only ``ids`` if given)."""
        mine = ids is not None

        def build() -> Any:
            c = self.table.c
            conditions = [c.status.in_(status_literals(HELD_STATUSES)), c.worker_id == self._worker]
            if mine:
                conditions.append(c.id == any_(param("p_ids", ARRAY(Uuid()))))
            return update(self.table).where(*conditions).values(heartbeat_at=self._now)

        params: dict[str, Any] = {"p_worker_id": worker_id}
        if ids is not None:
            params["p_ids"] = ids
        return Bound(self._once(("heartbeat", mine), build), params)

    def heartbeat_unlocked(self, worker_id: str, ids: Sequence[uuid.UUID]) -> Bound:
        """The worker's heartbeat of ``ids``: rows another transaction is writing are
        skipped, never waited for (they are being completed, failed or given progress)."""

        def build() -> Any:
            c = self.table.c
            mine = (c.worker_id == self._worker, c.status.in_(status_literals(HELD_STATUSES)))
            beating = (
                select(c.id)
                .where(c.id == any_(param("p_ids", ARRAY(Uuid()))), *mine)
                .with_for_update(skip_locked=True, key_share=True)
            )
            return (
                update(self.table)
                .where(c.id == any_(func.array(beating.scalar_subquery())), *mine)
                .values(heartbeat_at=self._now)
            )

        params = {"p_ids": sorted(ids), "p_worker_id": worker_id}
        return Bound(self._once(("heartbeat_unlocked",), build), params)

    def write_progress(
        self,
        worker_id: str,
        ids: Sequence[uuid.UUID],
        attempts: Sequence[int],
        percents: Sequence[int | None],
        stages: Sequence[str | None],
        events: Sequence[int],
    ) -> Bound:
        """The progress of many running jobs, one statement, heartbeats refreshed; returns
        the ids of the jobs ``worker_id`` still held."""

        def build() -> Any:
            c = self.table.c
            reported = per_job("reported", _PROGRESS_COLUMNS)
            return (
                update(self.table)
                .where(*self._fenced_batch(reported))
                .values(
                    progress=func.coalesce(reported.c.percent, c.progress),
                    current_stage=func.coalesce(reported.c.stage, c.current_stage),
                    events_count=c.events_count + func.coalesce(reported.c.events, 0),
                    heartbeat_at=self._now,
                )
                .returning(c.id)
            )

        params: dict[str, Any] = {
            "p_ids": list(ids),
            "p_attempts": list(attempts),
            "p_percents": or_null(percents),
            "p_stages": or_null(stages),
            "p_events": counts_or_null(events),
            "p_worker_id": worker_id,
        }
        return Bound(self._once(("write_progress",), build), params)

    def _refunded(self) -> dict[str, Any]:
        """Back to ``pending``, the attempt of the claim refunded, due now at the latest."""
        c = self.table.c
        return {
            "status": JobStatus.PENDING.value,
            "attempts": func.greatest(c.attempts - 1, 0),
            "worker_id": None,
            "claimed_at": None,
            "heartbeat_at": None,
            "started_at": None,
            "run_at": func.least(c.run_at, self._now),
        }

    def release(self, worker_id: str, ids: list[uuid.UUID] | None) -> Bound:
        """``worker_id``'s claimed, not started jobs (only ``ids`` if given) go back to
        ``pending``, refunded."""
        chosen = ids is not None

        def build() -> Any:
            c = self.table.c
            conditions = [
                c.status == status_literal(JobStatus.CLAIMED),
                c.worker_id == self._worker,
            ]
            if chosen:
                conditions.append(c.id == any_(param("p_ids", ARRAY(Uuid()))))
            return update(self.table).where(*conditions).values(self._refunded())

        params: dict[str, Any] = {"p_worker_id": worker_id}
        if ids is not None:
            params["p_ids"] = ids
        return Bound(self._once(("release", chosen), build), params)

    def give_back(self, worker_id: str, known: Sequence[uuid.UUID]) -> Bound:
        """``worker_id``'s held jobs that are not in ``known`` go back to ``pending``,
        refunded; returns their ids. (After a round whose answer was lost, the database may
        hold jobs for this worker that it never started.)"""

        def build() -> Any:
            c = self.table.c
            return (
                update(self.table)
                .where(
                    c.worker_id == self._worker,
                    c.status.in_(status_literals(HELD_STATUSES)),
                    c.id != all_(param("p_known", ARRAY(Uuid()))),
                )
                .values(self._refunded())
                .returning(c.id)
            )

        params = {"p_known": list(known), "p_worker_id": worker_id}
        return Bound(self._once(("give_back",), build), params)

    def settled(self, worker_id: str, ids: Sequence[uuid.UUID]) -> Bound:
        """``id``, ``status`` and ``attempts`` of the jobs among ``ids`` that ended
        ``completed`` or ``cancelled`` marked with ``worker_id``."""

        def build() -> Any:
            c = self.table.c
            ended = status_literals((JobStatus.COMPLETED, JobStatus.CANCELLED))
            return select(c.id, c.status, c.attempts).where(
                c.id == any_(param("p_ids", ARRAY(Uuid()))),
                c.worker_id == self._worker,
                c.status.in_(ended),
            )

        params = {"p_ids": list(ids), "p_worker_id": worker_id}
        return Bound(self._once(("settled",), build), params)
