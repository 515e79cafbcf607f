"""Waiting for a job to finish: mark it awaited, read where it stands.

A job marked ``awaited`` makes the job queue's trigger (version 3 of the installed objects)
announce its id on :attr:`QueueObjects.finished_channel
<sqla_jobqueue.sql.QueueObjects.finished_channel>` when it reaches a final state; jobs
nobody waits for are never announced, so the workers' rounds pay for one comparison per
changed row and nothing more.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, true, update

from ..model import UNFINISHED_STATUSES
from .base import Bound, StatementsBase
from .fence import status_literals

__all__ = ["WaitStatements"]


class WaitStatements(StatementsBase):
    """The statements of :meth:`JobQueue.wait <sqla_jobqueue.JobQueue.wait>`."""

    def mark_awaited(self, job_id: uuid.UUID) -> Bound:
        """Mark an unfinished job as awaited (a finished one is left as it is). Its
        condition reads only ``id`` and ``status``, which an enqueuer may read."""

        def build() -> Any:
            c = self.table.c
            return (
                update(self.table)
                .where(
                    self._job,
                    c.status.in_(status_literals(UNFINISHED_STATUSES)),
                )
                .values(awaited=true())
            )

        return Bound(self._once(("mark_awaited",), build), {"p_id": job_id})

    def status_of(self, job_id: uuid.UUID) -> Bound:
        """The status of one job: one row, or none when there is no such job."""
        return Bound(
            self._once(("status_of",), lambda: select(self.table.c.status).where(self._job)),
            {"p_id": job_id},
        )

    def current_schema(self) -> Bound:
        """The schema an unqualified job table resolves to on the connection."""
        return Bound(self._once(("current_schema",), lambda: select(func.current_schema())), {})
