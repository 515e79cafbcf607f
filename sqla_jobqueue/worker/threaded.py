"""The sync worker: plain handlers on a pool of threads, a dispatcher thread for the rounds,
and a thread for each background loop (progress, heartbeats, maintenance, and the scheduler
of periodic jobs when the registry declares any)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import InvalidJobError, JobQueueError
from ..handlers import Handler, JobContext, Registry
from ..listener import DEAF, PROBE_TIMEOUT, Listener, probe
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
from .running import run_handler
from .settings import WorkerOptions, WorkerSettings

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Worker"]

log = logging.getLogger("sqla_jobqueue.worker")

_STOP_WAIT = 10.0


class Worker:
    """Runs the plain (``def``) handlers of a registry on the jobs of one job table, on a
    pool of ``concurrency`` threads.

    Parameters
    ----------
    bind:
        An :class:`~sqlalchemy.engine.Engine`, or a :class:`~sqlalchemy.orm.sessionmaker`
        bound to one (then ``ctx.session`` comes from it). Its pool should allow
        ``concurrency + 4`` connections when handlers use ``ctx.session``.
    registry:
        The handlers. A registry whose handlers (of ``job_types``) are ``async def`` is
        run by :class:`~sqla_jobqueue.worker.AsyncWorker` instead.
    options:
        The settings, each optional: ``model``, ``job_types``, ``concurrency``,
        ``batch_size``, ``poll_interval``, ``heartbeat_interval``, ``stale_timeout``,
        ``worker_id``, ``grace_period``, ``progress_interval``, ``retention``,
        ``rescue_interval``, ``listen``, ``maintenance``, ``max_payload_bytes`` (see
        :class:`~sqla_jobqueue.worker.WorkerOptions`).

    Attributes
    ----------
    settings:
        The settings, checked (:class:`~sqla_jobqueue.worker.WorkerSettings`).
    stats:
        What this worker did so far (:class:`~sqla_jobqueue.worker.WorkerStats`).
    """

    def __init__(
        self,
        bind: Engine | sessionmaker[Session],
        registry: Registry,
        **options: Unpack[WorkerOptions],
    ) -> None:
        if isinstance(bind, Engine):
            self.engine = bind
            # READ COMMITTED whatever the engine's level: above it, a heartbeat on the job's
            # row would make the completion in ctx.session's transaction fail.
            committed = bind.execution_options(isolation_level="READ COMMITTED")
            self.session_factory: sessionmaker[Session] = sessionmaker(
                committed, expire_on_commit=False
            )
        elif isinstance(bind, sessionmaker):
            engine = bind.kw.get("bind")
            if not isinstance(engine, Engine):
                raise InvalidJobError("the sessionmaker given to Worker must be bound to an Engine")
            self.engine = engine
            self.session_factory = bind
        else:
            raise InvalidJobError(
                f"Worker needs an Engine or a sessionmaker, got {type(bind).__name__}"
            )
        self.settings = WorkerSettings.check(registry, **options)
        asynchronous = registry.async_job_types(self.settings.job_types)
        if asynchronous:
            raise InvalidJobError(
                f"the handlers of {', '.join(asynchronous)} are async def: run them with "
                "AsyncWorker (sqla-jobqueue worker chooses it by itself), or give this "
                "Worker job_types without them"
            )
        self.registry = registry
        self.worker_id = self.settings.worker_id
        self.duties: list[Duty] = self.settings.duties()
        self.scheduler: Scheduler | None = self.settings.scheduler()
        self.stats = WorkerStats()
        self.listener: Listener | None = None
        self._dispatch = Dispatch(self.settings, registry, self._context)
        self._recorder = Recorder(self.settings)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._committed = self.engine.execution_options(isolation_level="READ COMMITTED")
        self._connection: Connection | None = None
        self._control = threading.Lock()
        self._write_lock = threading.Lock()
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[Run | None] = queue.SimpleQueue()
        self._spawned = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._background_stop = threading.Event()
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._started = False
        self._thread: threading.Thread | None = None
        self._run_error: BaseException | None = None

    def _context(self, row: Claimed, spec: Handler) -> JobContext:
        return JobContext(
            job_id=row.id,
            job_type=row.job_type,
            data=row.data,
            attempt=row.attempts,
            max_attempts=row.max_attempts,
            worker_id=self.worker_id,
            session_factory=self.session_factory,
        )

    # ----------------------------------------------------------------- control

    def run(self) -> int:
        """Run until stopped; return 0 after a graceful stop, 1 after an immediate one.

        On the main thread, SIGTERM and SIGINT are handled while it runs: the first stops
        gracefully, a second stops at once.
        """
        with self._control:
            if self._started:
                raise JobQueueError("a Worker runs only once; create a new one")
            self._started = True
        signals = StopSignals(self.stop, self._stopping.is_set, self.settings.grace_period)
        signals.install()
        try:
            if not self._startup():
                log.info("worker %s stopped before it started", self.worker_id)
                return 1
            self._ready.set()
            log_start(self.settings)
            self._loop()
            return self._shutdown()
        finally:
            self._close_round_connection()
            self._stop_background()
            signals.restore()
            self._ready.set()
            self._finished.set()

    def stop(self, *, graceful: bool = True) -> None:
        """Ask the worker to stop (safe from any thread and from signal handlers).

        Graceful: stop claiming, let running handlers finish within the grace period.
        Otherwise: stop at once; jobs cut off come back through rescue.
        """
        if not self._stopping.is_set():
            self._dispatch.begin_stop(time.monotonic())
            self._stopping.set()
        if not graceful:
            self._abort.set()
        self._wake.set()

    def start(self, *, timeout: float = 30.0) -> Worker:
        """Run in a background thread; return once it is claiming."""
        self._thread = threading.Thread(target=self._run_in_thread, name="sqla_jobqueue-worker")
        self._thread.start()
        if not self._ready.wait(timeout):
            # Not left retrying in the background after the caller was told it failed.
            self.stop(graceful=False)
            self._finished.wait(_STOP_WAIT)
            raise JobQueueError(f"worker did not start within {timeout}s")
        if self._run_error is not None:
            raise JobQueueError(f"worker failed to start: {self._run_error}") from self._run_error
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a background worker to end; return whether it did."""
        return self._finished.wait(timeout)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join()

    @property
    def running_jobs(self) -> list[Any]:
        """Ids of the jobs this worker is running now."""
        return self._dispatch.known_ids()

    def _run_in_thread(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self._run_error = exc
            log.exception("worker %s stopped by an error", self.worker_id)

    # ----------------------------------------------------------------- startup

    def _startup(self) -> bool:
        """Wait for the database and start the threads; False when stopped meanwhile."""
        backoff = 0.0
        while True:
            try:
                with self.engine.connect() as connection:
                    connection.execute(*self._recorder.statements.probe())
                    warn_if_sessions_isolated(connection, self.session_factory.kw.get("bind"))
                break
            except ProgrammingError as exc:
                raise missing_table_error(self.settings.table, exc) from exc
            except DBAPIError as exc:
                backoff = next_backoff(backoff, 0.2)
                log_db_error("connecting at startup", exc, backoff)
                if self._stopping.wait(backoff):
                    return False
        # The handler threads start beside the first claim rather than before it (starting
        # a few hundred threads takes longer than the claim): claimed jobs wait in the work
        # queue for the threads still starting, for a few milliseconds after start-up only.
        spawner = threading.Thread(
            target=self._spawn_threads, name="sqla_jobqueue-spawner", daemon=True
        )
        spawner.start()
        background = [("ticker", self._tick_loop), ("heartbeat", self._heartbeat_loop)]
        if self.duties:
            background.append(("maintenance", self._maintenance_loop))
        if self.scheduler is not None:
            background.append(("scheduler", self._scheduler_loop))
        for name, target in background:
            thread = threading.Thread(target=target, name=f"sqla_jobqueue-{name}", daemon=True)
            thread.start()
        settings = self.settings
        if settings.listen:
            if settings.listen_conninfo is not None or self.engine.dialect.driver == "psycopg":
                connect = settings.listen_conninfo or self._listener_connection
                self.listener = Listener(connect, settings.table, self._on_notify)
                self.listener.start()
                threading.Thread(
                    target=self._check_listener, name="sqla_jobqueue-listen-check", daemon=True
                ).start()
            else:
                log.warning("LISTEN needs the psycopg driver, the engine uses %s: finding "
                            "jobs by polling every %gs only", self.engine.dialect.driver,
                            self.settings.poll_interval)  # fmt: skip
        return True

    def _check_listener(self) -> None:
        """Warn when the listener does not hear a notification sent through the engine
        (a LISTEN through a transaction pooler hears nothing)."""
        listener = self.listener
        if listener is None or not listener.listening.wait(PROBE_TIMEOUT):
            return  # not listening: the listener says why
        try:
            with self.engine.begin() as connection:
                connection.execute(*probe(str(listener.channel)))
        except DBAPIError as exc:
            log_db_error("checking that LISTEN hears", exc, self.settings.poll_interval)
            return
        if not listener.heard.wait(PROBE_TIMEOUT) and not self._stopping.is_set():
            log.warning(DEAF, PROBE_TIMEOUT, self.settings.poll_interval)

    def _listener_connection(self) -> psycopg.Connection[Any]:
        """A new connection made by the engine (its connect_args, creator and events),
        taken out of its pool for good."""
        fairy = self.engine.raw_connection()
        connection = fairy.driver_connection
        if not isinstance(connection, psycopg.Connection):
            fairy.close()
            raise JobQueueError(
                f"the engine's connections are {type(connection).__name__}, not psycopg"
            )
        fairy.detach()
        return connection

    def _spawn_threads(self) -> None:
        for _ in range(self.settings.concurrency):
            self._spawn_thread()

    def _spawn_thread(self) -> None:
        self._spawned += 1
        thread = threading.Thread(
            target=self._thread_main, name=f"sqla_jobqueue-handler-{self._spawned}", daemon=True
        )
        thread.start()

    def _on_notify(self, job_type: str | None) -> None:
        if self._dispatch.on_notify(job_type):
            self._wake.set()

    # -------------------------------------------------------------- dispatcher

    def _loop(self) -> None:
        dispatch = self._dispatch
        backoff = 0.0
        while not self._abort.is_set():
            self._wake.clear()
            stopping = self._stopping.is_set()
            now = time.monotonic()
            # A handler thread stuck past its timeout leaves the pool when its handler
            # returns; a new one takes its place now so the slot is not lost.
            for _ in dispatch.expire(now):
                self._spawn_thread()
            self._drain()
            if dispatch.done(now, stopping):
                return
            free = dispatch.free_slots()
            want = dispatch.claim_size(now, stopping, free)
            if dispatch.pending or want:
                notified = dispatch.notified
                try:
                    alone = dispatch.alone_step(now, want)
                    result = self._record_and_claim(want, alone)
                except Exception as exc:
                    backoff = next_backoff(backoff, 0.1)
                    log_db_error("recording outcomes and claiming", exc, backoff)
                    self._abort.wait(backoff)
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
                    self._work.put(run)
                if dispatch.again_at_once(free, len(claimed)) or not self._outcomes.empty():
                    continue
            self._wake.wait(dispatch.idle_timeout(time.monotonic(), stopping, free))

    def _drain(self) -> None:
        while True:
            try:
                outcome = self._outcomes.get_nowait()
            except queue.Empty:
                return
            self._dispatch.take(outcome)

    def _record_and_claim(self, want: int, alone: AloneStep = AloneStep.NONE) -> RoundResult:
        """Write the pending outcomes and claim ``want`` jobs (see :meth:`Recorder.round`).

        The common round (plain completions and a claim) is a single statement on a kept
        autocommit connection; failures, snoozes and cancellations add a statement each in
        an explicit transaction.
        """
        dispatch = self._dispatch
        pending = dispatch.start_round()
        arguments = (pending, want, dispatch.resume_after, dispatch.uncertain,
                     dispatch.known_ids(), alone)  # fmt: skip
        try:
            with self._write_lock:
                if needs_transaction(pending):
                    with self._committed.connect() as connection, connection.begin():
                        result = self._recorder.round(connection, *arguments)
                else:
                    connection = self._round_connection()
                    try:
                        result = self._recorder.round(connection, *arguments)
                    except BaseException:
                        self._close_round_connection()
                        raise
        except BaseException:
            dispatch.round_failed(pending)
            raise
        log_outcomes(self.stats, dispatch.written(pending, result.again))
        return result

    def _round_connection(self) -> Connection:
        """The dispatcher's autocommit connection, kept from round to round: checking one
        out of the pool and back in for every round costs more than the round's SQL."""
        if self._connection is None:
            connection = self._autocommit.connect()
            try:
                self._recorder.pin_read_committed(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _close_round_connection(self) -> None:
        """Give the kept connection back (after an error, or when the worker stops)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                self._recorder.unpin_read_committed(connection)
            with contextlib.suppress(Exception):
                connection.close()

    # ---------------------------------------------------------------- handlers

    def _thread_main(self) -> None:
        dispatch = self._dispatch
        while True:
            run = self._work.get()
            if run is None:
                return
            outcome = run_handler(run, self._recorder, dispatch.lock)
            with dispatch.lock:
                run.finished = True
                timed_out = run.timed_out
            if timed_out:
                log_late_return(run, outcome)
                return
            self._outcomes.put(outcome)
            if not self._wake.is_set():
                self._wake.set()

    # ------------------------------------------------------ background loops

    def _tick_loop(self) -> None:
        backoff = 0.0
        while not self._background_stop.wait(backoff or self.settings.progress_interval):
            try:
                runs = self._dispatch.reporting_runs()
                # Under the write lock: a statement that locks many jobs' rows never runs
                # beside the dispatcher's round, which locks some of the same rows.
                with self._write_lock, self._autocommit.connect() as connection:
                    self._recorder.write_progress(connection, runs)
                backoff = 0.0
            except Exception as exc:
                backoff = next_backoff(backoff, 0.5)
                log_db_error("writing progress", exc, backoff)

    def _heartbeat_loop(self) -> None:
        # Its own connection, kept: a heartbeat waits neither for the dispatcher nor for a
        # pool emptied by handlers, so a live worker's jobs are not rescued.
        connection: Connection | None = None
        backoff = 0.0
        interval = self.settings.heartbeat_interval
        try:
            while not self._background_stop.wait(backoff or interval):
                ids = self._dispatch.held_ids()
                if not ids:
                    continue
                try:
                    if connection is None:
                        connection = self._autocommit.connect()
                        self._recorder.pin_read_committed(connection)
                    self._recorder.heartbeat(connection, ids)
                    backoff = 0.0
                except Exception as exc:
                    if connection is not None:
                        with contextlib.suppress(Exception):
                            connection.close()
                        connection = None
                    backoff = min(next_backoff(backoff, 0.1), interval)
                    log_db_error("writing heartbeats", exc, backoff)
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    self._recorder.unpin_read_committed(connection)
                with contextlib.suppress(Exception):
                    connection.close()

    def _maintenance_loop(self) -> None:
        due = {duty.name: time.monotonic() for duty in self.duties}
        while not self._background_stop.is_set():
            for duty in self.duties:
                if time.monotonic() < due[duty.name]:
                    continue
                try:
                    changed = duty.run_once(self.engine)
                    if changed:
                        log.info("%s: %d jobs", duty.name, changed)
                except Exception as exc:
                    log_db_error(f"running the {duty.name}", exc, duty.interval)
                due[duty.name] = time.monotonic() + duty.interval
            wait = min(due.values()) - time.monotonic()
            self._background_stop.wait(max(wait, 0.05))

    def _scheduler_loop(self) -> None:
        # A loop of its own, woken at each tick: a long round of another duty never
        # delays a periodic job.
        scheduler = self.scheduler
        assert scheduler is not None
        wait = backoff = 0.0
        while not self._background_stop.wait(wait):
            try:
                scheduler.run_once(self.engine)
                backoff = 0.0
                wait = scheduler.interval
            except Exception as exc:
                backoff = min(next_backoff(backoff, 0.5), scheduler.config.interval.total_seconds())
                log_db_error("enqueueing periodic jobs", exc, backoff)
                wait = backoff

    # ---------------------------------------------------------------- shutdown

    def _shutdown(self) -> int:
        dispatch = self._dispatch
        if self._abort.is_set():
            self._drain()
            with contextlib.suppress(Exception):
                self._record_and_claim(0)
            log.warning("worker %s stopped at once; %d running jobs left for rescue",
                        self.worker_id, len(dispatch.known_ids()))  # fmt: skip
            return 1
        dispatch.cut_off(time.monotonic())
        self._drain()
        for attempt in range(5):
            try:
                if dispatch.pending or dispatch.uncertain:
                    self._record_and_claim(0)
                break
            except Exception as exc:
                log_db_error("recording final outcomes", exc, 0.5 * (attempt + 1))
                time.sleep(0.5 * (attempt + 1))
        log.info("worker %s stopped: %s", self.worker_id, self.stats)
        return 0

    def _stop_background(self) -> None:
        self._background_stop.set()
        if self.listener is not None:
            self.listener.stop()
        for _ in range(self._spawned):
            self._work.put(None)
