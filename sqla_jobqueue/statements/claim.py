"""Claiming: the repository's claim, and the worker's round that completes and claims at once.

Every claim selects its jobs by :func:`claim_candidates`: due pending jobs with attempts
left, of types that are neither paused nor limited, highest priority first, then oldest,
then by id, locked ``FOR NO KEY UPDATE SKIP LOCKED``. Jobs of limited types (a controls
row with ``max_running``, ``max_running_per_key`` or ``rate_limit``) are claimed only by
the installed limited claim function, which selects the others the same way, adds the
limited types' jobs within their limits and keeps the best of both: the repository's
claim (when a limit is set) and the installed ``claim_job_batch`` call it, and so
does the worker's round while the worker knows that limits are set
(:meth:`ClaimStatements.limits_set`). A database whose tables were made by ``create_all``
alone, without the installed functions (an application's tests), claims as long as no
limit is set.

A job that was running in a worker process that died (``crashes > 0``) runs alone: a
claim of several jobs passes over it, a claim of one job may take it, and an idle worker
claims it by itself (:meth:`ClaimStatements.claim_alone`). The worker's round
(:meth:`ClaimStatements.complete_and_claim`) completes many jobs and claims the next ones
in one statement; its claimed rows go straight to ``running``. A claim may resume after the
:class:`ClaimPosition` of the previous one, so that it does not step again over the index
entries of jobs claimed before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    Boolean,
    CompoundSelect,
    Function,
    Integer,
    Select,
    String,
    Table,
    Text,
    Uuid,
    and_,
    any_,
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

from ..model import JobStatus, claim_function_name, controls_table
from ..sql import QueueObjects
from .base import Bound, StatementsBase, counts_or_null, or_null, param, per_job
from .controls import has_limit
from .fence import status_literal

__all__ = ["ClaimPosition", "ClaimStatements", "Claimed", "claim_candidates"]

_CLAIMED_COLUMNS = (
    "id",
    "job_type",
    "data",
    "attempts",
    "max_attempts",
    "priority",
    "created_at",
    "crashes",
)
_CLAIM_ORDER: tuple[Any, ...] = (
    literal_column("priority").desc(),
    literal_column("created_at"),
    literal_column("id"),
)


class Claimed(NamedTuple):
    """A job claimed by a worker's round (:meth:`ClaimStatements.complete_and_claim`)."""

    id: uuid.UUID
    job_type: str
    data: str
    """The job's arguments as JSON text."""
    attempts: int
    max_attempts: int
    priority: int
    created_at: datetime
    crashes: int = 0
    """How many worker processes died running it: a job that crashed runs alone."""


class ClaimPosition(NamedTuple):
    """A place in claim order (priority descending, then ``created_at``, then ``id``)."""

    priority: int
    created_at: datetime
    id: uuid.UUID

    @classmethod
    def of(cls, job: Claimed) -> ClaimPosition:
        """The position of a claimed job."""
        return cls(job.priority, job.created_at, job.id)


def claim_candidates(
    table: Table, limit: Any, job_types: Any | None = None, crashed: bool | None = False
) -> Select[Any]:
    """The ids a claim takes, locked: due pending jobs with attempts left, of types
    neither paused nor limited, highest priority first, then oldest, then by id,
    skipping rows another claim has locked.

    ``limit`` and ``job_types`` (an array expression, ``None`` for every type) may be
    values or bound parameters. ``crashed`` chooses among jobs that never crashed a
    worker (``False``, what a claim of several jobs takes), jobs that did (``True``: they
    run alone) or both (``None``, for a claim of one job). The repository's claim and the
    worker's round select this way; the installed limited claim function selects the
    same way and adds the jobs of limited types.
    """
    c = table.c
    return (
        select(c.id)
        .where(*_claimable(table, job_types, crashed), c.job_type.not_in(_passed_over(table)))
        .order_by(c.priority.desc(), c.created_at, c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )


def _passed_over(table: Table) -> Select[Any]:
    """The job types whose jobs :func:`claim_candidates` passes over: paused ones, and
    limited ones (only the limited claim function claims those).

    Read with ``NOT IN``: a hashed SubPlan, read once per statement and probed per row,
    and the claim index is still read in order. A ``job_type <> ALL(ARRAY(...))`` made the
    planner expect no row and sort a scan; a ``NOT EXISTS`` rescanned the controls table
    for every row.
    """
    c = controls_table(table).c
    return select(c.job_type).where(c.paused_at.is_not(None) | has_limit(c))


def _claimable(table: Table, job_types: Any | None, crashed: bool | None) -> list[Any]:
    """The conditions of :func:`claim_candidates` but the types passed over, and of the
    questions whether due jobs wait (:meth:`ClaimStatements.alone_due`,
    :meth:`ClaimStatements.held_back`)."""
    c = table.c
    conditions = [
        c.status == status_literal(JobStatus.PENDING),
        c.run_at <= func.statement_timestamp(),
        c.attempts < c.max_attempts,
    ]
    if crashed is not None:
        # A literal 0: the predicate of the crashed jobs' partial index names it.
        zero: Any = literal_column("0")
        conditions.append(c.crashes > zero if crashed else c.crashes == zero)
    if job_types is not None:
        conditions.append(c.job_type == any_(job_types))
    return conditions


def _limited_claim(
    table: Table, typed: bool, status: JobStatus, crashed: bool | None, limit: Any = None
) -> Any:
    """The installed limited claim function's rows, as a table-valued alias whose columns
    are the job table's: ``p_worker_id``, ``p_limit`` (unless ``limit`` is given) and
    (when ``typed``) ``p_job_types`` are bind parameters."""
    name = QueueObjects("", table.name, claim_function_name(table)).limited_claim_function
    packages = () if table.schema is None else (table.schema,)
    types: Any = param("p_job_types", ARRAY(String())) if typed else null()
    function = Function(
        name,
        param("p_worker_id", String()),
        sql_cast(types, ARRAY(String())),
        param("p_limit", Integer()) if limit is None else sql_cast(limit, Integer()),
        literal_column(f"'{status.value}'"),
        null().cast(Boolean()) if crashed is None else literal_column(str(crashed).lower()),
        packagenames=packages,
    )
    return function.table_valued(*(column(c.name, c.type) for c in table.c)).alias("claimed_job")


def _claim_after(table: Table, limit: Any, job_types: Any | None) -> CompoundSelect[Any]:
    """:func:`claim_candidates` resumed after a position.

    Three index range scans, run lazily one after the other until ``limit`` rows are
    locked: higher priorities from their start, the position's priority after the
    position, lower priorities from their start. In a long drain the entries before the
    position belong to jobs already claimed; until VACUUM removes them, a scan from the
    start of the index would step over every one of them on every claim.
    """
    c = table.c
    priority = param("p_after_priority", Integer())
    after = tuple_(c.created_at, c.id) > tuple_(
        param("p_after_created_at", c.created_at.type), param("p_after_id", Uuid())
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


class ClaimStatements(StatementsBase):
    """The statements that claim jobs."""

    def claim(
        self, worker_id: str, limit: int, job_types: list[str] | None, limited: bool = False
    ) -> Bound:
        """Claim up to ``limit`` due jobs as ``claimed`` by ``worker_id``, all columns
        returned (in no order). Without ``limited``, only while none of ``job_types`` has a
        limit: nothing is claimed when one has. With ``limited``, through the limited
        claim function, so that jobs of limited types are claimed too, within their limits.
        Only a claim of one job takes a job that crashed a worker."""
        typed = job_types is not None
        crashed = None if limit == 1 else False

        def build() -> Any:
            if not limited:
                claiming = self._claiming(typed, False, JobStatus.CLAIMED, None, crashed)
                return claiming.where(~self._limited_types(typed).exists())
            claimed = _limited_claim(self.table, typed, JobStatus.CLAIMED, crashed)
            return select(*(claimed.c[c.name].label(c.name) for c in self.table.c))

        statement = self._once(("claim", typed, crashed, limited), build)
        params: dict[str, Any] = {"p_worker_id": worker_id, "p_limit": limit}
        if job_types is not None:
            params["p_job_types"] = job_types
        return Bound(statement, params)

    def claim_alone(
        self, worker_id: str, job_types: Sequence[str] | None, limited: bool = False
    ) -> Bound:
        """Claim, as ``running``, the first due job that crashed a worker (at most one):
        for a worker that runs nothing else; with ``limited``, within the limits of its
        type (jobs of limited types are claimed no other way). Rows: :class:`Claimed`."""
        typed = job_types is not None

        def build() -> Any:
            if limited:
                claimed = _limited_claim(self.table, typed, JobStatus.RUNNING, True)
                return select(*self._claimed_columns(claimed))
            return self._claiming(typed, False, JobStatus.RUNNING, self._claimed_columns(), True)

        statement = self._once(("claim_alone", typed, limited), build)
        params: dict[str, Any] = {"p_worker_id": worker_id, "p_limit": 1}
        if job_types is not None:
            params["p_job_types"] = list(job_types)
        return Bound(statement, params)

    def alone_due(self, job_types: Sequence[str] | None) -> Bound:
        """Whether a job that crashed a worker is due (one row, a boolean): a busy worker
        asks now and then, and stops claiming until it can run that job alone. Jobs of
        paused types are not due; those of limited types are."""
        return self._due_exists(job_types, crashed=True)

    def held_back(self, job_types: Sequence[str] | None) -> Bound:
        """Whether a due job of ``job_types`` (any type, for ``None``) that is not paused
        waits (one row, a boolean): after a limited claim that claimed nothing, a job
        that waits is held back by a limit, and a limit frees it when a job finishes."""
        return self._due_exists(job_types, crashed=None)

    def _due_exists(self, job_types: Sequence[str] | None, crashed: bool | None) -> Bound:
        """Whether a due job of ``job_types`` (``crashed`` as in
        :func:`claim_candidates`) of a type that is not paused exists."""
        typed = job_types is not None

        def build() -> Any:
            types = param("p_job_types", ARRAY(String())) if typed else None
            controls = controls_table(self.table).c
            paused = select(controls.job_type).where(controls.paused_at.is_not(None))
            due = select(self.table.c.id).where(
                *_claimable(self.table, types, crashed), self.table.c.job_type.not_in(paused)
            )
            return select(due.exists())

        params: dict[str, Any] = {}
        if job_types is not None:
            params["p_job_types"] = list(job_types)
        return Bound(self._once(("due_exists", typed, crashed), build), params)

    def limits_set(self, job_types: Sequence[str] | None) -> Bound:
        """Whether any of ``job_types`` (any type, for ``None``) has a limit (one row, a
        boolean): while one has, a worker claims through the limited claim function."""
        typed = job_types is not None

        params: dict[str, Any] = {}
        if job_types is not None:
            params["p_job_types"] = list(job_types)

        def build() -> Any:
            return select(self._limited_types(typed).exists())

        return Bound(self._once(("limits_set", typed), build), params)

    def _limited_types(self, typed: bool) -> Select[Any]:
        """The limited types among ``p_job_types`` (when ``typed``)."""
        c = controls_table(self.table).c
        limited = select(c.job_type).where(has_limit(c))
        if typed:
            limited = limited.where(c.job_type == any_(param("p_job_types", ARRAY(String()))))
        return limited

    def _claimed_columns(self, source: Any | None = None) -> list[Any]:
        c = self.table.c if source is None else source.c
        return [
            # data as text: a handler that never reads it never pays for decoding it.
            sql_cast(c.data, Text()).label("data") if name == "data" else c[name].label(name)
            for name in _CLAIMED_COLUMNS
        ]

    def _claiming(
        self,
        typed: bool,
        resumed: bool,
        status: JobStatus,
        returning: list[Any] | None,
        crashed: bool | None = False,
    ) -> Any:
        table, c = self.table, self.table.c
        limit = param("p_limit", Integer())
        types = param("p_job_types", ARRAY(String())) if typed else None
        candidates: Any = (
            _claim_after(table, limit, types)
            if resumed
            else claim_candidates(table, limit, types, crashed)
        )
        values: dict[str, Any] = {
            "status": status_literal(status),
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
        limited: bool = False,
    ) -> Bound:
        """A worker's round, one statement: complete the jobs ``ids`` it holds in the
        ``attempts`` given (with their JSON ``results`` and the progress ``stages`` and
        ``events`` not written yet) and claim up to ``limit`` due jobs as ``running``.

        With ``after``, the claim takes due jobs of higher priority than ``after``, then
        those of its priority that come after it, then those of lower priority; with
        ``limited`` (``after`` is then ignored), the limited claim function claims, so
        that jobs of limited types are claimed too, within their limits. Rows:
        ``(True, id, NULL…)`` for each job completed, then ``(False, *Claimed)`` for each
        job claimed, in claim order.
        """
        # Arrays with nothing in them travel as NULL (unnest() pads them with NULLs): most
        # rounds have no results, no stages and no events to write.
        params: dict[str, Any] = {
            "p_ids": list(ids),
            "p_attempts": list(attempts),
            "p_results": or_null(results),
            "p_stages": or_null(stages),
            "p_events": counts_or_null(events),
            "p_limit": limit,
            "p_worker_id": worker_id,
        }
        if job_types is not None:
            params["p_job_types"] = list(job_types)
        resumed = after is not None and not limited
        if after is not None and resumed:
            params["p_after_priority"] = after.priority
            params["p_after_created_at"] = after.created_at
            params["p_after_id"] = after.id
        key = (job_types is not None, resumed, limited)
        return Bound(self._once(("round", *key), lambda: self._round(*key)), params)

    def _round(self, typed: bool, resumed: bool, limited: bool) -> Any:
        c = self.table.c
        done = per_job("done", _COMPLETION_COLUMNS)
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
        claiming: Any
        if limited:
            # The limit reads the completions' count: the completions are written first,
            # and the jobs they finish no longer count against their types' limits.
            after_completions = param("p_limit", Integer()) + literal_column("0") * (
                select(func.count()).select_from(completed).scalar_subquery()
            )
            jobs = _limited_claim(
                self.table, typed, JobStatus.RUNNING, False, limit=after_completions
            )
            claiming = select(*self._claimed_columns(jobs))
        else:
            claiming = self._claiming(typed, resumed, JobStatus.RUNNING, self._claimed_columns())
        claimed = claiming.cte("claimed")
        blanks = [null().label(name) for name in _CLAIMED_COLUMNS[1:]]
        # Claimed rows in claim order (completed rows have no priority and come first).
        return union_all(
            select(true().label("completed"), completed.c.id, *blanks),
            select(false(), *(claimed.c[name] for name in _CLAIMED_COLUMNS)),
        ).order_by(*_CLAIM_ORDER)
