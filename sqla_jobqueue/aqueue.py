"""AsyncJobQueue: the repository of jobs for asyncio applications, on an ``AsyncSession``.

:class:`AsyncJobQueue` has every method of :class:`~sqla_jobqueue.JobQueue`, awaited: the
same plans (:mod:`sqla_jobqueue.plans`) run on the caller's
:class:`~sqlalchemy.ext.asyncio.AsyncSession`, so validation, errors, fences and return
types are the same. It never commits; the caller owns the transaction::

    async with AsyncSession(engine) as session, session.begin():
        session.add(Order(...))
        await AsyncJobQueue(session, Job).enqueue("send_receipt", {"order_id": 7})

Bulk enqueue streams a binary ``COPY`` through psycopg's async connection, as the sync
queue does through its sync one. Importing this module does not import
``sqlalchemy.ext.asyncio`` (nor greenlet): a sync application does not pay for it.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import plans
from . import validation as check
from .backoff import DEFAULT_BACKOFF, Backoff
from .model import DEFAULT_MAX_ATTEMPTS, Job, JobMixin, Priority
from .plans import JobRef, PausedType, QueueStats, TypeLimits
from .plans.bulk import DEFAULT_CHUNK_SIZE, BulkAction, JobFilter
from .plans.core import Isolation, isolation_of
from .plans.waiting import DEFAULT_POLL_INTERVAL
from .statements import Bound
from .waiting import await_plan

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["AsyncJobQueue"]

J = TypeVar("J", bound=JobMixin)
T = TypeVar("T")


class AsyncJobQueue(plans.QueueCore[J]):
    """The jobs of one job table, read and written in the caller's asyncio transaction.

    Every method is the awaitable twin of :class:`~sqla_jobqueue.JobQueue`'s method of the
    same name, with the same arguments, errors and return values.

    Parameters
    ----------
    session:
        The caller's ``AsyncSession``. The queue executes statements on it and never
        commits.
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
        self: AsyncJobQueue[Job],
        session: AsyncSession,
        model: None = None,
        *,
        worker_id: str | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None: ...

    @overload
    def __init__(
        self,
        session: AsyncSession,
        model: type[J],
        *,
        worker_id: str | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None: ...

    def __init__(
        self,
        session: AsyncSession,
        model: type[J] | None = None,
        *,
        worker_id: str | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        super().__init__(model, worker_id, max_payload_bytes)
        self.session = session

    async def _run(self, plan: plans.Plan[T]) -> T:
        """Answer the plan's requests on the session until it returns its value."""
        answer: Any = None
        try:
            while True:
                request = plan.send(answer)
                if isinstance(request, Bound):
                    answer = await self.session.execute(request.statement, request.params)
                elif isinstance(request, plans.Add):
                    self.session.add(request.instance)
                    answer = None
                elif isinstance(request, plans.CanCopy):
                    answer = await self._psycopg_connection() is not None
                elif isinstance(request, Isolation):
                    bind = {"mapper": self.model}
                    connection = await self.session.connection(bind_arguments=bind)
                    synced = connection.sync_connection
                    answer = None if synced is None else isolation_of(synced)
                else:
                    await self._copy(request)
                    answer = None
        except StopIteration as done:
            value: T = done.value
            return value
        finally:
            plan.close()

    async def _psycopg_connection(self) -> Any:
        """psycopg 3's async connection under the session's, or ``None`` with another
        driver (psycopg is not imported here: a session on psycopg has imported it)."""
        connection = await self.session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        loaded = sys.modules.get("psycopg")
        if loaded is None or not isinstance(driver, loaded.AsyncConnection):
            return None
        return driver

    async def _copy(self, request: plans.Copy) -> None:
        driver = await self._psycopg_connection()
        async with driver.cursor() as cursor, cursor.copy(request.sql) as copy:
            for chunk in request.chunks:
                await copy.write(chunk)

    async def enqueue(
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
        """Add a job in the caller's transaction and return it: :meth:`JobQueue.enqueue
        <sqla_jobqueue.JobQueue.enqueue>`, awaited."""
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
        return await self._run(plans.enqueue(self, spec))

    async def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[uuid.UUID]:
        """Add many jobs (binary ``COPY`` on psycopg when they allow it); return their ids:
        :meth:`JobQueue.enqueue_many <sqla_jobqueue.JobQueue.enqueue_many>`, awaited."""
        return await self._run(plans.enqueue_many(self, jobs))

    async def claim(self, job_types: Sequence[str] | None = None, batch_size: int = 10) -> list[J]:
        """Claim up to ``batch_size`` due jobs: :meth:`JobQueue.claim
        <sqla_jobqueue.JobQueue.claim>`, awaited."""
        return await self._run(plans.claim(self, job_types, batch_size))

    async def start(self, job: JobRef, *, attempt: int | None = None) -> J:
        """Mark a claimed job ``running``: :meth:`JobQueue.start
        <sqla_jobqueue.JobQueue.start>`, awaited."""
        return await self._run(plans.start(self, job, attempt))

    async def heartbeat(self, jobs: Iterable[JobRef] | None = None) -> int:
        """Refresh the heartbeat of held jobs: :meth:`JobQueue.heartbeat
        <sqla_jobqueue.JobQueue.heartbeat>`, awaited."""
        return await self._run(plans.heartbeat(self, jobs))

    async def update_progress(
        self,
        job: JobRef,
        progress: int | None = None,
        stage: str | None = None,
        events: int = 0,
        *,
        attempt: int | None = None,
    ) -> J:
        """Record progress of a held job: :meth:`JobQueue.update_progress
        <sqla_jobqueue.JobQueue.update_progress>`, awaited."""
        return await self._run(plans.update_progress(self, job, progress, stage, events, attempt))

    async def complete(self, job: JobRef, result: Any = None, *, attempt: int | None = None) -> J:
        """Mark a held job ``completed``: :meth:`JobQueue.complete
        <sqla_jobqueue.JobQueue.complete>`, awaited."""
        return await self._run(plans.complete(self, job, result, attempt))

    async def fail(
        self,
        job: JobRef,
        error: str,
        *,
        run_again_in: timedelta | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        attempt: int | None = None,
    ) -> J:
        """Record a failed attempt of a held job: :meth:`JobQueue.fail
        <sqla_jobqueue.JobQueue.fail>`, awaited."""
        return await self._run(plans.fail(self, job, error, run_again_in, backoff, attempt))

    async def cancel(self, job: JobRef) -> J:
        """Give up on a job that has not finished: :meth:`JobQueue.cancel
        <sqla_jobqueue.JobQueue.cancel>`, awaited."""
        return await self._run(plans.cancel(self, job))

    async def retry(self, job: JobRef) -> J:
        """Send a ``failed`` job back to ``pending``: :meth:`JobQueue.retry
        <sqla_jobqueue.JobQueue.retry>`, awaited."""
        return await self._run(plans.retry(self, job))

    async def recover_stale(self, timeout: timedelta) -> int:
        """Return jobs with a stale heartbeat to ``pending``: :meth:`JobQueue.recover_stale
        <sqla_jobqueue.JobQueue.recover_stale>`, awaited."""
        return await self._run(plans.recover_stale(self, timeout))

    async def release(self, jobs: Iterable[JobRef] | None = None) -> int:
        """Give back claimed, not started jobs: :meth:`JobQueue.release
        <sqla_jobqueue.JobQueue.release>`, awaited."""
        return await self._run(plans.release(self, jobs))

    async def prune(self, older_than: timedelta, *, limit: int | None = None) -> int:
        """Delete old finished jobs: :meth:`JobQueue.prune <sqla_jobqueue.JobQueue.prune>`,
        awaited."""
        return await self._run(plans.prune(self, older_than, limit))

    async def get(self, job_id: uuid.UUID) -> J:
        """Load a job by id, fresh from the database: :meth:`JobQueue.get
        <sqla_jobqueue.JobQueue.get>`, awaited."""
        return await self._run(plans.get(self, job_id))

    async def wait(
        self,
        job: JobRef,
        timeout: float | timedelta,
        *,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        listen: bool = True,
    ) -> J:
        """Wait until a job is finished and return it: :meth:`JobQueue.wait
        <sqla_jobqueue.JobQueue.wait>`, awaited (notifications through psycopg 3 or
        asyncpg)."""
        from sqlalchemy.ext.asyncio import AsyncEngine

        engine = AsyncEngine(self.session.sync_session.get_bind(mapper=self.model).engine)
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            plan = plans.wait(self, job, timeout, poll_interval, listen)
            job_id = await await_plan(connection, plan)
        return await self.get(job_id)

    async def pause(self, job_types: Sequence[str], *, reason: str | None = None) -> list[str]:
        """Pause job types: :meth:`JobQueue.pause <sqla_jobqueue.JobQueue.pause>`, awaited."""
        return await self._run(plans.pause(self, job_types, reason))

    async def resume(self, job_types: Sequence[str]) -> list[str]:
        """Resume paused job types: :meth:`JobQueue.resume <sqla_jobqueue.JobQueue.resume>`,
        awaited."""
        return await self._run(plans.resume(self, job_types))

    async def limit(
        self,
        job_type: str,
        *,
        max_running: int | None = None,
        max_running_per_key: int | None = None,
        rate_limit: int | None = None,
        rate_period: timedelta | float = 1.0,
    ) -> TypeLimits:
        """Limit a job type: :meth:`JobQueue.limit <sqla_jobqueue.JobQueue.limit>`,
        awaited."""
        return await self._run(
            plans.limit(self, job_type, max_running, max_running_per_key, rate_limit, rate_period)
        )

    async def remove_limits(self, job_types: Sequence[str]) -> list[str]:
        """Remove every limit of job types: :meth:`JobQueue.remove_limits
        <sqla_jobqueue.JobQueue.remove_limits>`, awaited."""
        return await self._run(plans.remove_limits(self, job_types))

    async def limits(self) -> list[TypeLimits]:
        """The limited job types: :meth:`JobQueue.limits <sqla_jobqueue.JobQueue.limits>`,
        awaited."""
        return await self._run(plans.limits(self))

    async def paused(self) -> list[PausedType]:
        """The paused job types: :meth:`JobQueue.paused <sqla_jobqueue.JobQueue.paused>`,
        awaited."""
        return await self._run(plans.paused(self))

    async def stats(self, *, exact: bool = False) -> QueueStats:
        """Counts by type and status, and the age of the oldest due pending job:
        :meth:`JobQueue.stats <sqla_jobqueue.JobQueue.stats>`, awaited."""
        return await self._run(plans.stats(self, exact))

    async def count_where(
        self,
        job_filter: JobFilter,
        *,
        action: BulkAction | None = None,
        priority: int | None = None,
    ) -> int:
        """How many jobs match ``job_filter``, the dry run of a bulk action:
        :meth:`JobQueue.count_where <sqla_jobqueue.JobQueue.count_where>`, awaited."""
        return await self._run(plans.count_where(self, job_filter, action, priority))

    async def cancel_where(self, job_filter: JobFilter, *, limit: int = DEFAULT_CHUNK_SIZE) -> int:
        """Cancel a chunk of the jobs that match ``job_filter``: :meth:`JobQueue.cancel_where
        <sqla_jobqueue.JobQueue.cancel_where>`, awaited."""
        return await self._run(plans.cancel_where(self, job_filter, limit))

    async def retry_where(self, job_filter: JobFilter, *, limit: int = DEFAULT_CHUNK_SIZE) -> int:
        """Retry a chunk of the failed jobs that match ``job_filter``:
        :meth:`JobQueue.retry_where <sqla_jobqueue.JobQueue.retry_where>`, awaited."""
        return await self._run(plans.retry_where(self, job_filter, limit))

    async def reprioritize_where(
        self, job_filter: JobFilter, priority: int, *, limit: int = DEFAULT_CHUNK_SIZE
    ) -> int:
        """Give ``priority`` to a chunk of the pending jobs that match ``job_filter``:
        :meth:`JobQueue.reprioritize_where <sqla_jobqueue.JobQueue.reprioritize_where>`,
        awaited."""
        return await self._run(plans.reprioritize_where(self, job_filter, priority, limit))

    async def delete_where(self, job_filter: JobFilter, *, limit: int = DEFAULT_CHUNK_SIZE) -> int:
        """Delete a chunk of the pending or finished jobs that match ``job_filter``:
        :meth:`JobQueue.delete_where <sqla_jobqueue.JobQueue.delete_where>`, awaited."""
        return await self._run(plans.delete_where(self, job_filter, limit))
