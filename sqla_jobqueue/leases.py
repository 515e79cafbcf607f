"""The worker's hot-path statements: lean Core variants of JobQueue transitions.

:class:`~sqla_jobqueue.JobQueue` speaks in ORM instances, one job per statement. A worker
draining thousands of jobs a second needs the same transitions on many rows at once,
returning plain rows. This module builds them once per job table with SQLAlchemy Core,
using the same conditions as the repository:

- :meth:`LeaseStatements.complete_and_claim` is, in one statement, :meth:`JobQueue.complete
  <sqla_jobqueue.JobQueue.complete>` for many jobs (fenced per job by ``worker_id`` and
  ``attempts``) and :meth:`JobQueue.claim <sqla_jobqueue.JobQueue.claim>` (same candidate
  query, ``SKIP LOCKED``, same order) except that the claimed jobs go straight to
  ``running``: the worker claims only as many jobs as it has free slots and starts every
  one of them at once, so a job is never held without running and a crash charges exactly
  the jobs that were running.
  A claim may resume after the :class:`ClaimPosition` of the worker's previous claim, so
  that it does not step again over the index entries of the jobs claimed before it.
- :meth:`LeaseStatements.heartbeat` refreshes held jobs without waiting for row locks, and
  :meth:`LeaseStatements.give_back` returns held jobs the worker is not running, refunded.
- :meth:`LeaseStatements.snooze` (a handler's ``Retry``) and :meth:`LeaseStatements.cancel`
  (a handler's ``Cancel``) are fenced single-row updates the repository does not have.

Every statement reports the ids it changed; an id missing from the answer is a job this
worker no longer holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    CompoundSelect,
    Connection,
    Integer,
    Interval,
    String,
    Table,
    Text,
    Uuid,
    all_,
    and_,
    any_,
    bindparam,
    column,
    false,
    func,
    literal_column,
    null,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB

from .model import HELD_STATUSES, JobStatus
from .queue import claim_candidates

__all__ = ["ClaimPosition", "Claimed", "LeaseStatements"]


class Claimed(NamedTuple):
    """A job claimed by :meth:`LeaseStatements.complete_and_claim`."""

    id: uuid.UUID
    job_type: str
    data: str
    """The job's arguments as JSON text."""
    attempts: int
    max_attempts: int
    priority: int
    created_at: datetime


class ClaimPosition(NamedTuple):
    """A place in claim order (priority descending, then ``created_at``, then ``id``)."""

    priority: int
    created_at: datetime
    id: uuid.UUID

    @classmethod
    def of(cls, job: Claimed) -> ClaimPosition:
        """The position of a claimed job."""
        return cls(job.priority, job.created_at, job.id)


_MAX_INT32 = 2_147_483_647
_ARRAY_PARAMS = (
    "p_ids", "p_attempts", "p_results", "p_percents", "p_stages", "p_events", "p_job_types",
)  # fmt: skip
_CLAIMED_COLUMNS = ("id", "job_type", "data", "attempts", "max_attempts", "priority", "created_at")


# Literals, not parameters: the status list selects the partial index of held jobs.
_HELD: list[Any] = [literal_column(f"'{status.value}'") for status in HELD_STATUSES]
_NOT_HELD: list[Any] = [
    literal_column(f"'{status.value}'") for status in JobStatus if status not in HELD_STATUSES
]


_CLAIM_ORDER: tuple[Any, ...] = (
    literal_column("priority").desc(),
    literal_column("created_at"),
    literal_column("id"),
)


class LeaseStatements:
    """Statements on the jobs one worker holds, for one job table.

    Parameters
    ----------
    table:
        The job table (``Model.__table__``).
    worker_id:
        The worker whose jobs these statements claim and write.
    """

    def __init__(self, table: Table, worker_id: str) -> None:
        self.table = table
        self.worker_id = worker_id
        self._cache: dict[tuple[int, str], Any] = {}
        c = table.c
        now = func.statement_timestamp()
        # data as text: a handler that never reads it never pays for decoding it.
        returning = [
            sql_cast(c.data, Text()).label("data") if name == "data" else c[name]
            for name in _CLAIMED_COLUMNS
        ]

        def claim(typed: bool, resumed: bool) -> Any:
            limit = bindparam("p_limit", type_=Integer())
            types = bindparam("p_job_types", type_=ARRAY(String())) if typed else None
            if resumed:
                candidates: Any = _claim_after(table, limit, types)
            else:
                candidates = claim_candidates(table, limit, types)
            return (
                update(table)
                # id = ANY(ARRAY(…)) rather than IN (…): the planner then fetches the few
                # claimed rows by primary key instead of hashing a scan of the whole table.
                .where(c.id == any_(func.array(candidates.scalar_subquery())))
                .values(
                    status=literal_column(f"'{JobStatus.RUNNING.value}'"),
                    worker_id=bindparam("p_worker_id", type_=String()),
                    claimed_at=now,
                    started_at=now,
                    heartbeat_at=now,
                    attempts=c.attempts + 1,
                )
                .returning(*returning)
            )

        done = _per_job("done", _COMPLETION_COLUMNS)
        self._complete_many = (
            update(table)
            .where(*_fenced_by(table, done))
            .values(
                status=JobStatus.COMPLETED.value,
                progress=100,
                completed_at=now,
                result=done.c.result,
                # Progress the worker had not written yet travels with the completion.
                current_stage=func.coalesce(done.c.stage, c.current_stage),
                events_count=c.events_count + func.coalesce(done.c.events, 0),
            )
            .returning(c.id)
        )
        reported = _per_job("reported", _PROGRESS_COLUMNS)
        self._write_progress = (
            update(table)
            .where(*_fenced_by(table, reported))
            .values(
                progress=func.coalesce(reported.c.percent, c.progress),
                current_stage=func.coalesce(reported.c.stage, c.current_stage),
                events_count=c.events_count + func.coalesce(reported.c.events, 0),
                heartbeat_at=now,
            )
            .returning(c.id)
        )

        def round_trip(claim_statement: Any) -> Any:
            completed = self._complete_many.cte("completed")
            claimed = claim_statement.cte("claimed")
            blanks = [null().label(name) for name in _CLAIMED_COLUMNS[1:]]
            # Claimed rows in claim order (completed rows have no priority and come first).
            return union_all(
                select(true().label("completed"), completed.c.id, *blanks),
                select(false(), *(claimed.c[name] for name in _CLAIMED_COLUMNS)),
            ).order_by(*_CLAIM_ORDER)

        # Keyed by (job types given, resumed after a position).
        self._rounds = {
            (typed, resumed): round_trip(claim(typed, resumed))
            for typed in (False, True)
            for resumed in (False, True)
        }

        fenced = (
            c.id == bindparam("p_id", type_=Uuid()),
            c.attempts == bindparam("p_attempt", type_=Integer()),
            c.worker_id == bindparam("p_worker_id", type_=String()),
            c.status.in_(_HELD),
        )
        self._snooze = (
            update(table)
            .where(*fenced)
            .values(
                status=JobStatus.PENDING.value,
                max_attempts=func.least(c.max_attempts + 1, _MAX_INT32),
                run_at=now + bindparam("p_after", type_=Interval()),
                worker_id=None,
                claimed_at=None,
                heartbeat_at=None,
                started_at=None,
            )
            .returning(c.id)
        )
        mine = (
            c.worker_id == bindparam("p_worker_id", type_=String()),
            c.status.in_(_HELD),
        )
        # SKIP LOCKED: a heartbeat never waits for a row another transaction of this worker
        # is writing (that row is being completed, failed or given progress anyway), so it
        # is never delayed by the dispatcher and can take part in no lock cycle.
        beating = (
            select(c.id)
            .where(c.id == any_(bindparam("p_ids", type_=ARRAY(Uuid()))), *mine)
            .with_for_update(skip_locked=True, key_share=True)
        )
        self._heartbeat = (
            update(table)
            .where(c.id == any_(func.array(beating.scalar_subquery())), *mine)
            .values(heartbeat_at=now)
        )
        self._give_back = (
            update(table)
            .where(*mine, c.id != all_(bindparam("p_known", type_=ARRAY(Uuid()))))
            .values(
                status=JobStatus.PENDING.value,
                attempts=func.greatest(c.attempts - 1, 0),
                worker_id=None,
                claimed_at=None,
                heartbeat_at=None,
                started_at=None,
                run_at=func.least(c.run_at, now),
            )
            .returning(c.id)
        )
        self._cancel = (
            update(table)
            .where(*fenced)
            .values(
                status=JobStatus.CANCELLED.value,
                completed_at=now,
                last_error=bindparam("p_reason", type_=Text()),
            )
            .returning(c.id)
        )

    def complete_and_claim(
        self,
        connection: Connection,
        ids: Sequence[uuid.UUID],
        attempts: Sequence[int],
        results: Sequence[str | None],
        stages: Sequence[str | None],
        events: Sequence[int],
        limit: int,
        job_types: Sequence[str] | None,
        after: ClaimPosition | None = None,
    ) -> tuple[list[uuid.UUID], list[Claimed]]:
        """Complete held jobs with their JSON ``results`` (and the progress ``stages`` and
        ``events`` not written yet) and claim up to ``limit`` due jobs
        as ``running``, in one statement.

        With ``after``, the claim takes due jobs of higher priority than ``after``, then
        those of its priority that come after it, then those of lower priority: it skips
        only the jobs of ``after``'s priority that sort before it.

        One round trip (and, on an autocommit connection, one implicit transaction) per
        round of the worker. Returns the ids completed (each once, in no order) and the rows
        claimed, in claim order.
        """
        # Arrays with nothing in them travel as NULL (unnest() pads them with NULLs): most
        # rounds have no results, no stages and no events to write.
        params: dict[str, Any] = {
            "p_ids": list(ids),
            "p_attempts": list(attempts),
            "p_results": _or_null(results),
            "p_stages": _or_null(stages),
            "p_events": _counts_or_null(events),
            "p_limit": limit,
            "p_worker_id": self.worker_id,
        }
        if job_types is not None:
            params["p_job_types"] = list(job_types)
        if after is not None:
            params["p_after_priority"] = after.priority
            params["p_after_created_at"] = after.created_at
            params["p_after_id"] = after.id
        statement = self._rounds[job_types is not None, after is not None]
        done: list[uuid.UUID] = []
        claimed: list[Claimed] = []
        for row in self._driver_rows(connection, statement, params):
            if row[0]:
                done.append(row[1])
            else:
                claimed.append(Claimed._make(row[1:]))
        return done, claimed

    def _driver_rows(
        self, connection: Connection, statement: Any, params: dict[str, Any]
    ) -> Sequence[Any]:
        """Run ``statement`` and return the driver's own rows.

        These columns need no processing, and on the hot path building SQLAlchemy rows
        costs more per job than anything else but the database. The statement still runs
        through SQLAlchemy (its events, logging, error wrapping and invalidation of a lost
        connection).
        """
        sql, full = self._compiled(connection, statement, params)
        result = connection.exec_driver_sql(sql, full)
        try:
            rows = result.cursor.fetchall()
        finally:
            result.close()
        return rows

    def _compiled(
        self, connection: Connection, statement: Any, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        key = (id(statement), connection.dialect.name)
        cached = self._cache.get(key)
        if cached is None:
            compiled = statement.compile(dialect=connection.dialect)
            sql = compiled.string
            if connection.dialect.driver == "psycopg":
                # psycopg sends lists in binary when asked (``%(name)b``), several times
                # faster than text; SQLAlchemy has no way to ask. Safe: the statement is ours,
                # compiled by the psycopg dialect in its pyformat style, so each name occurs
                # once as ``%(name)s`` (tests check this) and the SQL is only executed with
                # exec_driver_sql, which hands the string to psycopg as it is.
                for name in _ARRAY_PARAMS:
                    sql = sql.replace(f"%({name})s", f"%({name})b")
            cached = self._cache[key] = (sql, compiled)
        sql, compiled = cached
        return sql, compiled.construct_params(params)

    def heartbeat(self, connection: Connection, ids: Sequence[uuid.UUID]) -> int:
        """Refresh ``heartbeat_at`` of the held jobs among ``ids`` that no transaction is
        writing; return how many were refreshed."""
        if not ids:
            return 0
        params = {"p_ids": sorted(ids), "p_worker_id": self.worker_id}
        return int(getattr(connection.execute(self._heartbeat, params), "rowcount", 0))

    def write_progress(
        self,
        connection: Connection,
        ids: Sequence[uuid.UUID],
        attempts: Sequence[int],
        percents: Sequence[int | None],
        stages: Sequence[str | None],
        events: Sequence[int],
    ) -> set[uuid.UUID]:
        """Write the progress reported by running jobs, one statement for all of them, and
        refresh their heartbeats; return the ids of the jobs this worker still held.

        ``None`` leaves a job's percent or stage as it is; ``events`` are added to
        ``events_count``.
        """
        params: dict[str, Any] = {
            "p_ids": list(ids),
            "p_attempts": list(attempts),
            "p_percents": _or_null(percents),
            "p_stages": _or_null(stages),
            "p_events": _counts_or_null(events),
            "p_worker_id": self.worker_id,
        }
        return {row[0] for row in self._driver_rows(connection, self._write_progress, params)}

    def give_back(self, connection: Connection, known: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Return this worker's held jobs that are not in ``known`` to ``pending``, refunding
        the attempt of their claim; return their ids.

        After a round whose commit happened but whose answer was lost, the database may
        hold jobs for this worker that it never started: they were not run, so they are
        not charged.
        """
        params = {"p_known": list(known), "p_worker_id": self.worker_id}
        return list(connection.execute(self._give_back, params).scalars())

    def snooze(
        self, connection: Connection, job_id: uuid.UUID, attempt: int, after: timedelta
    ) -> bool:
        """Send a held job back to pending until ``after`` passed, not counting a failure."""
        params = {
            "p_id": job_id,
            "p_attempt": attempt,
            "p_worker_id": self.worker_id,
            "p_after": after,
        }
        return connection.execute(self._snooze, params).first() is not None

    def cancel(self, connection: Connection, job_id: uuid.UUID, attempt: int, reason: str) -> bool:
        """End a held job as cancelled with ``reason`` in ``last_error``."""
        params = {
            "p_id": job_id,
            "p_attempt": attempt,
            "p_worker_id": self.worker_id,
            "p_reason": reason.replace("\x00", "\\0"),
        }
        return connection.execute(self._cancel, params).first() is not None


def _or_null(values: Sequence[Any]) -> list[Any] | None:
    """``values`` as a list, or ``None`` when every one of them is ``None``."""
    return list(values) if values.count(None) < len(values) else None


def _counts_or_null(counts: Sequence[int]) -> list[int] | None:
    """``counts`` as a list, or ``None`` when every one of them is 0 (nothing to add)."""
    return list(counts) if any(counts) else None


def _claim_after(table: Table, limit: Any, job_types: Any | None) -> CompoundSelect[Any]:
    """:func:`~sqla_jobqueue.queue.claim_candidates` resumed after a position.

    Three index range scans, run lazily one after the other until ``limit`` rows are
    locked: higher priorities from their start, the position's priority after the
    position, lower priorities from their start. In a long drain the entries before the
    position belong to jobs already claimed; until VACUUM removes them, a scan from the
    start of the index would step over every one of them on every claim.
    """
    c = table.c
    priority = bindparam("p_after_priority", type_=Integer())
    after = tuple_(c.created_at, c.id) > tuple_(
        bindparam("p_after_created_at", type_=c.created_at.type),
        bindparam("p_after_id", type_=Uuid()),
    )
    ranges = {
        "higher": c.priority > priority,
        "same": and_(c.priority == priority, after),
        "lower": c.priority < priority,
    }
    # Each range is a subquery: FOR UPDATE is not allowed directly in a UNION.
    scans = [
        select(claim_candidates(table, limit, job_types).where(condition).subquery(name).c.id)
        for name, condition in ranges.items()
    ]
    return union_all(*scans).limit(limit)


# (column of the per-job relation, its array parameter, its type)
_COMPLETION_COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("id", "p_ids", Uuid()),
    ("attempt", "p_attempts", Integer()),
    ("result", "p_results", JSONB()),
    ("stage", "p_stages", Text()),
    ("events", "p_events", Integer()),
)
_PROGRESS_COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("id", "p_ids", Uuid()),
    ("attempt", "p_attempts", Integer()),
    ("percent", "p_percents", Integer()),
    ("stage", "p_stages", Text()),
    ("events", "p_events", Integer()),
)


def _per_job(name: str, columns: tuple[tuple[str, str, Any], ...]) -> Any:
    """``unnest(:p_ids, :p_attempts, …) AS name(id, attempt, …)``: one row per job
    written, from one array parameter per column (JSONB travels as text)."""
    arrays = [
        sql_cast(bindparam(parameter, type_=ARRAY(Text())), ARRAY(JSONB()))
        if isinstance(type_, JSONB)
        else bindparam(parameter, type_=ARRAY(type_))
        for _, parameter, type_ in columns
    ]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(name_, type_) for name_, _, type_ in columns))
        .render_derived(name=name)
    )


def _fenced_by(table: Table, per_job: Any) -> tuple[Any, ...]:
    """The jobs of ``per_job`` this worker still holds in the attempt given for each.

    Joined by primary key: one index probe per job. Neither other condition can select an
    index, on purpose: through the partial index of held jobs, a generic plan (estimating
    one held row) would rescan the whole batch for every held row.
    """
    c = table.c
    return (
        c.id == per_job.c.id,
        c.attempts == per_job.c.attempt,
        func.coalesce(c.worker_id, "") == bindparam("p_worker_id", type_=String()),
        c.status.not_in(_NOT_HELD),
    )
