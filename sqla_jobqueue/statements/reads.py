"""Reads: one job, listings, the counts and the age of the queue, and a probe.

None of them locks or writes a row. Besides what the queues read, here are the reads of the
command line and the demo: the newest jobs, an id from some of its hex digits, the stale
and recently finished counts, the held jobs of the live view, and the demo's summary. A
read narrowed to some ids or job types takes each as one array parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    Float,
    Integer,
    Interval,
    String,
    Uuid,
    any_,
    cast,
    func,
    or_,
    select,
    tablesample,
    text,
)

from ..model import FINISHED_STATUSES, HELD_STATUSES, LIVE_STATUSES, JobStatus
from ..sql import format_table
from .base import Bound, StatementsBase, param
from .fence import is_stale, status_literal, status_literals

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

    def counts(self, ids: Sequence[uuid.UUID] | None = None) -> Bound:
        """``(job_type, status, count)`` for every type and status present (among ``ids``)."""
        narrowed = ids is not None

        def build() -> Any:
            c = self.table.c
            return (
                select(c.job_type, c.status, func.count())
                .where(*self._scope(ids=narrowed, job_types=False))
                .group_by(c.job_type, c.status)
            )

        return Bound(self._once(("counts", narrowed), build), self._scope_params(ids, None))

    def live_counts(self) -> Bound:
        """``(job_type, status, count)`` of waiting, pending, claimed and running jobs, read
        through their partial indexes (one ``IN`` of them all matches none and scans the
        table)."""

        def build() -> Any:
            c = self.table.c
            return (
                select(c.job_type, c.status, func.count())
                .where(
                    or_(
                        c.status == status_literal(JobStatus.WAITING),
                        c.status == status_literal(JobStatus.PENDING),
                        c.status.in_(status_literals(HELD_STATUSES)),
                    )
                )
                .group_by(c.job_type, c.status)
            )

        return Bound(self._once(("live_counts",), build), {})

    def finished_counts(self, sample_percent: float | None) -> Bound:
        """``(job_type, status, count)`` of finished jobs; with ``sample_percent``, of those
        in that percentage of the table's pages only (``TABLESAMPLE SYSTEM``)."""
        sampled = sample_percent is not None

        def build() -> Any:
            source: Any = self.table
            if sampled:
                source = tablesample(self.table, func.system(param("p_percent", Float())))
            c = source.c
            return (
                select(c.job_type, c.status, func.count())
                .select_from(source)
                .where(c.status.in_(status_literals(FINISHED_STATUSES)))
                .group_by(c.job_type, c.status)
            )

        params = {"p_percent": sample_percent} if sampled else {}
        return Bound(self._once(("finished_counts", sampled), build), params)

    def row_estimate(self) -> Bound:
        """The planner's estimate of the table's rows, which (auto)vacuum and analyze keep
        up to date: ``pg_class.reltuples``, -1 for a table never vacuumed nor analyzed."""
        return Bound(
            self._once(
                ("row_estimate",),
                lambda: text(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:p_table)"
                ),
            ),
            {"p_table": format_table(self.table)},
        )

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

    def newest(
        self,
        job_types: Sequence[str] | None,
        statuses: Sequence[JobStatus] | None,
        limit: int,
    ) -> Bound:
        """Every column of the ``limit`` most recent jobs (of ``job_types``, in
        ``statuses``), newest first. ``None`` leaves a filter out."""
        key = (job_types is not None, statuses is not None)

        def build() -> Any:
            c = self.table.c
            statement = (
                select(self.table)
                .where(*self._scope(ids=False, job_types=key[0]))
                .order_by(c.created_at.desc(), c.id.desc())
                .limit(param("p_limit", Integer()))
            )
            if key[1]:
                statement = statement.where(c.status == any_(param("p_statuses", ARRAY(String()))))
            return statement

        params = self._scope_params(None, job_types)
        params["p_limit"] = limit
        if statuses is not None:
            params["p_statuses"] = [JobStatus(status).value for status in statuses]
        return Bound(self._once(("newest", *key), build), params)

    def ids_by_digits(self, digits: str, limit: int) -> Bound:
        """At most ``limit`` ids, in order, whose 32 lowercase hex digits begin or end with
        ``digits`` (hex digits only: ``LIKE`` wildcards are not escaped)."""

        def build() -> Any:
            c = self.table.c
            hex_digits = func.replace(cast(c.id, String()), "-", "")
            given = param("p_digits", String())
            return (
                select(c.id)
                .where(or_(hex_digits.startswith(given), hex_digits.endswith(given)))
                .order_by(c.id)
                .limit(param("p_limit", Integer()))
            )

        return Bound(self._once(("ids_by_digits",), build), {"p_digits": digits, "p_limit": limit})

    def written_here(self, job_id: uuid.UUID) -> Bound:
        """Whether the current transaction wrote the job's row (its ``xmin`` is this
        transaction's id); no row when the job does not exist."""

        def build() -> Any:
            return (
                select(text("xmin = pg_current_xact_id()::xid"))
                .select_from(self.table)
                .where(self._job)
            )

        return Bound(self._once(("written_here",), build), {"p_id": job_id})

    def stale_count(self, timeout: timedelta) -> Bound:
        """How many held jobs have had no heartbeat (nor claim, before any) for ``timeout``
        by the database clock: the jobs a rescue would take back."""

        def build() -> Any:
            return select(func.count()).where(
                is_stale(self.table.c, param("p_timeout", Interval()))
            )

        return Bound(self._once(("stale_count",), build), {"p_timeout": timeout})

    def status_counts(
        self,
        *,
        ids: Sequence[uuid.UUID] | None = None,
        job_types: Sequence[str] | None = None,
    ) -> Bound:
        """``(status, count)`` for every status present (among ``ids``, of ``job_types``)."""
        key = (ids is not None, job_types is not None)

        def build() -> Any:
            c = self.table.c
            return (
                select(c.status, func.count())
                .where(*self._scope(ids=key[0], job_types=key[1]))
                .group_by(c.status)
            )

        return Bound(self._once(("status_counts", *key), build), self._scope_params(ids, job_types))

    def finished_within(
        self,
        window: timedelta,
        *,
        ids: Sequence[uuid.UUID] | None = None,
        job_types: Sequence[str] | None = None,
    ) -> Bound:
        """``(status, count)`` of the jobs completed or failed in the last ``window`` by the
        database clock (among ``ids``, of ``job_types``); a status with none is left out."""
        key = (ids is not None, job_types is not None)

        def build() -> Any:
            c = self.table.c
            return (
                select(c.status, func.count())
                .where(
                    *self._scope(ids=key[0], job_types=key[1]),
                    c.status.in_(status_literals((JobStatus.COMPLETED, JobStatus.FAILED))),
                    c.completed_at >= self._now - param("p_window", Interval()),
                )
                .group_by(c.status)
            )

        params = self._scope_params(ids, job_types)
        params["p_window"] = window
        return Bound(self._once(("finished_within", *key), build), params)

    def held_jobs(
        self,
        limit: int,
        *,
        ids: Sequence[uuid.UUID] | None = None,
        job_types: Sequence[str] | None = None,
    ) -> Bound:
        """At most ``limit`` held jobs (among ``ids``, of ``job_types``), running before
        claimed, longest held first: ``id``, ``job_type``, ``status``, ``current_stage``,
        ``progress``, ``worker_id``, ``attempts``, ``elapsed`` since it started and ``at``,
        the database clock."""
        key = (ids is not None, job_types is not None)

        def build() -> Any:
            c = self.table.c
            return (
                select(
                    c.id,
                    c.job_type,
                    c.status,
                    c.current_stage,
                    c.progress,
                    c.worker_id,
                    c.attempts,
                    (self._now - c.started_at).label("elapsed"),
                    self._now.label("at"),
                )
                .where(
                    *self._scope(ids=key[0], job_types=key[1]),
                    c.status.in_(status_literals(HELD_STATUSES)),
                )
                .order_by(c.status.desc(), c.started_at, c.claimed_at, c.id)
                .limit(param("p_limit", Integer()))
            )

        params = self._scope_params(ids, job_types)
        params["p_limit"] = limit
        return Bound(self._once(("held_jobs", *key), build), params)

    def clock(self) -> Bound:
        """The database clock: the statement's timestamp, as every write stamps it."""
        return Bound(self._once(("clock",), lambda: select(self._now)), {})

    def summary_by_type(self, ids: Sequence[uuid.UUID]) -> Bound:
        """Per job type among ``ids``, highest priority first: ``job_type``, ``priority``
        (the highest), ``jobs``, ``rerun`` (jobs run more than once), ``mean_seconds`` (from
        start to completion, of the completed) and ``mean_start`` (seconds after the first
        of them started)."""

        def build() -> Any:
            c = self.table.c
            ours = self._scope(ids=True, job_types=False)
            first = select(func.min(c.started_at)).where(*ours).scalar_subquery()
            completed = c.status == status_literal(JobStatus.COMPLETED)
            return (
                select(
                    c.job_type,
                    func.max(c.priority).label("priority"),
                    func.count().label("jobs"),
                    func.count().filter(c.attempts > 1).label("rerun"),
                    func.avg(func.extract("epoch", c.completed_at - c.started_at))
                    .filter(completed)
                    .label("mean_seconds"),
                    func.avg(func.extract("epoch", c.started_at - first)).label("mean_start"),
                )
                .where(*ours)
                .group_by(c.job_type)
                .order_by(func.max(c.priority).desc())
            )

        return Bound(self._once(("summary_by_type",), build), self._scope_params(ids, None))

    def live_ids(self, job_types: Sequence[str]) -> Bound:
        """The ids of the jobs of ``job_types`` still pending or held, in order."""

        def build() -> Any:
            c = self.table.c
            return (
                select(c.id)
                .where(
                    *self._scope(ids=False, job_types=True),
                    c.status.in_(status_literals(LIVE_STATUSES)),
                )
                .order_by(c.id)
            )

        return Bound(self._once(("live_ids",), build), self._scope_params(None, job_types))

    def _scope(self, *, ids: bool, job_types: bool) -> list[Any]:
        """The conditions ``id = ANY(:p_ids)`` and ``job_type = ANY(:p_job_types)``, each
        when asked for: one array parameter however many values."""
        c = self.table.c
        conditions: list[Any] = []
        if ids:
            conditions.append(c.id == any_(param("p_ids", ARRAY(Uuid()))))
        if job_types:
            conditions.append(c.job_type == any_(param("p_job_types", ARRAY(String()))))
        return conditions

    @staticmethod
    def _scope_params(
        ids: Sequence[uuid.UUID] | None, job_types: Sequence[str] | None
    ) -> dict[str, Any]:
        """The parameters of :meth:`_scope` for ``ids`` and ``job_types`` (``None``: no
        condition)."""
        params: dict[str, Any] = {}
        if ids is not None:
            params["p_ids"] = list(ids)
        if job_types is not None:
            params["p_job_types"] = list(job_types)
        return params
