"""Periodic jobs: reading and recording schedules, and enqueueing a tick exactly once.

:meth:`ScheduleStatements.enqueue_tick` is the one statement that makes a tick's job
exactly one, whatever the number of workers (see :mod:`sqla_jobqueue.schedules`): its
first part moves the schedule's row to the tick only while the row is behind it, and its
second inserts the job only from the row the first part returned. At READ COMMITTED a
worker that finds the row locked by another one waits for it, then checks the condition
again on the row as the other left it; a tick the row has reached is never enqueued again.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    Uuid,
    and_,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..sql import format_table
from .base import Bound, param

__all__ = ["ScheduleStatements"]

_TIME = DateTime(timezone=True)


class ScheduleStatements:
    """The statements of the schedules of one job table. Get them with :meth:`of`.

    Parameters
    ----------
    jobs:
        The job table.
    schedules:
        The :class:`~sqla_jobqueue.schedules.JobScheduleMixin` table.
    """

    def __init__(self, jobs: Table, schedules: Table) -> None:
        self.jobs = jobs
        self.schedules = schedules
        self._read = self._build_read()
        self._register = self._build_register()
        self._enqueue_tick = self._build_enqueue_tick()
        self._advance_next = self._build_advance_next()

    @classmethod
    def of(cls, jobs: Table, schedules: Table) -> ScheduleStatements:
        """The statements of ``jobs`` and ``schedules``, built on first use and kept."""
        return _statements_of(jobs, schedules)

    def _build_read(self) -> Any:
        s = self.schedules.c
        wanted = (
            func.unnest(param("p_names", ARRAY(String())))
            .table_valued("name")
            .render_derived(name="wanted")
        )
        return (
            select(
                wanted.c.name,
                s.spec,
                s.last_tick,
                s.next_tick,
                s.created_at,
                func.statement_timestamp().label("now"),
            )
            .select_from(wanted.outerjoin(self.schedules, s.name == wanted.c.name))
            .order_by(wanted.c.name)
        )

    def read(self, names: list[str]) -> Bound:
        """One row per name, by name (the order in which every worker locks them):
        ``name``, then ``spec``, ``last_tick``, ``next_tick`` and ``created_at`` (all
        ``NULL`` for a schedule without a row), and ``now``, the database's clock."""
        return Bound(self._read, {"p_names": names})

    def _build_register(self) -> Any:
        s = self.schedules.c
        new = (
            func.unnest(
                param("p_names", ARRAY(String())),
                param("p_specs", ARRAY(Text())),
                param("p_next_ticks", ARRAY(_TIME)),
            )
            .table_valued("name", "spec", "next_tick")
            .render_derived(name="new")
        )
        statement = pg_insert(self.schedules).from_select(
            ["name", "spec", "next_tick"], select(new.c.name, new.c.spec, new.c.next_tick)
        )
        return statement.on_conflict_do_update(
            index_elements=[s.name],
            set_={
                "spec": statement.excluded.spec,
                "next_tick": statement.excluded.next_tick,
                "updated_at": func.statement_timestamp(),
            },
            where=s.spec.is_distinct_from(statement.excluded.spec),
        )

    def register(self, rows: list[tuple[str, str, datetime | None]]) -> Bound:
        """Record schedules (``name``, ``spec``, ``next_tick``): a new one gets its row,
        whose ``created_at`` its ticks count from; one whose ``spec`` changed gets the new
        one. Their ``last_tick`` is left as it is."""
        names, specs, next_ticks = (list(column) for column in zip(*rows, strict=True))
        params = {"p_names": names, "p_specs": specs, "p_next_ticks": next_ticks}
        return Bound(self._register, params)

    def _build_enqueue_tick(self) -> Any:
        s = self.schedules.c
        now = func.statement_timestamp()
        row = pg_insert(self.schedules).values(
            name=param("p_name", String()),
            spec=param("p_spec", Text()),
            last_tick=param("p_tick", _TIME),
            next_tick=param("p_next_tick", _TIME),
            created_at=now,
            updated_at=now,
        )
        won = (
            row.on_conflict_do_update(
                index_elements=[s.name],
                set_={
                    "last_tick": row.excluded.last_tick,
                    "next_tick": row.excluded.next_tick,
                    "updated_at": row.excluded.updated_at,
                },
                where=or_(s.last_tick.is_(None), s.last_tick < row.excluded.last_tick),
            )
            .returning(s.last_tick)
            .cte("won")
        )
        job = select(
            param("p_job_id", Uuid()),
            param("p_job_type", String()),
            sql_cast(param("p_data", Text()), JSONB()),
            param("p_priority", Integer()),
            param("p_max_attempts", Integer()),
            won.c.last_tick,
        ).select_from(won)
        columns = ["id", "job_type", "data", "priority", "max_attempts", "run_at"]
        return pg_insert(self.jobs).from_select(columns, job).returning(self.jobs.c.id)

    def enqueue_tick(
        self,
        *,
        name: str,
        spec: str,
        tick: datetime,
        next_tick: datetime | None,
        job_id: uuid.UUID,
        job_type: str,
        data_json: str,
        priority: int,
        max_attempts: int,
    ) -> Bound:
        """Move schedule ``name`` to ``tick`` and enqueue its job (``run_at`` the tick),
        in one statement, unless the schedule's ``last_tick`` is at or past ``tick``
        already: returns the job's id, or no row when another worker enqueued the tick (or
        a later one) first. A schedule without a row gets one."""
        params = {
            "p_name": name,
            "p_spec": spec,
            "p_tick": tick,
            "p_next_tick": next_tick,
            "p_job_id": job_id,
            "p_job_type": job_type,
            "p_data": data_json,
            "p_priority": priority,
            "p_max_attempts": max_attempts,
        }
        return Bound(self._enqueue_tick, params)

    def _build_advance_next(self) -> Any:
        s = self.schedules.c
        next_tick = param("p_next_tick", _TIME)
        return (
            update(self.schedules)
            .where(s.name == param("p_name", String()))
            .where(or_(s.next_tick.is_(None), s.next_tick < next_tick))
            .values(next_tick=next_tick, updated_at=func.statement_timestamp())
        )

    def advance_next(self, name: str, next_tick: datetime) -> Bound:
        """Move ``next_tick`` of schedule ``name`` forward to ``next_tick`` (after ticks
        the missed policy dropped); never back."""
        return Bound(self._advance_next, {"p_name": name, "p_next_tick": next_tick})

    def listing(self) -> Bound:
        """Every schedule: ``name``, ``spec``, ``last_tick``, ``next_tick``,
        ``updated_at``, by name."""
        s = self.schedules.c
        statement = select(s.name, s.spec, s.last_tick, s.next_tick, s.updated_at).order_by(s.name)
        return Bound(statement, {})

    def readable(self) -> Bound:
        """Whether the schedules table exists in the database and this role may read it
        (one boolean)."""
        table = func.to_regclass(param("p_table", Text()))
        statement = select(
            and_(table.is_not(None), func.has_table_privilege(table, literal("SELECT")))
        )
        return Bound(statement, {"p_table": format_table(self.schedules)})


@functools.cache
def _statements_of(jobs: Table, schedules: Table) -> ScheduleStatements:
    return ScheduleStatements(jobs, schedules)
