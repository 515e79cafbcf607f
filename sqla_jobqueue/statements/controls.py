"""Pausing and resuming job types: the rows of the job table's controls table.

A paused type has a row whose ``paused_at`` is set; every claim passes over its jobs
(:func:`~sqla_jobqueue.statements.claim.claim_candidates` reads the paused types once per
statement). Jobs already claimed or running are not touched: they finish.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, String, Text, any_, func, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..model import controls_table
from .base import Bound, StatementsBase, param

__all__ = ["ControlStatements"]


class ControlStatements(StatementsBase):
    """The statements that pause, resume and list paused job types."""

    def pause(self, job_types: Sequence[str], reason: str | None) -> Bound:
        """Pause ``job_types`` (those paused already keep their ``paused_at``; the reason
        is replaced). Rows: the types paused."""

        def build() -> Any:
            controls = controls_table(self.table)
            rows = select(
                func.unnest(param("p_job_types", ARRAY(String()))).label("job_type"),
                self._now.label("paused_at"),
                param("p_reason", Text()).label("reason"),
            )
            statement = pg_insert(controls).from_select(["job_type", "paused_at", "reason"], rows)
            return statement.on_conflict_do_update(
                index_elements=[controls.c.job_type],
                set_={
                    "paused_at": func.coalesce(controls.c.paused_at, statement.excluded.paused_at),
                    "reason": statement.excluded.reason,
                    "updated_at": self._now,
                },
            ).returning(controls.c.job_type)

        params = {"p_job_types": list(job_types), "p_reason": reason}
        return Bound(self._once(("pause",), build), params)

    def resume(self, job_types: Sequence[str]) -> Bound:
        """Resume ``job_types``. Rows: the types that were paused."""

        def build() -> Any:
            controls = controls_table(self.table)
            return (
                update(controls)
                .where(
                    controls.c.job_type == any_(param("p_job_types", ARRAY(String()))),
                    controls.c.paused_at.is_not(None),
                )
                .values(paused_at=null(), reason=null(), updated_at=self._now)
                .returning(controls.c.job_type)
            )

        return Bound(self._once(("resume",), build), {"p_job_types": list(job_types)})

    def paused(self) -> Bound:
        """``(job_type, paused_at, reason)`` of every paused type, by type."""

        def build() -> Any:
            c = controls_table(self.table).c
            return (
                select(c.job_type, c.paused_at, c.reason)
                .where(c.paused_at.is_not(None))
                .order_by(c.job_type)
            )

        return Bound(self._once(("paused",), build), {})
