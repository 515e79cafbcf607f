"""Every lifecycle statement of a job table, built once per table: the one place SQL is written.

:meth:`JobStatements.of` builds (and caches) the statements of one mapped job table as
SQLAlchemy Core with named bind parameters, so that each has one fixed text the driver
prepares once. Each method returns a :class:`Bound` statement, its parameters filled in from
values that the caller has checked already; the caller only executes it:
:class:`~sqla_jobqueue.JobQueue` on a ``Session``, :class:`~sqla_jobqueue.AsyncJobQueue` on
an ``AsyncSession``, the worker, the maintenance duties and :mod:`sqla_jobqueue.testing` on
their connections.

Writes to a job that a worker holds are fenced by :func:`holder_fence`, the one definition of
"this worker still holds this attempt of this job". Constants that select a partial index
(``status = 'pending'``, the held statuses) are inlined literals: a generic plan cannot use a
partial index through a parameter.

The worker's round (:meth:`JobStatements.complete_and_claim`) completes many jobs and claims
the next ones in one statement; its claimed rows go straight to ``running``. A claim may
resume after the :class:`ClaimPosition` of the previous one, so that it does not step again
over the index entries of jobs claimed before it. :func:`driver_sql` compiles a statement for
execution on the driver directly, with list parameters sent in binary on psycopg.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    CompoundSelect,
    DateTime,
    Dialect,
    Executable,
    Integer,
    Interval,
    Select,
    String,
    Table,
    Text,
    Uuid,
    all_,
    and_,
    any_,
    bindparam,
    case,
    column,
    delete,
    false,
    func,
    literal,
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
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.compiler import Compiled

from .backoff import Backoff, sql_delay
from .model import (
    DEFAULT_MAX_ATTEMPTS,
    FINISHED_STATUSES,
    HELD_STATUSES,
    LIVE_STATUSES,
    UNIQUE_KEY_PREDICATE,
    JobStatus,
    Priority,
)
from .sql import format_table

__all__ = [
    "Bound",
    "ClaimPosition",
    "Claimed",
    "JobStatements",
    "claim_candidates",
    "copy_data",
    "driver_sql",
    "holder_fence",
    "loading",
    "stale_condition",
]


class Bound(NamedTuple):
    """A statement with its parameters, ready to execute."""

    statement: Executable
    params: dict[str, Any]


class Claimed(NamedTuple):
    """A job claimed by a worker's round (:meth:`JobStatements.complete_and_claim`)."""

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
_CLAIMED_COLUMNS = ("id", "job_type", "data", "attempts", "max_attempts", "priority", "created_at")
_ARRAY_PARAMS = (
    "p_ids", "p_attempts", "p_results", "p_percents", "p_stages", "p_events", "p_job_types",
)  # fmt: skip


def _literals(statuses: Iterable[JobStatus]) -> list[Any]:
    return [literal_column(f"'{status.value}'") for status in statuses]


def _status(status: JobStatus) -> Any:
    return literal_column(f"'{status.value}'")


_NOT_HELD = [status for status in JobStatus if status not in HELD_STATUSES]
_CLAIM_ORDER: tuple[Any, ...] = (
    literal_column("priority").desc(),
    literal_column("created_at"),
    literal_column("id"),
)


def _param(name: str, type_: Any) -> Any:
    return bindparam(name, type_=type_)


def holder_fence(
    table: Table,
    job_id: Any,
    *,
    attempt: Any | None,
    worker_id: Any | None,
    statuses: Sequence[JobStatus] = HELD_STATUSES,
    batch: bool = False,
) -> tuple[ColumnElement[bool], ...]:
    """Whether a worker still holds a job: the job's id, its ``attempt``, the ``worker_id``
    that claimed it, and a status of ``statuses``. ``None`` leaves that part out.

    ``batch`` is for a relation of many jobs joined by primary key (one index probe per
    job): there neither the worker nor the status condition may select an index, on
    purpose, since through the partial index of held jobs a generic plan (estimating one
    held row) would rescan the whole batch for every held row.
    """
    c = table.c
    conditions: list[ColumnElement[bool]] = [c.id == job_id]
    if attempt is not None:
        conditions.append(c.attempts == attempt)
    if batch:
        if worker_id is not None:
            conditions.append(func.coalesce(c.worker_id, "") == worker_id)
        others = [status for status in JobStatus if status not in statuses]
        conditions.append(c.status.not_in(_literals(others)))
    else:
        if worker_id is not None:
            conditions.append(c.worker_id == worker_id)
        conditions.append(
            c.status == _status(statuses[0])
            if len(statuses) == 1
            else c.status.in_(_literals(statuses))
        )
    return tuple(conditions)


def claim_candidates(table: Table, limit: Any, job_types: Any | None = None) -> Select[Any]:
    """The ids a claim takes, locked: due pending jobs with attempts left, highest
    priority first, then oldest, then by id, skipping rows another claim has locked.

    ``limit`` and ``job_types`` (an array expression, ``None`` for every type) may be
    values or bound parameters. The repository's claim, the worker's round and the
    installed ``claim_job_batch`` all select this way.
    """
    c = table.c
    candidates = (
        select(c.id)
        .where(
            c.status == _status(JobStatus.PENDING),
            c.run_at <= func.statement_timestamp(),
            c.attempts < c.max_attempts,
        )
        .order_by(c.priority.desc(), c.created_at, c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    if job_types is not None:
        candidates = candidates.where(c.job_type == any_(job_types))
    return candidates


def _claim_after(table: Table, limit: Any, job_types: Any | None) -> CompoundSelect[Any]:
    """:func:`claim_candidates` resumed after a position.

    Three index range scans, run lazily one after the other until ``limit`` rows are
    locked: higher priorities from their start, the position's priority after the
    position, lower priorities from their start. In a long drain the entries before the
    position belong to jobs already claimed; until VACUUM removes them, a scan from the
    start of the index would step over every one of them on every claim.
    """
    c = table.c
    priority = _param("p_after_priority", Integer())
    after = tuple_(c.created_at, c.id) > tuple_(
        _param("p_after_created_at", c.created_at.type), _param("p_after_id", Uuid())
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


def _stale(c: Any, timeout: Any) -> ColumnElement[bool]:
    return and_(
        c.status.in_(_literals(HELD_STATUSES)),
        func.coalesce(c.heartbeat_at, c.claimed_at) < func.statement_timestamp() - timeout,
    )


def stale_condition(model: Any, timeout: timedelta) -> ColumnElement[bool]:
    """Held jobs whose heartbeat (or claim, before any heartbeat) is older than ``timeout``
    by the database clock: what a rescue takes back. ``model`` is a job model or table."""
    columns = model.c if isinstance(model, Table) else model.__table__.c
    return _stale(columns, literal(timeout, Interval()))


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


_RECORD_COLUMNS = (
    ("id", Uuid()),
    ("job_type", String()),
    ("data", JSONB()),
    ("priority", Integer()),
    ("max_attempts", Integer()),
    ("run_at", DateTime(timezone=True)),
    ("run_in", Interval()),
    ("unique_key", String()),
)
_MICROSECOND = timedelta(microseconds=1)
_encode_json = json.JSONEncoder(ensure_ascii=False).encode


def _or_null(values: Sequence[Any]) -> list[Any] | None:
    """``values`` as a list, or ``None`` when every one of them is ``None``."""
    return list(values) if values.count(None) < len(values) else None


def _counts_or_null(counts: Sequence[int]) -> list[int] | None:
    """``counts`` as a list, or ``None`` when every one of them is 0 (nothing to add)."""
    return list(counts) if any(counts) else None


class JobStatements:
    """The statements of one job table. Get them with :meth:`of`, which builds them once.

    Parameters
    ----------
    table:
        The job table (``Model.__table__``).
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._built: dict[tuple[Any, ...], Any] = {}
        c = table.c
        self._worker = _param("p_worker_id", String())
        self._now = func.statement_timestamp()
        self.copy_sql = (
            f"COPY {format_table(table)} (id, job_type, data, priority, max_attempts) "
            "FROM STDIN (FORMAT BINARY)"
        )
        """``COPY … FROM STDIN (FORMAT BINARY)`` of :func:`copy_data`; ``run_at`` defaults."""
        self._job = c.id == _param("p_id", Uuid())
        self._fenced_one = holder_fence(
            table,
            _param("p_id", Uuid()),
            attempt=_param("p_attempt", Integer()),
            worker_id=self._worker,
        )

    @classmethod
    def of(cls, table: Table) -> JobStatements:
        """The statements of ``table``, built on first use and kept."""
        return _statements_of(table)

    def _once(self, key: tuple[Any, ...], build: Any) -> Any:
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = build()
        return built

    # ------------------------------------------------------------------ enqueue

    def enqueue_one(self, row: dict[str, Any]) -> Bound:
        """``INSERT … VALUES`` of one checked row (see ``check_job``), returning
        ``created_at`` and ``run_at``; a live job of the same ``unique_key`` inserts
        nothing. A job due now binds neither ``run_at`` nor ``unique_key``."""
        unique = row["unique_key"] is not None
        due = row["run_at_abs"] is None and not row["run_in"]
        return Bound(
            self._once(("enqueue_one", unique, due), lambda: self._insert_one(unique, due)), row
        )

    def _insert_one(self, unique: bool, due: bool) -> Any:
        c = self.table.c
        values: dict[Any, Any] = {
            c.id: _param("id", Uuid()),
            c.job_type: _param("job_type", String()),
            c.data: sql_cast(_param("data_json", Text()), JSONB()),
            c.priority: _param("priority", Integer()),
            c.max_attempts: _param("max_attempts", Integer()),
            c.run_at: self._now
            if due
            else func.coalesce(
                _param("run_at_abs", DateTime(timezone=True)),
                self._now + _param("run_in", Interval()),
            ),
        }
        if unique:
            values[c.unique_key] = _param("unique_key", String())
        statement = pg_insert(self.table).values(values)
        if unique:
            statement = statement.on_conflict_do_nothing(
                index_elements=[c.unique_key], index_where=literal_column(UNIQUE_KEY_PREDICATE)
            )
        return statement.returning(c.created_at, c.run_at)

    def enqueue_page(self, rows: list[dict[str, Any]]) -> Bound:
        """``INSERT … SELECT FROM jsonb_to_recordset(:jobs)`` of checked rows.

        The jobs travel as one JSON array parameter, so the statement text is the same for
        one job or thousands, and the server parses the rows in C. With unique keys among
        them it skips live keys and returns the ids it inserted.
        """
        unique = any(row["unique_key"] is not None for row in rows)
        statement = self._once(("enqueue_page", unique), lambda: self._insert_page(unique))
        return Bound(statement, {"jobs": _jobs_json(rows)})

    def _insert_page(self, unique: bool) -> Any:
        new = (
            func.jsonb_to_recordset(sql_cast(bindparam("jobs", type_=Text()), JSONB()))
            .table_valued(*(column(name, type_) for name, type_ in _RECORD_COLUMNS))
            .render_derived(name="new_jobs", with_types=True)
        )
        rows = select(
            new.c.id,
            new.c.job_type,
            new.c.data,
            new.c.priority,
            new.c.max_attempts,
            func.coalesce(new.c.run_at, self._now + new.c.run_in),
            new.c.unique_key,
        )
        columns = ["id", "job_type", "data", "priority", "max_attempts", "run_at", "unique_key"]
        statement = pg_insert(self.table).from_select(columns, rows)
        if not unique:
            return statement
        return statement.on_conflict_do_nothing(
            index_elements=[self.table.c.unique_key],
            index_where=literal_column(UNIQUE_KEY_PREDICATE),
        ).returning(self.table.c.id)

    def live_with_key(self, unique_key: str) -> Bound:
        """The live job that holds ``unique_key``, all its columns."""

        def build() -> Any:
            c = self.table.c
            return select(self.table).where(
                c.unique_key == _param("unique_key", String()),
                c.status.in_(_literals(LIVE_STATUSES)),
            )

        return Bound(self._once(("live_with_key",), build), {"unique_key": unique_key})

    def live_ids_with_keys(self, keys: Iterable[str]) -> Bound:
        """``(unique_key, id)`` of the live jobs that hold any of ``keys``."""

        def build() -> Any:
            c = self.table.c
            return select(c.unique_key, c.id).where(
                c.unique_key == any_(_param("p_keys", ARRAY(String()))),
                c.status.in_(_literals(LIVE_STATUSES)),
            )

        return Bound(self._once(("live_ids_with_keys",), build), {"p_keys": sorted(set(keys))})

    # -------------------------------------------------------------------- claim

    def claim(self, worker_id: str, limit: int, job_types: list[str] | None) -> Bound:
        """Claim up to ``limit`` due jobs as ``claimed`` by ``worker_id``, all columns
        returned (in no order)."""
        typed = job_types is not None
        statement = self._once(
            ("claim", typed), lambda: self._claiming(typed, False, JobStatus.CLAIMED, None)
        )
        params: dict[str, Any] = {"p_worker_id": worker_id, "p_limit": limit}
        if job_types is not None:
            params["p_job_types"] = job_types
        return Bound(statement, params)

    def _claiming(
        self, typed: bool, resumed: bool, status: JobStatus, returning: list[Any] | None
    ) -> Any:
        table, c = self.table, self.table.c
        limit = _param("p_limit", Integer())
        types = _param("p_job_types", ARRAY(String())) if typed else None
        candidates: Any = (
            _claim_after(table, limit, types) if resumed else claim_candidates(table, limit, types)
        )
        values: dict[str, Any] = {
            "status": _status(status),
            "worker_id": self._worker,
            "claimed_at": self._now,
        }
        if status is JobStatus.RUNNING:
            values["started_at"] = self._now
        values["heartbeat_at"] = self._now
        values["attempts"] = c.attempts + 1
        return (
            update(table)
            # id = ANY(ARRAY(…)) rather than IN (…): the planner then fetches the few
            # claimed rows by primary key instead of hashing a scan of the whole table.
            .where(c.id == any_(func.array(candidates.scalar_subquery())))
            .values(values)
            .returning(*(table.c if returning is None else returning))
        )

    def complete_and_claim(
        self,
        worker_id: str,
        ids: Sequence[uuid.UUID],
        attempts: Sequence[int],
        results: Sequence[str | None],
        stages: Sequence[str | None],
        events: Sequence[int],
        limit: int,
        job_types: Sequence[str] | None,
        after: ClaimPosition | None = None,
    ) -> Bound:
        """A worker's round, one statement: complete the jobs ``ids`` it holds in the
        ``attempts`` given (with their JSON ``results`` and the progress ``stages`` and
        ``events`` not written yet) and claim up to ``limit`` due jobs as ``running``.

        With ``after``, the claim takes due jobs of higher priority than ``after``, then
        those of its priority that come after it, then those of lower priority. Rows:
        ``(True, id, NULL…)`` for each job completed, then ``(False, *Claimed)`` for each
        job claimed, in claim order.
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
            "p_worker_id": worker_id,
        }
        if job_types is not None:
            params["p_job_types"] = list(job_types)
        if after is not None:
            params["p_after_priority"] = after.priority
            params["p_after_created_at"] = after.created_at
            params["p_after_id"] = after.id
        key = (job_types is not None, after is not None)
        return Bound(self._once(("round", *key), lambda: self._round(*key)), params)

    def _round(self, typed: bool, resumed: bool) -> Any:
        c = self.table.c
        returning = [
            # data as text: a handler that never reads it never pays for decoding it.
            sql_cast(c.data, Text()).label("data") if name == "data" else c[name]
            for name in _CLAIMED_COLUMNS
        ]
        claimed = self._claiming(typed, resumed, JobStatus.RUNNING, returning).cte("claimed")
        done = _per_job("done", _COMPLETION_COLUMNS)
        completed = (
            update(self.table)
            .where(*self._fenced_batch(done))
            .values(
                status=JobStatus.COMPLETED.value,
                progress=100,
                completed_at=self._now,
                result=done.c.result,
                # Progress the worker had not written yet travels with the completion.
                current_stage=func.coalesce(done.c.stage, c.current_stage),
                events_count=c.events_count + func.coalesce(done.c.events, 0),
            )
            .returning(c.id)
            .cte("completed")
        )
        blanks = [null().label(name) for name in _CLAIMED_COLUMNS[1:]]
        # Claimed rows in claim order (completed rows have no priority and come first).
        return union_all(
            select(true().label("completed"), completed.c.id, *blanks),
            select(false(), *(claimed.c[name] for name in _CLAIMED_COLUMNS)),
        ).order_by(*_CLAIM_ORDER)

    def _fenced_batch(self, per_job: Any) -> tuple[ColumnElement[bool], ...]:
        return holder_fence(
            self.table,
            per_job.c.id,
            attempt=per_job.c.attempt,
            worker_id=self._worker,
            batch=True,
        )

    # ------------------------------------------------------- one job's changes

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
                _param("p_id", Uuid()),
                attempt=_param("p_attempt", Integer()) if attempt else None,
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
                "progress": func.coalesce(_param("p_percent", Integer()), c.progress),
                "current_stage": func.coalesce(_param("p_stage", String()), c.current_stage),
                "events_count": c.events_count + _param("p_events", Integer()),
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
                "result": sql_cast(_param("p_result", Text()), JSONB()),
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
        retry_in: timedelta | None,
        backoff: Backoff,
    ) -> Bound:
        """A failed attempt of a held job: back to ``pending`` after ``retry_in`` (or
        ``backoff``, from its attempts) while attempts remain, else ``failed``;
        ``last_error`` keeps ``error`` either way."""
        c = self.table.c
        fixed = retry_in is not None

        def values() -> dict[str, Any]:
            delay = _param("p_retry_in", Interval()) if fixed else sql_delay(c.attempts)
            spent = c.attempts >= c.max_attempts
            now = self._now
            return {
                "status": case((spent, JobStatus.FAILED.value), else_=JobStatus.PENDING.value),
                "last_error": _param("p_error", Text()),
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
        params["p_error"] = error.replace("\x00", "\\0")
        if retry_in is not None:
            params["p_retry_in"] = retry_in
        else:
            params.update(backoff.sql_params())
        return Bound(statement, params)

    def cancel(self, job_id: uuid.UUID) -> Bound:
        """A job that has not finished ends ``cancelled`` (whoever holds it)."""

        def values() -> dict[str, Any]:
            return {"status": JobStatus.CANCELLED.value, "completed_at": self._now}

        statement = self._change("cancel", LIVE_STATUSES, values, worker=False, attempt=False)
        return Bound(statement, {"p_id": job_id})

    def retry(self, job_id: uuid.UUID) -> Bound:
        """A ``failed`` job goes back to ``pending``, attempts reset, due now."""

        def values() -> dict[str, Any]:
            return {
                "status": JobStatus.PENDING.value,
                "attempts": 0,
                "run_at": self._now,
                "worker_id": None,
                "claimed_at": None,
                "heartbeat_at": None,
                "started_at": None,
                "completed_at": None,
                "progress": 0,
            }

        statement = self._change("retry", (JobStatus.FAILED,), values, worker=False, attempt=False)
        return Bound(statement, {"p_id": job_id})

    def snooze(self, job_id: uuid.UUID, worker_id: str, attempt: int, after: timedelta) -> Bound:
        """A handler's ``Retry``: the held job goes back to ``pending`` until ``after``
        passed, without counting a failure. Returns its id when the worker held it."""

        def build() -> Any:
            c = self.table.c
            return (
                update(self.table)
                .where(*self._fenced_one)
                .values(
                    status=JobStatus.PENDING.value,
                    max_attempts=func.least(c.max_attempts + 1, _MAX_INT32),
                    run_at=self._now + _param("p_after", Interval()),
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
                .where(*self._fenced_one)
                .values(
                    status=JobStatus.CANCELLED.value,
                    completed_at=self._now,
                    last_error=_param("p_reason", Text()),
                )
                .returning(self.table.c.id)
            )

        params = {
            "p_id": job_id,
            "p_attempt": attempt,
            "p_worker_id": worker_id,
            "p_reason": reason.replace("\x00", "\\0"),
        }
        return Bound(self._once(("cancel_held",), build), params)

    def holder_of(self, job_id: uuid.UUID) -> Bound:
        """``status``, ``worker_id`` and ``attempts`` of a job: why a change was refused."""

        def build() -> Any:
            c = self.table.c
            return select(c.status, c.worker_id, c.attempts).where(self._job)

        return Bound(self._once(("holder_of",), build), {"p_id": job_id})

    # ------------------------------------------------------ a worker's jobs

    def heartbeat(self, worker_id: str, ids: list[uuid.UUID] | None) -> Bound:
        """Refresh the heartbeat of the jobs ``worker_id`` holds (only ``ids`` if given)."""
        mine = ids is not None

        def build() -> Any:
            c = self.table.c
            conditions = [c.status.in_(_literals(HELD_STATUSES)), c.worker_id == self._worker]
            if mine:
                conditions.append(c.id == any_(_param("p_ids", ARRAY(Uuid()))))
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
            mine = (c.worker_id == self._worker, c.status.in_(_literals(HELD_STATUSES)))
            beating = (
                select(c.id)
                .where(c.id == any_(_param("p_ids", ARRAY(Uuid()))), *mine)
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
            reported = _per_job("reported", _PROGRESS_COLUMNS)
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
            "p_percents": _or_null(percents),
            "p_stages": _or_null(stages),
            "p_events": _counts_or_null(events),
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
            conditions = [c.status == _status(JobStatus.CLAIMED), c.worker_id == self._worker]
            if chosen:
                conditions.append(c.id == any_(_param("p_ids", ARRAY(Uuid()))))
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
                    c.status.in_(_literals(HELD_STATUSES)),
                    c.id != all_(_param("p_known", ARRAY(Uuid()))),
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
            ended = _literals((JobStatus.COMPLETED, JobStatus.CANCELLED))
            return select(c.id, c.status, c.attempts).where(
                c.id == any_(_param("p_ids", ARRAY(Uuid()))),
                c.worker_id == self._worker,
                c.status.in_(ended),
            )

        params = {"p_ids": list(ids), "p_worker_id": worker_id}
        return Bound(self._once(("settled",), build), params)

    # -------------------------------------------------------------- maintenance

    def recover_stale(self, timeout: timedelta) -> Bound:
        """Held jobs whose heartbeat is older than ``timeout`` go back to ``pending``: a
        ``claimed`` one with its attempt refunded, a ``running`` one charged (``failed``
        when none remain)."""

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
            return (
                update(self.table)
                .where(_stale(c, _param("p_timeout", Interval())))
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
        most ``limit`` of them."""
        limited = limit is not None

        def build() -> Any:
            c = self.table.c
            doomed = select(c.id).where(
                c.status.in_(_literals(FINISHED_STATUSES)),
                c.completed_at < self._now - _param("p_older_than", Interval()),
            )
            if limited:
                doomed = doomed.limit(_param("p_limit", Integer()))
            return delete(self.table).where(c.id.in_(doomed.scalar_subquery()))

        params: dict[str, Any] = {"p_older_than": older_than}
        if limit is not None:
            params["p_limit"] = limit
        return Bound(self._once(("prune", limited), build), params)

    # -------------------------------------------------------------------- reads

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
                statement = statement.where(c.job_type == _param("p_job_type", String()))
            if key[1]:
                statement = statement.where(c.status == _param("p_status", String()))
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
                c.status == _status(JobStatus.PENDING), c.run_at <= self._now
            )

        return Bound(self._once(("oldest_pending_age",), build), {})

    def probe(self) -> Bound:
        """Reads no row, but fails when the table cannot be read."""
        return Bound(self._once(("probe",), lambda: select(self.table.c.id).limit(0)), {})


@functools.cache
def _statements_of(table: Table) -> JobStatements:
    return JobStatements(table)


def driver_sql(dialect: Dialect, statement: Executable) -> tuple[str, Compiled]:
    """``statement`` compiled for ``dialect``, to run with ``exec_driver_sql`` on the
    parameters ``compiled.construct_params(params)``; compiled once per dialect.

    On psycopg, list parameters are sent in binary (``%(name)b``), several times faster
    than text; SQLAlchemy has no way to ask. Safe: the statement is ours, compiled by the
    psycopg dialect in its pyformat style, so each name occurs once as ``%(name)s`` (tests
    check this), and the SQL is only executed with ``exec_driver_sql``, which hands the
    string to psycopg as it is.
    """
    return _driver_sql(dialect.name, dialect.driver, dialect, statement)


_DRIVER_SQL: dict[tuple[str, str, int], tuple[str, Compiled, Executable]] = {}


def _driver_sql(
    name: str, driver: str, dialect: Dialect, statement: Executable
) -> tuple[str, Compiled]:
    key = (name, driver, id(statement))
    cached = _DRIVER_SQL.get(key)
    if cached is None or cached[2] is not statement:
        compiled = cast(Any, statement).compile(dialect=dialect)
        sql = compiled.string
        if driver == "psycopg":
            for parameter in _ARRAY_PARAMS:
                sql = sql.replace(f"%({parameter})s", f"%({parameter})b")
        # The statement is kept with its text so that its id is never reused meanwhile.
        cached = _DRIVER_SQL[key] = (sql, compiled, statement)
    return cached[0], cached[1]


# --------------------------------------------------------------- bulk enqueue data

_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # then no flags, no header extension
_COPY_END = b"\xff\xff"
_FIVE_FIELDS_AND_ID_LENGTH = b"\x00\x05\x00\x00\x00\x10"
_JSONB_VERSION = b"\x01"
_COPY_CHUNK_ROWS = 128
"""Rows per write of a COPY: the server loads one chunk while the next is being built."""


def _int4_fields(*values: int) -> bytes:
    return b"".join(b"\x00\x00\x00\x04" + value.to_bytes(4, "big", signed=True) for value in values)


_DEFAULT_SETTINGS = _int4_fields(Priority.DISCOVERED, DEFAULT_MAX_ATTEMPTS)


def copy_data(
    ids: Iterable[uuid.UUID],
    job_types: list[str],
    payloads: list[bytes],
    settings: list[tuple[int, int]] | None,
    taken: list[uuid.UUID] | None = None,
) -> Iterator[bytes]:
    """The binary stream of :attr:`JobStatements.copy_sql` for checked jobs, in chunks,
    built here rather than row by row by the driver (which adapts each value through its
    type registry).

    Columns: ``id``, ``job_type``, ``data`` (jsonb: a version byte, then the JSON text),
    ``priority`` and ``max_attempts`` (``settings``; ``None`` for the defaults). Each id
    is appended to ``taken`` as its row is written.
    """
    type_fields: dict[str, bytes] = {}
    setting_fields: dict[tuple[int, int], bytes] = {}
    chunks = [_COPY_SIGNATURE]
    add = chunks.append
    for index, (job_id, job_type, payload) in enumerate(zip(ids, job_types, payloads, strict=True)):
        type_field = type_fields.get(job_type)
        if type_field is None:
            encoded = job_type.encode()
            type_field = type_fields[job_type] = len(encoded).to_bytes(4, "big") + encoded
        setting_field = _DEFAULT_SETTINGS
        if settings is not None:
            setting = settings[index]
            if setting not in setting_fields:
                setting_fields[setting] = _int4_fields(*setting)
            setting_field = setting_fields[setting]
        if taken is not None:
            taken.append(job_id)
        add(_FIVE_FIELDS_AND_ID_LENGTH)
        add(job_id.int.to_bytes(16, "big"))
        add(type_field)
        add((len(payload) + 1).to_bytes(4, "big"))
        add(_JSONB_VERSION)
        add(payload)
        add(setting_field)
        if index % _COPY_CHUNK_ROWS == _COPY_CHUNK_ROWS - 1:
            yield b"".join(chunks)
            chunks.clear()
    add(_COPY_END)
    yield b"".join(chunks)


def _jobs_json(rows: list[dict[str, Any]]) -> str:
    """The JSON array of checked rows that :meth:`JobStatements.enqueue_page` unpacks.

    ``data_json`` was serialised (and checked) already; it is spliced in, not re-encoded.
    """
    dumps = _encode_json
    parts = []
    for row in rows:
        run_at = row["run_at_abs"]
        parts.append(
            f'{{"id":"{row["id"]}","job_type":{dumps(row["job_type"])},'
            f'"data":{row["data_json"]},"priority":{row["priority"]},'
            f'"max_attempts":{row["max_attempts"]},'
            f'"run_at":{"null" if run_at is None else dumps(run_at.isoformat())},'
            f'"run_in":"{row["run_in"] // _MICROSECOND} microseconds",'
            f'"unique_key":{dumps(row["unique_key"])}}}'
        )
    return "[" + ",".join(parts) + "]"


def loading(model: type[Any], bound: Bound) -> Bound:
    """``bound`` (a statement returning every column of the job table) made to load
    instances of ``model``, refreshing those the session holds already."""
    key = (model, bound.statement)
    loads = _LOADING.get(key)
    if loads is None:
        loads = _LOADING[key] = (
            select(model)
            .from_statement(cast(Any, bound.statement))
            .execution_options(populate_existing=True)
        )
    return Bound(loads, bound.params)


_LOADING: dict[tuple[type[Any], Executable], Executable] = {}
