"""Pausing, resuming and limiting job types: the rows of the job table's controls table.

A paused type has a row whose ``paused_at`` is set; every claim passes over its jobs
(:func:`~sqla_jobqueue.statements.claim.claim_candidates` reads the paused types once per
statement). Jobs already claimed or running are not touched: they finish. A limited type
has a row with ``max_running``, ``max_running_per_key`` or ``rate_limit`` set: only the
limited claim function claims its jobs, within those limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, Integer, Interval, String, Text, any_, func, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..model import controls_table
from .base import Bound, StatementsBase, param

__all__ = ["LIMIT_COLUMNS", "ControlStatements", "has_limit"]

LIMIT_COLUMNS = ("job_type", "max_running", "max_running_per_key", "rate_limit", "rate_period")
"""The columns of a type's limits, as :meth:`ControlStatements.limits` returns them."""


def has_limit(c: Any) -> Any:
    """Whether a controls row (``c``: the controls table's columns) limits its type."""
    return (
        c.max_running.is_not(None) | c.max_running_per_key.is_not(None) | c.rate_limit.is_not(None)
    )


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

    def limit(self, job_type: str, limits: dict[str, Any]) -> Bound:
        """Set the limits of ``job_type`` (``max_running``, ``max_running_per_key``,
        ``rate_limit``, ``rate_period``: each ``None`` removes that limit); its rate
        limit's bucket starts full. Rows: the type's limits as set."""

        def build() -> Any:
            controls = controls_table(self.table)
            values = {
                "job_type": param("p_job_type", String()),
                "max_running": param("max_running", Integer()),
                "max_running_per_key": param("max_running_per_key", Integer()),
                "rate_limit": param("rate_limit", Integer()),
                "rate_period": param("rate_period", Interval()),
                "rate_tokens": null(),
                "rate_refilled_at": null(),
            }
            statement = pg_insert(controls).values(values)
            changed = {name: statement.excluded[name] for name in values if name != "job_type"}
            return statement.on_conflict_do_update(
                index_elements=[controls.c.job_type], set_={**changed, "updated_at": self._now}
            ).returning(*(controls.c[name] for name in LIMIT_COLUMNS))

        return Bound(self._once(("limit",), build), {"p_job_type": job_type, **limits})

    def remove_limits(self, job_types: Sequence[str]) -> Bound:
        """Remove every limit of ``job_types``. Rows: the types that had one."""

        def build() -> Any:
            controls = controls_table(self.table)
            c = controls.c
            return (
                update(controls)
                .where(c.job_type == any_(param("p_job_types", ARRAY(String()))), has_limit(c))
                .values(
                    max_running=null(),
                    max_running_per_key=null(),
                    rate_limit=null(),
                    rate_period=null(),
                    rate_tokens=null(),
                    rate_refilled_at=null(),
                    updated_at=self._now,
                )
                .returning(c.job_type)
            )

        return Bound(self._once(("remove_limits",), build), {"p_job_types": list(job_types)})

    def limits(self) -> Bound:
        """The limits of every limited type, by type (:data:`LIMIT_COLUMNS`)."""

        def build() -> Any:
            c = controls_table(self.table).c
            columns = (c[name] for name in LIMIT_COLUMNS)
            return select(*columns).where(has_limit(c)).order_by(c.job_type)

        return Bound(self._once(("limits",), build), {})

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
