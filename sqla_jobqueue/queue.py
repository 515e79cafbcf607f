"""JobQueue: the session-scoped repository of jobs.

A :class:`JobQueue` wraps the caller's :class:`~sqlalchemy.orm.Session` and a job model.
Every method is one SQL statement (two when it must explain a refusal) in the caller's
transaction; the queue never commits, never starts threads, and never reads the worker's
clock: timestamps come from ``statement_timestamp()`` on the server.

Writes by a worker to a job it holds are *fenced*: when the queue has a ``worker_id`` the
statement also requires ``worker_id`` to match, and when the attempt is known (the job was
passed as a model instance, or ``attempt=`` was given) it requires ``attempts`` to match.
A worker whose job was rescued and claimed again therefore gets
:class:`~sqla_jobqueue.errors.LeaseLostError` instead of completing someone else's attempt.

The methods' logic lives in :mod:`sqla_jobqueue.plans` and their SQL in
:mod:`sqla_jobqueue.statements`; this class runs them on a ``Session``, as
:class:`~sqla_jobqueue.AsyncJobQueue` runs the same on an ``AsyncSession``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from sqlalchemy.orm import Session

from . import plans
from . import validation as check
from .backoff import DEFAULT_BACKOFF, Backoff
from .model import DEFAULT_MAX_ATTEMPTS, Job, JobMixin, Priority
from .plans import JobRef, PausedType, QueueStats, TypeLimits
from .plans.bulk import DEFAULT_CHUNK_SIZE, BulkAction, JobFilter
from .plans.core import Isolation, isolation_of
from .plans.waiting import DEFAULT_POLL_INTERVAL
from .statements import Bound
from .waiting import wait_plan

__all__ = ["JobQueue", "PausedType", "QueueStats", "TypeLimits"]

J = TypeVar("J", bound=JobMixin)
T = TypeVar("T")


class JobQueue(plans.QueueCore[J]):
    """The jobs of one job table, read and written in the caller's transaction.

    Parameters
    ----------
    session:
        The caller's session. The queue executes statements on it and never commits.
    model:
        A mapped :class:`~sqla_jobqueue.JobMixin` class; :class:`~sqla_jobqueue.Job`
        by default.
    worker_id:
        The identity of the worker using this queue. Claims record it, and writes to held
        jobs require it. Without one, the first :meth:`claim` makes one up.
    max_payload_bytes:
        Largest ``data`` or ``result`` accepted, as JSON bytes (64 KiB by default).
    """

    @overload
    def __init__(
        self: JobQueue[Job],
        session: Session,
        model: None = None,
        *,
        worker_id: str | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None: ...

    @overload
    def __init__(
        self,
        session: Session,
        model: type[J],
        *,
        worker_id: str | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None: ...

    def __init__(
        self,
        session: Session,
        model: type[J] | None = None,
        *,
        worker_id: str | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        super().__init__(model, worker_id, max_payload_bytes)
        self.session = session

    def _run(self, plan: plans.Plan[T]) -> T:
        """Answer the plan's requests on the session until it returns its value."""
        answer: Any = None
        try:
            while True:
                request = plan.send(answer)
                if isinstance(request, Bound):
                    answer = self.session.execute(request.statement, request.params)
                elif isinstance(request, plans.Add):
                    self.session.add(request.instance)
                    answer = None
                elif isinstance(request, plans.CanCopy):
                    answer = self._psycopg_connection() is not None
                elif isinstance(request, Isolation):
                    bind = {"mapper": self.model}
                    answer = isolation_of(self.session.connection(bind_arguments=bind))
                else:
                    self._copy(request)
                    answer = None
        except StopIteration as done:
            value: T = done.value
            return value
        finally:
            plan.close()

    def _psycopg_connection(self) -> Any:
        """The psycopg 3 connection under the session's, or ``None`` with another driver.

        psycopg is not imported here: a session on psycopg has imported it already, and an
        application on another driver should not pay for loading it.
        """
        driver = self.session.connection().connection.driver_connection
        loaded = sys.modules.get("psycopg")
        if loaded is None or not isinstance(driver, loaded.Connection):
            return None
        return driver

    def _copy(self, request: plans.Copy) -> None:
        driver = self._psycopg_connection()
        with driver.cursor() as cursor, cursor.copy(request.sql) as copy:
            for chunk in request.chunks:
                copy.write(chunk)

    # ------------------------------------------------------------------ enqueue

    def enqueue(
        self,
        job_type: str,
        data: Mapping[str, Any] | None = None,
        *,
        priority: int = Priority.DISCOVERED,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        run_at: datetime | timedelta | None = None,
        unique_key: str | None = None,
        depends_on: Iterable[JobRef] | None = None,
        concurrency_key: str | None = None,
    ) -> J:
        """Add a job in the caller's transaction and return it.

        Parameters
        ----------
        job_type:
            Which handler runs the job (1 to 50 characters).
        data:
            The job's arguments, a JSON object; keep it small and store references.
            ``UUID``, ``datetime``, ``date``, ``time`` and ``Decimal`` values are stored
            as the strings that rebuild them (``str(value)`` or ``isoformat()``), and the
            handler reads those strings; see :mod:`sqla_jobqueue.validation`.
        priority:
            Higher runs first; see :class:`~sqla_jobqueue.Priority`.
        max_attempts:
            How many times the job may be claimed before it ends as ``failed``.
        run_at:
            Not claimable before this time; a ``timedelta`` counts from the database's
            clock. ``None`` means now.
        unique_key:
            At most one live (pending, claimed or running) job per key: when one exists,
            it is returned and nothing is inserted.
        depends_on:
            Jobs (or their ids) that must complete before this one may run: until they
            all have, it is ``waiting``. When one of them fails or is cancelled, this job
            is cancelled, its ``last_error`` saying which and why. Each must exist (in
            this transaction's view) and not have failed or been cancelled already; at
            most 100. Until this transaction commits, a worker finishing one of them
            waits for it: keep it short. Not with ``unique_key``.
        concurrency_key:
            Groups jobs of a type for the type's limit per key (see :meth:`limit`): with
            ``max_running_per_key=1``, the jobs of one key run one at a time, oldest
            first, whatever the workers. Up to 255 characters; without a limit per key
            it changes nothing.

        Raises
        ------
        InvalidJobError
            When an argument is not acceptable; nothing is written.
        """
        spec = {
            "job_type": job_type,
            "data": data,
            "priority": priority,
            "max_attempts": max_attempts,
            "run_at": run_at,
            "unique_key": unique_key,
            "depends_on": depends_on,
            "concurrency_key": concurrency_key,
        }
        return self._run(plans.enqueue(self, spec))

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[uuid.UUID]:
        """Add many jobs in few statements; return their ids in input order.

        Each mapping takes the keywords of :meth:`enqueue` (``job_type`` required). All
        jobs are checked before anything is written. Jobs that are due now and have no
        ``unique_key`` — the common bulk load — are streamed with one binary ``COPY``.
        Otherwise the rows travel as one JSON array per page of ``ENQUEUE_PAGE_SIZE`` jobs,
        unpacked by a single ``INSERT … SELECT``; a job whose ``unique_key`` is already
        live is not inserted, and the id of the live job stands in its place.
        """
        return self._run(plans.enqueue_many(self, jobs))

    # -------------------------------------------------------------------- claim

    def claim(self, job_types: Sequence[str] | None = None, batch_size: int = 10) -> list[J]:
        """Claim up to ``batch_size`` due pending jobs for this queue's worker.

        One statement: ``UPDATE … WHERE id = ANY(ARRAY(SELECT … FOR NO KEY UPDATE SKIP
        LOCKED)) RETURNING``. Jobs are taken highest priority first, then oldest, then by id;
        jobs locked by a concurrent claim are skipped, never waited for. Each claimed job
        becomes ``claimed`` by this worker with ``attempts`` increased by one. The list is
        in claim order.

        Parameters
        ----------
        job_types:
            Claim only these types; ``None`` claims every type.
        batch_size:
            The most jobs to claim (at least 1).
        """
        return self._run(plans.claim(self, job_types, batch_size))

    # ------------------------------------------------------------- transitions

    def start(self, job: JobRef, *, attempt: int | None = None) -> J:
        """Mark a claimed job ``running`` (``started_at`` set, heartbeat refreshed)."""
        return self._run(plans.start(self, job, attempt))

    def heartbeat(self, jobs: Iterable[JobRef] | None = None) -> int:
        """Refresh ``heartbeat_at`` of held jobs; return how many were refreshed.

        With ``jobs=None`` every job held by this queue's worker is refreshed. Jobs no
        longer held by this worker are left alone and not counted.
        """
        return self._run(plans.heartbeat(self, jobs))

    def update_progress(
        self,
        job: JobRef,
        progress: int | None = None,
        stage: str | None = None,
        events: int = 0,
        *,
        attempt: int | None = None,
    ) -> J:
        """Record progress of a held job: percent, stage label and events seen.

        ``events`` is added to ``events_count``; ``None`` leaves progress or stage as they
        are. Refreshes the heartbeat too.
        """
        return self._run(plans.update_progress(self, job, progress, stage, events, attempt))

    def complete(self, job: JobRef, result: Any = None, *, attempt: int | None = None) -> J:
        """Mark a held job ``completed`` with an optional small JSON ``result``.

        ``result`` may hold the same values as a job's ``data``, stored the same way.
        """
        return self._run(plans.complete(self, job, result, attempt))

    def fail(
        self,
        job: JobRef,
        error: str,
        *,
        run_again_in: timedelta | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        attempt: int | None = None,
    ) -> J:
        """Record a failed attempt of a held job.

        While attempts remain the job goes back to ``pending`` with ``run_at`` pushed by
        ``run_again_in`` (or by ``backoff`` computed from its attempts); otherwise it ends as
        ``failed``. ``last_error`` keeps ``error`` either way.
        """
        return self._run(plans.fail(self, job, error, run_again_in, backoff, attempt))

    def cancel(self, job: JobRef) -> J:
        """Give up on a job that has not finished: it ends as ``cancelled``.

        A handler still running it is not interrupted: its ``ctx.abandoned`` turns true at
        the worker's next progress write that carries a report from it (within the
        worker's ``progress_interval``), and its outcome is discarded when it returns.
        """
        return self._run(plans.cancel(self, job))

    def retry(self, job: JobRef) -> J:
        """Send a ``failed`` job back to ``pending`` with its attempts reset, due now."""
        return self._run(plans.retry(self, job))

    def recover_stale(self, timeout: timedelta) -> int:
        """Return jobs whose heartbeat is older than ``timeout`` to ``pending``.

        A job that never started (``claimed``) gets its attempt back: it was only claimed
        beside the job that killed its worker. A ``running`` job keeps the attempt it
        spent and ends as ``failed`` when no attempts remain, so a job that keeps killing
        its workers stops after ``max_attempts``. Returns the number of jobs touched.
        """
        return self._run(plans.recover_stale(self, timeout))

    def release(self, jobs: Iterable[JobRef] | None = None) -> int:
        """Give back claimed jobs this worker has not started, without charging them.

        They return to ``pending`` with the attempt of their claim refunded, due now. With
        ``jobs=None`` every not-started job of this queue's worker is released. A worker
        calls this when it shuts down. Returns the number released.
        """
        return self._run(plans.release(self, jobs))

    def prune(self, older_than: timedelta, *, limit: int | None = None) -> int:
        """Delete finished jobs (completed, failed, cancelled) older than ``older_than``.

        Age counts from ``completed_at``. ``limit`` bounds how many rows one call deletes,
        so a large backlog can be pruned in short transactions. Returns the number deleted.
        """
        return self._run(plans.prune(self, older_than, limit))

    # -------------------------------------------------------------------- reads

    def get(self, job_id: uuid.UUID) -> J:
        """Load a job by id, fresh from the database."""
        return self._run(plans.get(self, job_id))

    def wait(
        self,
        job: JobRef,
        timeout: float | timedelta,
        *,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        listen: bool = True,
    ) -> J:
        """Wait until a job is finished (completed, failed or cancelled) and return it.

        Meant for a caller that can afford a few seconds, such as a web request that
        enqueued the job and wants its result. The waiting happens on a connection of the
        session's engine of its own, outside the caller's transaction: commit the enqueue
        first (a job the waiting connection cannot see raises :class:`JobNotFoundError`).
        The job is marked ``awaited``, so that the database announces its end on a
        notification channel the connection listens on: ``wait`` returns within
        milliseconds of the commit that finishes the job. It also reads the job's status
        every ``poll_interval`` seconds, for a connection that cannot hear notifications
        (a transaction pooler, a driver other than psycopg 3 or asyncpg). The job is then
        loaded fresh in the caller's session, which must see other transactions' commits
        (``READ COMMITTED``, the default).

        Parameters
        ----------
        job:
            The job, or its id.
        timeout:
            Seconds (or a ``timedelta``) to wait at most; 0 looks once.
        poll_interval:
            Seconds between two reads of the job's status.
        listen:
            ``False`` to poll only: for an engine that reaches PostgreSQL through a
            transaction pooler (PgBouncer with ``pool_mode = transaction``), where a
            ``LISTEN`` hears nothing and would stay behind on a pooled server connection.

        Raises
        ------
        WaitTimeoutError
            The job did not finish in time; it goes on as it was.
        JobNotFoundError
            No such job (never existed, not committed yet, or pruned).
        InvalidJobError
            A bad argument; nothing was written.
        """
        engine = self.session.get_bind(mapper=self.model).engine
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            job_id = wait_plan(connection, plans.wait(self, job, timeout, poll_interval, listen))
        return self.get(job_id)

    def pause(self, job_types: Sequence[str], *, reason: str | None = None) -> list[str]:
        """Pause job types: from the next claim on, no claim takes their jobs (every
        worker's, the repository's and ``claim_job_batch``'s); jobs already claimed or
        running finish, and new jobs may still be enqueued. Types paused already stay
        paused since then, with the new ``reason``. Returns the types paused.

        Raises
        ------
        InvalidJobError
            An empty list, a bad type name or a reason over 500 characters; nothing is
            written.
        """
        return self._run(plans.pause(self, job_types, reason))

    def resume(self, job_types: Sequence[str]) -> list[str]:
        """Resume paused job types: their due jobs are claimed again. Returns the types
        that were paused (a type that was not is left as it is)."""
        return self._run(plans.resume(self, job_types))

    def limit(
        self,
        job_type: str,
        *,
        max_running: int | None = None,
        max_running_per_key: int | None = None,
        rate_limit: int | None = None,
        rate_period: timedelta | float = 1.0,
    ) -> TypeLimits:
        """Limit a job type, on every worker: its limits are those given, and a limit left
        ``None`` is removed. Every claim keeps them (the workers', the repository's and
        ``claim_job_batch``'s); a job that cannot run now is not claimed, loses no attempt,
        and is claimed once it can. Workers learn of a type's first limit within two
        seconds and claim none of its jobs meanwhile. Returns the type's limits.

        Parameters
        ----------
        job_type:
            The type to limit.
        max_running:
            Most of its jobs claimed or running at once, across all workers.
        max_running_per_key:
            Most of its jobs of one ``concurrency_key`` claimed or running at once (jobs
            without a key are not limited by it). Each key's jobs are claimed oldest
            first (by ``created_at``): with 1, they run one at a time, in order, and a job
            waiting for a retry holds back the later ones of its key.
        rate_limit:
            Most of its jobs claimed per ``rate_period``: a token bucket that holds at most
            ``rate_limit`` tokens (the largest burst), refilled at ``rate_limit`` per
            ``rate_period``; it starts full. Over any time span T, at most ``rate_limit *
            (1 + T / rate_period)`` jobs are claimed.
        rate_period:
            A ``timedelta`` or seconds; one second by default.

        Raises
        ------
        InvalidJobError
            No limit given, or one that is not a positive int; nothing is written.
        """
        return self._run(
            plans.limit(self, job_type, max_running, max_running_per_key, rate_limit, rate_period)
        )

    def remove_limits(self, job_types: Sequence[str]) -> list[str]:
        """Remove every limit of these job types. Returns the types that had one."""
        return self._run(plans.remove_limits(self, job_types))

    def limits(self) -> list[TypeLimits]:
        """The limited job types and their limits, by type."""
        return self._run(plans.limits(self))

    def paused(self) -> list[PausedType]:
        """The paused job types, since when and why, by type."""
        return self._run(plans.paused(self))

    def stats(self, *, exact: bool = False) -> QueueStats:
        """Counts by type and status, and the age of the oldest due pending job.

        Pending, claimed and running jobs are counted exactly, through their partial
        indexes. Finished jobs are counted exactly too while the table holds at most a
        million rows; above that, unless ``exact``, they are estimated from a sample of
        about 100,000 rows (``QueueStats.estimated``), so that the call stays in
        milliseconds on a table of ten million rows, where counting them all takes about
        a second.
        """
        return self._run(plans.stats(self, exact))

    # --------------------------------------------------------------------- bulk

    def count_where(
        self,
        job_filter: JobFilter,
        *,
        action: BulkAction | None = None,
        priority: int | None = None,
    ) -> int:
        """How many jobs match ``job_filter``: the dry run of a bulk action.

        With ``action`` (``"cancel"``, ``"retry"``, ``"reprioritize"``, ``"delete"``), the
        jobs that action would change, checked as it checks them: only its statuses, and of
        failed jobs that share a ``unique_key``, one; with ``action="reprioritize"``,
        ``priority`` leaves out the jobs that have it already. Without an action, every
        matching job, whatever its status (an empty filter counts them all). Locks nothing.
        """
        return self._run(plans.count_where(self, job_filter, action, priority))

    def cancel_where(self, job_filter: JobFilter, *, limit: int = DEFAULT_CHUNK_SIZE) -> int:
        """Cancel at most ``limit`` pending, claimed or running jobs that match
        ``job_filter``, as :meth:`cancel` cancels one; return how many.

        Commit, and call again until it returns 0. Pending jobs are taken first, in claim
        order, then held ones: one statement for each partial index of the table, each
        reading only its own jobs. A job that another transaction is writing right now
        (a worker claiming or completing it) is skipped, never waited for, and taken by a
        later call.

        Raises
        ------
        InvalidJobError
            When the filter is not acceptable (see :class:`~sqla_jobqueue.JobFilter`):
            nothing is written.
        """
        return self._run(plans.cancel_where(self, job_filter, limit))

    def retry_where(self, job_filter: JobFilter, *, limit: int = DEFAULT_CHUNK_SIZE) -> int:
        """Send at most ``limit`` failed jobs that match ``job_filter`` back to
        ``pending``, as :meth:`retry` sends one; return how many.

        A failed job whose ``unique_key`` a live job holds is left failed (a key has one
        live job at most), and of several failed jobs with one key only one is
        retried. Commit, and call again until it returns 0 (see :meth:`cancel_where`).
        """
        return self._run(plans.retry_where(self, job_filter, limit))

    def reprioritize_where(
        self, job_filter: JobFilter, priority: int, *, limit: int = DEFAULT_CHUNK_SIZE
    ) -> int:
        """Give ``priority`` to at most ``limit`` pending jobs that match ``job_filter``
        and have another priority; return how many.

        Commit, and call again until it returns 0 (see :meth:`cancel_where`).
        """
        return self._run(plans.reprioritize_where(self, job_filter, priority, limit))

    def delete_where(self, job_filter: JobFilter, *, limit: int = DEFAULT_CHUNK_SIZE) -> int:
        """Delete at most ``limit`` pending or finished jobs that match ``job_filter``;
        return how many. Jobs that a worker holds (claimed, running) are never deleted.

        Commit, and call again until it returns 0 (see :meth:`cancel_where`).
        """
        return self._run(plans.delete_where(self, job_filter, limit))
