"""The asyncio worker: ``async def`` handlers as tasks of an event loop, plain handlers on
threads beside it, and the dispatcher and the background loops as tasks.

It makes the decisions of :class:`~sqla_jobqueue.worker.dispatch.Dispatch` and writes with
:class:`~sqla_jobqueue.worker.recording.Recorder` through ``AsyncConnection.run_sync``, as
the sync :class:`~sqla_jobqueue.worker.Worker` does on threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from ..errors import InvalidJobError, JobQueueError
from ..handlers import AsyncJobContext, Handler, JobContext, JobContextBase, Registry
from ..listener import DEAF, PROBE_TIMEOUT, AsyncListener, probe
from ..maintenance import Duty, Scheduler
from ..statements import Claimed
from .control import (
    StopSignals,
    log_db_error,
    log_start,
    missing_table_error,
    next_backoff,
    warn_if_sessions_isolated,
)
from .dispatch import AloneStep, Dispatch
from .outcomes import Outcome, Run, WorkerStats, log_late_return, log_outcomes
from .recording import Recorder, RoundResult, needs_transaction
from .running import run_async_handler, run_handler
from .settings import WorkerOptions, WorkerSettings

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AsyncWorker"]

log = logging.getLogger("sqla_jobqueue.worker")


class AsyncWorker:
    """Runs the handlers of a registry on the jobs of one job table, on an asyncio loop.

    ``async def`` handlers run as tasks of the loop, at most ``concurrency`` at once, and
    get an :class:`~sqla_jobqueue.AsyncJobContext` whose ``session`` is an
    ``AsyncSession``; plain handlers run each on a thread of its own, with a
    :class:`~sqla_jobqueue.JobContext` that has no session. A handler over its timeout is
    cancelled (an async one; a plain one is left to return and its outcome discarded).
    Everything else — claims, rounds, fences, heartbeats, progress, rescue, shutdown — is
    what :class:`~sqla_jobqueue.worker.Worker` does, with the same settings::

        worker = AsyncWorker(async_engine, registry, concurrency=100)
        await worker.run()              # SIGTERM/SIGINT stop it gracefully

        async with AsyncWorker(async_engine, registry):   # beside an app, or in a test
            ...

    Parameters
    ----------
    bind:
        An :class:`~sqlalchemy.ext.asyncio.AsyncEngine` on ``postgresql+psycopg``, or an
        :class:`~sqlalchemy.ext.asyncio.async_sessionmaker` bound to one (then
        ``ctx.session`` comes from it).
    registry:
        The handlers.
    options:
        The settings of :class:`~sqla_jobqueue.worker.Worker`
        (:class:`~sqla_jobqueue.worker.WorkerOptions`); the checked settings are
        :attr:`settings`.
    """

    def __init__(
        self,
        bind: AsyncEngine | async_sessionmaker[AsyncSession],
        registry: Registry,
        **options: Unpack[WorkerOptions],
    ) -> None:
        if isinstance(bind, AsyncEngine):
            self.engine = bind
            # READ COMMITTED whatever the engine's level: above it, a heartbeat on the job's
            # row would make the completion in ctx.session's transaction fail.
            committed = bind.execution_options(isolation_level="READ COMMITTED")
            self.session_factory = async_sessionmaker(committed, expire_on_commit=False)
        elif isinstance(bind, async_sessionmaker):
            engine = bind.kw.get("bind")
            if not isinstance(engine, AsyncEngine):
                raise InvalidJobError(
                    "the async_sessionmaker given to AsyncWorker must be bound to an AsyncEngine"
                )
            self.engine = engine
            self.session_factory = bind
        else:
            raise InvalidJobError(
                f"AsyncWorker needs an AsyncEngine or an async_sessionmaker, got "
                f"{type(bind).__name__}; a sync Engine runs plain handlers with Worker"
            )
        self.settings = WorkerSettings.check(registry, **options)
        self.registry = registry
        self.worker_id = self.settings.worker_id
        self.duties: list[Duty] = self.settings.duties()
        self.scheduler: Scheduler | None = self.settings.scheduler()
        self.stats = WorkerStats()
        self.listener: AsyncListener | None = None
        self._dispatch = Dispatch(self.settings, registry, self._context)
        self._recorder = Recorder(self.settings)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._committed = self.engine.execution_options(isolation_level="READ COMMITTED")
        self._connection: AsyncConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._background_stop: asyncio.Event | None = None
        self._write_lock: asyncio.Lock | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._arrived = 0
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False
        self._abort = False
        self._started = False
        self._ready = threading.Event()
        self._task: asyncio.Task[int] | None = None

    def _context(self, row: Claimed, spec: Handler) -> JobContextBase[Any]:
        if spec.is_async:
            return AsyncJobContext(
                job_id=row.id,
                job_type=row.job_type,
                data=row.data,
                attempt=row.attempts,
                max_attempts=row.max_attempts,
                worker_id=self.worker_id,
                session_factory=self.session_factory,
            )
        return JobContext(
            job_id=row.id,
            job_type=row.job_type,
            data=row.data,
            attempt=row.attempts,
            max_attempts=row.max_attempts,
            worker_id=self.worker_id,
        )

    # ----------------------------------------------------------------- control

    async def run(self) -> int:
        """Run until stopped; return 0 after a graceful stop, 1 after an immediate one.

        In the main thread, SIGTERM and SIGINT are handled while it runs: the first stops
        gracefully, a second stops at once.
        """
        if self._started:
            raise JobQueueError("an AsyncWorker runs only once; create a new one")
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._background_stop = asyncio.Event()
        self._write_lock = asyncio.Lock()
        signals = StopSignals(self.stop, lambda: self._stopping, self.settings.grace_period)
        handled = _handle_signals(loop, signals)
        try:
            if not await self._startup():
                log.info("worker %s stopped before it started", self.worker_id)
                return 1
            self._ready.set()
            log_start(self.settings, "async worker")
            await self._dispatch_loop()
            return await self._shutdown()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            await self._stop_background()
            self._ready.set()

    def stop(self, *, graceful: bool = True) -> None:
        """Ask the worker to stop; safe from any thread.

        Graceful: stop claiming, let running handlers finish within the grace period.
        Otherwise: stop at once; jobs cut off come back through rescue.
        """
        loop = self._loop
        if loop is not None and not _on_loop(loop):
            # After run() ended there is nothing to stop, and its loop may be closed.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: self.stop(graceful=graceful))
            return
        if not self._stopping:
            self._dispatch.begin_stop(time.monotonic())
            self._stopping = True
        if not graceful:
            self._abort = True
        if self._wake is not None:
            self._wake.set()

    async def __aenter__(self) -> AsyncWorker:
        """Run in a task of the current loop; return once it is claiming."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="async-worker")
        while not self._ready.is_set():
            done, _ = await asyncio.wait({self._task}, timeout=0.01)
            if done:
                self._task.result()  # raises what stopped it
                raise JobQueueError("the worker stopped before it started")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        if self._task is not None:
            await self._task

    @property
    def running_jobs(self) -> list[Any]:
        """Ids of the jobs this worker is running now."""
        return self._dispatch.known_ids()

    # ----------------------------------------------------------------- startup

    async def _startup(self) -> bool:
        """Wait for the database and start the background tasks; False when stopped."""
        backoff = 0.0
        while True:
            try:
                async with self.engine.connect() as connection:
                    await connection.execute(*self._recorder.statements.probe())
                    sessions = self.session_factory.kw.get("bind")
                    sync_bind = sessions.sync_engine if sessions is not None else None
                    await connection.run_sync(warn_if_sessions_isolated, sync_bind)
                break
            except ProgrammingError as exc:
                raise missing_table_error(self.settings.table, exc) from exc
            except DBAPIError as exc:
                backoff = next_backoff(backoff, 0.2)
                log_db_error("connecting at startup", exc, backoff)
                if await self._stopped_within(backoff):
                    return False
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = [
            self._tick_loop,
            self._heartbeat_loop,
        ]
        if self.duties:
            loops.append(self._maintenance_loop)
        if self.scheduler is not None:
            loops.append(self._scheduler_loop)
        for each in loops:
            self._background.append(asyncio.get_running_loop().create_task(each()))
        settings = self.settings
        if settings.listen:
            if settings.listen_conninfo is not None or self.engine.dialect.driver == "psycopg":
                table = settings.table
                self.listener = AsyncListener(self._listener_connection, table, self._on_notify)
                self.listener.start()
                loop = asyncio.get_running_loop()
                self._background.append(loop.create_task(self._check_listener()))
            else:
                log.warning("LISTEN needs the psycopg driver, the engine uses %s: finding "
                            "jobs by polling every %gs only", self.engine.dialect.driver,
                            self.settings.poll_interval)  # fmt: skip
        return True

    async def _check_listener(self) -> None:
        """Warn when the listener does not hear a notification sent through the engine
        (a LISTEN through a transaction pooler hears nothing)."""
        listener = self.listener
        if listener is None:
            return
        if not await asyncio.to_thread(listener.listening.wait, PROBE_TIMEOUT):
            return  # not listening: the listener says why
        try:
            async with self.engine.begin() as connection:
                await connection.execute(*probe(str(listener.channel)))
        except DBAPIError as exc:
            log_db_error("checking that LISTEN hears", exc, self.settings.poll_interval)
            return
        if not await asyncio.to_thread(listener.heard.wait, PROBE_TIMEOUT):
            log.warning(DEAF, PROBE_TIMEOUT, self.settings.poll_interval)

    async def _listener_connection(self) -> psycopg.AsyncConnection[Any]:
        """A new connection to ``listen``'s URL when it is one, else made by the engine and
        taken out of its pool for good."""
        conninfo = self.settings.listen_conninfo
        if conninfo is not None:
            return await psycopg.AsyncConnection.connect(conninfo)
        fairy = await self.engine.raw_connection()
        connection = fairy.driver_connection
        if not isinstance(connection, psycopg.AsyncConnection):
            fairy.close()
            raise JobQueueError(
                f"the engine's connections are {type(connection).__name__}, not psycopg's"
            )
        fairy.detach()
        return connection

    def _on_notify(self, job_type: str | None) -> None:
        if self._dispatch.on_notify(job_type) and self._wake is not None:
            self._wake.set()

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the worker is stopped meanwhile; whether it was."""
        assert self._wake is not None
        deadline = time.monotonic() + seconds
        while not self._abort and (remaining := deadline - time.monotonic()) > 0:
            self._wake.clear()
            await _wait(self._wake, remaining)
            if self._stopping:
                return True
        return self._stopping

    # -------------------------------------------------------------- dispatcher

    async def _dispatch_loop(self) -> None:
        dispatch = self._dispatch
        wake = self._wake
        assert wake is not None
        backoff = 0.0
        while not self._abort:
            wake.clear()
            stopping = self._stopping
            now = time.monotonic()
            for run in dispatch.expire(now):
                if run.task is not None:
                    run.task.cancel()
            if dispatch.done(now, stopping):
                return
            free = dispatch.free_slots()
            want = dispatch.claim_size(now, stopping, free)
            if dispatch.pending or want:
                notified, arrived = dispatch.notified, self._arrived
                try:
                    alone = dispatch.alone_step(now, want)
                    result = await self._record_and_claim(want, alone)
                except Exception as exc:
                    backoff = next_backoff(backoff, 0.1)
                    log_db_error("recording outcomes and claiming", exc, backoff)
                    await self._abort_within(backoff)
                    continue
                backoff = 0.0
                claimed = result.claimed
                dispatch.claimed(
                    want,
                    claimed,
                    notified,
                    time.monotonic(),
                    alone,
                    result.alone_due,
                    result.limited,
                    result.held_back,
                )
                for run in dispatch.runs(claimed, time.monotonic()):
                    self._start(run)
                if dispatch.again_at_once(free, len(claimed)) or self._arrived != arrived:
                    # Let the handlers just started run before the next round.
                    await asyncio.sleep(0)
                    continue
            timeout = dispatch.idle_timeout(time.monotonic(), stopping, free)
            if timeout > 0 and not wake.is_set():
                await _wait(wake, timeout)

    async def _abort_within(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._abort and time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, deadline - time.monotonic()))

    async def _record_and_claim(self, want: int, alone: AloneStep = AloneStep.NONE) -> RoundResult:
        """Write the pending outcomes and claim ``want`` jobs, in one transaction."""
        dispatch = self._dispatch
        pending = dispatch.start_round()
        arguments = (pending, want, dispatch.resume_after, dispatch.uncertain,
                     dispatch.known_ids(), alone)  # fmt: skip
        round_ = self._recorder.round
        assert self._write_lock is not None
        try:
            async with self._write_lock:
                if needs_transaction(pending):
                    async with self._committed.connect() as connection, connection.begin():
                        result = await connection.run_sync(round_, *arguments)
                else:
                    if self._connection is None:
                        self._connection = await self._kept_connection()
                    try:
                        result = await self._connection.run_sync(round_, *arguments)
                    except BaseException:
                        await self._close_round_connection()
                        raise
        except BaseException:
            dispatch.round_failed(pending)
            raise
        log_outcomes(self.stats, dispatch.written(pending, result.again))
        return result

    async def _kept_connection(self) -> AsyncConnection:
        """An autocommit connection the worker keeps, pinned to READ COMMITTED."""
        connection = await self._autocommit.connect()
        try:
            await connection.run_sync(self._recorder.pin_read_committed)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _release(self, connection: AsyncConnection) -> None:
        """Give a kept connection back to the pool, unpinned."""
        with contextlib.suppress(Exception):
            await connection.run_sync(self._recorder.unpin_read_committed)
        with contextlib.suppress(Exception):
            await connection.close()

    async def _close_round_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._release(connection)

    # ---------------------------------------------------------------- handlers

    def _start(self, run: Run) -> None:
        assert self._loop is not None
        if run.spec.is_async:
            task = self._loop.create_task(self._run_async(run))
            run.task = task
        else:
            task = self._loop.create_task(self._run_in_thread(run))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _run_async(self, run: Run) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            self._finished(run, await run_async_handler(run, self._recorder, self._dispatch.lock))

    async def _run_in_thread(self, run: Run) -> None:
        # A thread of its own rather than a pool's: a plain handler stuck past its timeout
        # keeps its thread, and must not keep a slot of a pool from the next jobs.
        assert self._loop is not None
        done: asyncio.Future[Outcome] = self._loop.create_future()
        loop = self._loop

        def target() -> None:
            outcome = run_handler(run, self._recorder, self._dispatch.lock)
            try:
                loop.call_soon_threadsafe(_settle, done, run, outcome)
            except RuntimeError:  # the worker ended meanwhile, and its loop is closed
                log_late_return(run, outcome)

        threading.Thread(target=target, name="sqla_jobqueue-handler", daemon=True).start()
        self._finished(run, await done)

    def _finished(self, run: Run, outcome: Outcome) -> None:
        with self._dispatch.lock:
            run.finished = True
            timed_out = run.timed_out
        if timed_out:
            log_late_return(run, outcome)
            return
        self._dispatch.take(outcome)
        self._arrived += 1
        assert self._wake is not None
        self._wake.set()

    # ------------------------------------------------------ background loops

    async def _background_wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the background is stopped meanwhile; whether it was."""
        stop = self._background_stop
        assert stop is not None
        await _wait(stop, seconds)
        return stop.is_set()

    async def _tick_loop(self) -> None:
        backoff = 0.0
        assert self._write_lock is not None
        while not await self._background_wait(backoff or self.settings.progress_interval):
            runs = self._dispatch.reporting_runs()
            if not runs:
                continue
            try:
                async with self._write_lock, self._autocommit.connect() as connection:
                    await connection.run_sync(self._recorder.write_progress, runs)
                backoff = 0.0
            except Exception as exc:
                backoff = next_backoff(backoff, 0.5)
                log_db_error("writing progress", exc, backoff)

    async def _heartbeat_loop(self) -> None:
        # Its own connection, kept: a heartbeat waits for neither the dispatcher nor the
        # pool. It does wait for the event loop: a handler that blocks the loop (CPU work
        # in an async def) stops the heartbeats; run such work in a thread.
        connection: AsyncConnection | None = None
        backoff = 0.0
        interval = self.settings.heartbeat_interval
        try:
            while not await self._background_wait(backoff or interval):
                ids = self._dispatch.held_ids()
                if not ids:
                    continue
                try:
                    if connection is None:
                        connection = await self._kept_connection()
                    await connection.run_sync(self._recorder.heartbeat, ids)
                    backoff = 0.0
                except Exception as exc:
                    if connection is not None:
                        with contextlib.suppress(Exception):
                            await connection.close()
                        connection = None
                    backoff = min(next_backoff(backoff, 0.1), interval)
                    log_db_error("writing heartbeats", exc, backoff)
        finally:
            if connection is not None:
                await self._release(connection)

    async def _maintenance_loop(self) -> None:
        due = {duty.name: time.monotonic() for duty in self.duties}
        stop = self._background_stop
        assert stop is not None
        while not stop.is_set():
            for duty in self.duties:
                if time.monotonic() < due[duty.name]:
                    continue
                try:
                    changed = await duty.run_once_async(self.engine)
                    if changed:
                        log.info("%s: %d jobs", duty.name, changed)
                except Exception as exc:
                    log_db_error(f"running the {duty.name}", exc, duty.interval)
                due[duty.name] = time.monotonic() + duty.interval
            await self._background_wait(max(min(due.values()) - time.monotonic(), 0.05))

    async def _scheduler_loop(self) -> None:
        # A task of its own, woken at each tick: a long round of another duty never
        # delays a periodic job.
        scheduler = self.scheduler
        assert scheduler is not None
        wait = backoff = 0.0
        while not await self._background_wait(wait):
            try:
                await scheduler.run_once_async(self.engine)
                backoff = 0.0
                wait = scheduler.interval
            except Exception as exc:
                backoff = min(next_backoff(backoff, 0.5), scheduler.config.interval.total_seconds())
                log_db_error("enqueueing periodic jobs", exc, backoff)
                wait = backoff

    # ---------------------------------------------------------------- shutdown

    async def _shutdown(self) -> int:
        dispatch = self._dispatch
        if self._abort:
            for task in list(self._handlers):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._record_and_claim(0)
            log.warning("worker %s stopped at once; %d running jobs left for rescue",
                        self.worker_id, len(dispatch.known_ids()))  # fmt: skip
            return 1
        for run in dispatch.cut_off(time.monotonic()):
            if run.task is not None:
                run.task.cancel()
        for attempt in range(5):
            try:
                if dispatch.pending or dispatch.uncertain:
                    await self._record_and_claim(0)
                break
            except Exception as exc:
                log_db_error("recording final outcomes", exc, 0.5 * (attempt + 1))
                await asyncio.sleep(0.5 * (attempt + 1))
        log.info("worker %s stopped: %s", self.worker_id, self.stats)
        return 0

    async def _stop_background(self) -> None:
        if self._background_stop is not None:
            self._background_stop.set()
        if self.listener is not None:
            await self.listener.stop()
        for task in self._background:
            with contextlib.suppress(Exception):
                await task
        await self._close_round_connection()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=1.0)


def _settle(done: asyncio.Future[Outcome], run: Run, outcome: Outcome) -> None:
    """Hand a plain handler's outcome to its awaiting task; log it as late when that task
    was cancelled (the worker is ending)."""
    if done.done():
        log_late_return(run, outcome)
    else:
        done.set_result(outcome)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set, ``timeout`` seconds at most."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _handle_signals(loop: asyncio.AbstractEventLoop, signals: StopSignals) -> list[int]:
    """Route SIGTERM and SIGINT to ``signals`` (only possible in the main thread)."""
    handled: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return handled
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, signals.received, signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
            continue
        handled.append(signum)
    return handled
