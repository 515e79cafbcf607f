"""Reads: one job, a listing, the counts and the age of the queue, and a probe.

None of them locks or writes a row.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import String, func, select

from ..model import JobStatus
from .base import Bound, StatementsBase, param
from .fence import status_literal

__all__ = ["ReadStatements"]


class ReadStatements(StatementsBase):
    """The statements that read a job table."""

    def get(self, job_id: uuid.UUID) -> Bound:
        """Every column of one job."""
        return Bound(
            self._once(("get",), lambda: select(self.table).where(self._job)), {"p_id": job_id}
        )

    def listing(self, job_type: str | None, status: JobStatus | None) -> Bound:
        """Every column of the jobs (of ``job_type``, in ``status``), oldest first."""
        key = (job_type is not None, status is not None)

        def build() -> Any:
            c = self.table.c
            statement = select(self.table).order_by(c.created_at, c.id)
            if key[0]:
                statement = statement.where(c.job_type == param("p_job_type", String()))
            if key[1]:
                statement = statement.where(c.status == param("p_status", String()))
            return statement

        params: dict[str, Any] = {}
        if job_type is not None:
            params["p_job_type"] = job_type
        if status is not None:
            params["p_status"] = status.value
        return Bound(self._once(("listing", *key), build), params)

    def counts(self) -> Bound:
        """``(job_type, status, count)`` for every type and status present."""

        def build() -> Any:
            c = self.table.c
            return select(c.job_type, c.status, func.count()).group_by(c.job_type, c.status)

        return Bound(self._once(("counts",), build), {})

    def oldest_pending_age(self) -> Bound:
        """How long the longest-waiting due pending job has waited (``NULL``: none)."""

        def build() -> Any:
            c = self.table.c
            return select(self._now - func.min(c.run_at)).where(
                c.status == status_literal(JobStatus.PENDING), c.run_at <= self._now
            )

        return Bound(self._once(("oldest_pending_age",), build), {})

    def probe(self) -> Bound:
        """Reads no row, but fails when the table cannot be read."""
        return Bound(self._once(("probe",), lambda: select(self.table.c.id).limit(0)), {})
