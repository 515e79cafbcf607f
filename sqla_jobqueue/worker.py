"""Worker: the process side of the queue: claim, run, record, heartbeat, shut down.

A :class:`Worker` runs the handlers of a :class:`~sqla_jobqueue.handlers.Registry` on a
pool of ``concurrency`` threads against one job table::

    worker = Worker(engine, registry, concurrency=8)
    worker.run()                    # blocks; SIGTERM/SIGINT stop it gracefully

    with Worker(engine, registry):  # or in the background of a web app or a test
        ...

How it works (the guarantees are stated in ``docs/reliability.md``):

- **Claiming.** The dispatcher thread claims at most as many due jobs as it has free slots,
  highest priority first, with one ``UPDATE … FOR NO KEY UPDATE SKIP LOCKED`` statement that
  also marks them ``running``: every claimed job starts on a free thread at once, so the
  worker never holds a job it is not running, and a crash charges an attempt to exactly the
  jobs that were running (see :mod:`sqla_jobqueue.statements`). While claims come back full,
  each resumes after the last job the previous one took instead of scanning again from the
  start of the claim index, over the entries of jobs already taken; a claim that comes back
  short, and every ``poll_interval`` at the latest, starts from the beginning again.
- **Recording.** Outcomes are written by the dispatcher in one transaction per round: every
  plain completion of the round in a single ``UPDATE``, failures, retries and cancellations
  one statement each, together with the next claim. A handler that used ``ctx.session``
  completes its job in its own transaction instead, so its writes and the completion commit
  together. Every write is fenced by ``worker_id`` and attempt: a worker whose job was
  rescued and claimed again cannot complete it.
- **Progress and heartbeats.** Every ``progress_interval`` a ticker thread writes the
  coalesced ``ctx.progress()`` / ``ctx.event()`` values of all running jobs in one
  statement. A heartbeat thread, on a connection of its own and waiting for no other
  thread, refreshes ``heartbeat_at`` of the jobs this worker is running every
  ``heartbeat_interval``.
- **Uncertain rounds.** When a round's commit may have happened but its answer was lost,
  the next round first gives back (to ``pending``, attempt refunded) every job the
  database says this worker holds but it is not running.
- **Maintenance.** A maintenance thread runs the rescuer and the pruner
  (:mod:`sqla_jobqueue.maintenance`); each round is done by one worker at a time.
- **Wake-up.** A :class:`~sqla_jobqueue.listener.Listener` wakes the dispatcher when a job is
  enqueued; without it (or while it reconnects) the dispatcher polls every
  ``poll_interval``.
- **Outages.** A database error never ends the worker: it is logged, the dispatcher backs
  off and tries again with the outcomes it still has to write.
- **Shutdown.** :meth:`Worker.stop` (or the first SIGTERM/SIGINT) stops claiming, lets running
  handlers finish within ``grace_period``, writes their outcomes and returns 0. A handler
  still running after the grace period is recorded as a failed attempt due again at once. A
  second signal stops at once (exit code 1); the jobs cut off come back through rescue.

One INFO line per job outcome is logged on the ``sqla_jobqueue.worker`` logger with the
job's id, type, attempt and duration.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import queue
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Table
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from . import validation as check
from .errors import (
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    JobQueueError,
    ModelError,
)
from .handlers import Cancel, Handler, JobContext, Registry, Retry
from .listener import Listener
from .maintenance import Duty, Pruner, PrunerConfig, Rescuer, RescuerConfig
from .maintenance.pruner import DEFAULT_RETENTION
from .maintenance.rescuer import DEFAULT_STALE_TIMEOUT
from .model import Job, JobMixin, JobStatus, is_job_table
from .plans import check_job_types, default_worker_id
from .queue import JobQueue
from .statements import Bound, Claimed, ClaimPosition, JobStatements, driver_sql

__all__ = ["Worker", "WorkerSettings", "WorkerStats", "load_registry"]

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 10
DEFAULT_POLL_INTERVAL = timedelta(seconds=2)
DEFAULT_HEARTBEAT_INTERVAL = timedelta(seconds=10)
DEFAULT_GRACE_PERIOD = timedelta(seconds=30)
DEFAULT_PROGRESS_INTERVAL = timedelta(milliseconds=500)
_MAX_ERROR_CHARS = 8000
_MAX_BACKOFF = 5.0
_IDLE_CAP = 1.0
_MAX_RECORD_TRIES = 5
_STOP_WAIT = 10.0

Duration = timedelta | float | int
"""A duration: a :class:`~datetime.timedelta` or a number of seconds."""

_COMPLETED = "completed"
_FAILED = "failed"
_RETRY = "retry"
_CANCELLED = "cancelled"
_DONE = "done"  # completed in the handler's own transaction already
_COMPLETED_STATUS = JobStatus.COMPLETED.value
_CANCELLED_STATUS = JobStatus.CANCELLED.value
_LOST = "lost"  # the worker no longer held the job


def _seconds(value: Duration, what: str, *, allow_zero: bool = False) -> float:
    # validation's interval checks take timedeltas only; worker settings also take seconds.
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidJobError(f"{what} must be a timedelta or seconds, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidJobError(f"{what} must be {'zero or more' if allow_zero else 'positive'}, "
                              f"got {value!r}")  # fmt: skip
    return seconds


def _positive_int(value: object, what: str) -> int:
    number = check.check_int32(value, what)
    if number < 1:
        raise InvalidJobError(f"{what} must be at least 1, got {number}")
    return number


def _job_table(model: type[JobMixin]) -> Table:
    table = getattr(model, "__table__", None)
    if not isinstance(table, Table) or not is_job_table(table):
        raise ModelError(f"{model!r} is not a mapped JobMixin model")
    return table


@dataclass(frozen=True)
class WorkerSettings:
    """A worker's settings, checked, with durations in seconds: what a :class:`Worker` runs
    with. :meth:`check` is how a :class:`Worker` checks its arguments, and how
    ``sqla-jobqueue worker`` checks its options before it opens a database."""

    job_types: list[str]
    concurrency: int
    batch_size: int
    poll_interval: float
    heartbeat_interval: float
    stale_timeout: float
    grace_period: float
    progress_interval: float
    rescue_interval: float
    retention: float | None
    worker_id: str

    @classmethod
    def check(
        cls,
        registry: Registry,
        *,
        model: type[JobMixin] = Job,
        job_types: Sequence[str] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        batch_size: int | None = None,
        poll_interval: Duration = DEFAULT_POLL_INTERVAL,
        heartbeat_interval: Duration = DEFAULT_HEARTBEAT_INTERVAL,
        stale_timeout: Duration = DEFAULT_STALE_TIMEOUT,
        worker_id: str | None = None,
        grace_period: Duration = DEFAULT_GRACE_PERIOD,
        progress_interval: Duration = DEFAULT_PROGRESS_INTERVAL,
        retention: Duration | None = DEFAULT_RETENTION,
        rescue_interval: Duration | None = None,
    ) -> WorkerSettings:
        """The settings :class:`Worker` takes (same names, same defaults), checked.

        Raises
        ------
        InvalidJobError
            When a setting is out of range, the registry is empty or has no handler for a
            type of ``job_types``, or the stale timeout is under three heartbeat intervals.
        ModelError
            When ``model`` is not a mapped :class:`~sqla_jobqueue.model.JobMixin` model.
        """
        if not isinstance(registry, Registry):
            raise InvalidJobError(f"registry must be a Registry, got {type(registry).__name__}")
        if not len(registry):
            raise InvalidJobError("the registry has no handlers")
        _job_table(model)
        types = registry.job_types if job_types is None else check_job_types(job_types) or []
        unknown = [t for t in types if t not in registry]
        if unknown:
            raise InvalidJobError(
                f"no handler registered for job types {unknown}; registered are "
                f"{registry.job_types}"
            )
        slots = _positive_int(concurrency, "concurrency")
        batch = _positive_int(slots if batch_size is None else batch_size, "batch_size")
        if batch > slots:
            log.info(
                "batch_size %d is more than concurrency %d: a claim never takes more jobs "
                "than there are free slots, so at most %d", batch, slots, slots,
            )  # fmt: skip
            batch = slots
        heartbeat = _seconds(heartbeat_interval, "heartbeat_interval")
        stale = _seconds(stale_timeout, "stale_timeout")
        if stale < 3 * heartbeat:
            raise InvalidJobError(
                f"stale_timeout ({stale}s) must be at least three heartbeat intervals "
                f"({heartbeat}s each), or live workers' jobs would be rescued"
            )
        identity = worker_id or default_worker_id()
        check.check_text(identity, "worker_id", 100)
        return cls(
            job_types=types,
            concurrency=slots,
            batch_size=batch,
            poll_interval=_seconds(poll_interval, "poll_interval"),
            heartbeat_interval=heartbeat,
            stale_timeout=stale,
            grace_period=_seconds(grace_period, "grace_period", allow_zero=True),
            progress_interval=_seconds(progress_interval, "progress_interval"),
            rescue_interval=(
                stale / 4
                if rescue_interval is None
                else _seconds(rescue_interval, "rescue_interval")
            ),
            retention=None if retention is None else _seconds(retention, "retention"),
            worker_id=identity,
        )


@dataclass
class WorkerStats:
    """Counts of job outcomes recorded by one worker since it started.

    ``str(stats)`` is a one-line summary for logs and the command line:
    ``"3 completed, 1 failed, 0 retried, 1 cancelled, 0 lost"``.
    """

    completed: int = 0
    failed: int = 0
    """Failed attempts, whether the job goes back to pending or ends ``failed``."""
    retried: int = 0
    """Attempts whose handler raised :class:`~sqla_jobqueue.Retry`."""
    cancelled: int = 0
    """Jobs whose handler raised :class:`~sqla_jobqueue.Cancel`, and jobs cancelled (for
    instance with ``sqla-jobqueue cancel``) while they ran here."""
    lost: int = 0
    """Outcomes discarded: the job was no longer this worker's (rescued after a stale
    heartbeat and claimed again, or deleted), or its outcome could not be written."""

    def add(self, kind: str) -> None:
        """Count one outcome (internal)."""
        attribute = _STAT_OF_KIND[kind]
        setattr(self, attribute, getattr(self, attribute) + 1)

    def __str__(self) -> str:
        return (
            f"{self.completed} completed, {self.failed} failed, {self.retried} retried, "
            f"{self.cancelled} cancelled, {self.lost} lost"
        )


_STAT_OF_KIND = {
    _COMPLETED: "completed", _DONE: "completed", _FAILED: "failed",
    _RETRY: "retried", _CANCELLED: "cancelled", _LOST: "lost",
}  # fmt: skip


class _Run:
    """One attempt in progress on this worker."""

    __slots__ = ("ctx", "deadline", "finished", "spec", "started", "timed_out")

    def __init__(self, ctx: JobContext, spec: Handler, started: float) -> None:
        self.ctx = ctx
        self.spec = spec
        self.started = started
        timeout = spec.timeout
        self.deadline = None if timeout is None else started + timeout.total_seconds()
        self.finished = False
        self.timed_out = False


@dataclass(slots=True)
class _Outcome:
    run: _Run
    kind: str
    result_json: str | None = None
    error: str | None = None
    after: timedelta | None = None
    duration: float = 0.0
    final_status: str = field(default="")
    summary: str = ""
    """One line for the log; ``error`` holds the whole story for ``last_error``."""
    tries: int = 0
    """Rounds in which writing this outcome failed with a non-transient error."""
    stage: str | None = None
    """A progress stage the ticker had not written yet, written with the completion."""
    events: int = 0
    """Events the ticker had not counted yet, counted with the completion."""


def _transient(exc: BaseException) -> bool:
    """Whether a database error is about the connection rather than the statement."""
    return isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def failure_text(exc: BaseException) -> str:
    """The traceback of a handler's exception as ``last_error`` keeps it (bounded)."""
    text_ = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text_) > _MAX_ERROR_CHARS:
        text_ = text_[:200] + "\n...\n" + text_[-(_MAX_ERROR_CHARS - 205) :]
    return text_


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message.splitlines()[0]}" if message else type(exc).__name__


class Worker:
    """Runs the handlers of a registry on the jobs of one job table.

    Parameters
    ----------
    bind:
        An :class:`~sqlalchemy.engine.Engine`, or a :class:`~sqlalchemy.orm.sessionmaker`
        bound to one (then ``ctx.session`` comes from it). Its pool should allow
        ``concurrency + 4`` connections when handlers use ``ctx.session``.
    registry:
        The handlers.
    model:
        The job model (``Job`` by default).
    job_types:
        The types this worker claims; by default every type of the registry.
    concurrency:
        Handler threads, and the most jobs held at once.
    batch_size:
        Most jobs claimed by one statement (by default ``concurrency``); never more than
        the free slots.
    poll_interval:
        How often an idle worker looks for due jobs when no notification woke it (also
        how soon a job whose ``run_at`` passes is picked up), and how often a busy worker
        looks again at the start of the queue for jobs of the priority it is draining that
        sort before its position (see :doc:`/workers`).
    heartbeat_interval:
        How often ``heartbeat_at`` of running jobs is refreshed.
    stale_timeout:
        Heartbeat age after which the rescuer returns a job to pending. At least three
        heartbeat intervals.
    worker_id:
        This worker's identity (``host:pid:random`` by default).
    grace_period:
        How long a graceful stop waits for running handlers.
    progress_interval:
        Time between two writes of the progress running jobs reported.
    listen:
        Whether to LISTEN for enqueue notifications (polling only when ``False``).
    maintenance:
        Whether this worker takes part in the rescue and prune rounds.
    retention:
        How long finished jobs are kept before the pruner deletes them; ``None`` never
        prunes.
    rescue_interval:
        Time between rescue rounds (by default a quarter of ``stale_timeout``).
    max_payload_bytes:
        Largest JSON result accepted.
    """

    def __init__(
        self,
        bind: Engine | sessionmaker[Session],
        registry: Registry,
        *,
        model: type[JobMixin] = Job,
        job_types: Sequence[str] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        batch_size: int | None = None,
        poll_interval: Duration = DEFAULT_POLL_INTERVAL,
        heartbeat_interval: Duration = DEFAULT_HEARTBEAT_INTERVAL,
        stale_timeout: Duration = DEFAULT_STALE_TIMEOUT,
        worker_id: str | None = None,
        grace_period: Duration = DEFAULT_GRACE_PERIOD,
        progress_interval: Duration = DEFAULT_PROGRESS_INTERVAL,
        listen: bool = True,
        maintenance: bool = True,
        retention: Duration | None = DEFAULT_RETENTION,
        rescue_interval: Duration | None = None,
        max_payload_bytes: int = check.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        if isinstance(bind, Engine):
            self.engine = bind
            self.session_factory: sessionmaker[Session] = sessionmaker(bind, expire_on_commit=False)
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
        settings = WorkerSettings.check(
            registry,
            model=model,
            job_types=job_types,
            concurrency=concurrency,
            batch_size=batch_size,
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            stale_timeout=stale_timeout,
            worker_id=worker_id,
            grace_period=grace_period,
            progress_interval=progress_interval,
            retention=retention,
            rescue_interval=rescue_interval,
        )
        self.registry = registry
        # Looked up for every job claimed (the registry's lookup costs a method call); a
        # registry only grows, and a type registered later is found in it on first use.
        self._handlers = {job_type: registry[job_type] for job_type in registry}
        self.model = model
        self.table: Table = _job_table(model)
        self.job_types: list[str] | None = settings.job_types
        self.concurrency = settings.concurrency
        self.batch_size = settings.batch_size
        self.poll_interval = settings.poll_interval
        self.heartbeat_interval = settings.heartbeat_interval
        self.stale_timeout = settings.stale_timeout
        self.grace_period = settings.grace_period
        self.progress_interval = settings.progress_interval
        self.worker_id = settings.worker_id
        self.max_payload_bytes = max_payload_bytes
        self.listen = bool(listen)
        duties: list[Duty] = []
        if maintenance:
            stale = timedelta(seconds=settings.stale_timeout)
            every = timedelta(seconds=settings.rescue_interval)
            duties.append(Rescuer(model, RescuerConfig(stale, every)))
            if settings.retention is not None:
                keep = timedelta(seconds=settings.retention)
                duties.append(Pruner(model, PrunerConfig(retention=keep)))
        self.duties = duties
        self.stats = WorkerStats()
        self.listener: Listener | None = None

        self._statements = JobStatements.of(self.table)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._connection: Connection | None = None
        self._uncertain = False
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._active: dict[uuid.UUID, _Run] = {}
        self._pending: list[_Outcome] = []
        self._outcomes: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[_Run | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._background_stop = threading.Event()
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._hungry = True
        self._notified = 0
        self._resume_after: ClaimPosition | None = None
        self._resume_until = 0.0
        self._next_poll = 0.0
        self._grace_deadline = math.inf
        self._started = False
        self._thread: threading.Thread | None = None
        self._run_error: BaseException | None = None

    # ----------------------------------------------------------------- control

    def run(self) -> int:
        """Run until stopped; return 0 after a graceful stop, 1 after an immediate one.

        On the main thread, SIGTERM and SIGINT are handled while it runs: the first stops
        gracefully, a second stops at once.
        """
        with self._lock:
            if self._started:
                raise JobQueueError("a Worker runs only once; create a new one")
            self._started = True
        previous = self._install_signals()
        try:
            if not self._startup():
                log.info("worker %s stopped before it started", self.worker_id)
                return 1
            self._ready.set()
            log.info(
                "worker %s started: types %s, concurrency %d, batch %d, polling every %gs, "
                "heartbeat every %gs",
                self.worker_id, ",".join(self.job_types or []), self.concurrency,
                self.batch_size, self.poll_interval, self.heartbeat_interval,
            )  # fmt: skip
            self._loop()
            return self._shutdown()
        finally:
            self._close_round_connection()
            self._stop_background()
            self._restore_signals(previous)
            self._ready.set()
            self._finished.set()

    def stop(self, *, graceful: bool = True) -> None:
        """Ask the worker to stop (safe from any thread and from signal handlers).

        Graceful: stop claiming, let running handlers finish within the grace period.
        Otherwise: stop at once; jobs cut off come back through rescue.
        """
        if not self._stopping.is_set():
            self._grace_deadline = time.monotonic() + self.grace_period
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
    def running_jobs(self) -> list[uuid.UUID]:
        """Ids of the jobs this worker is running now."""
        with self._lock:
            return list(self._active)

    def _run_in_thread(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self._run_error = exc
            log.exception("worker %s stopped by an error", self.worker_id)

    # ----------------------------------------------------------------- signals

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            log.warning("%s again: stopping at once; running jobs come back through rescue",
                        name)  # fmt: skip
            self.stop(graceful=False)
        else:
            log.info("%s: finishing running jobs (grace period %.0fs); send it again to stop "
                     "at once", name, self.grace_period)  # fmt: skip
            self.stop()

    # ----------------------------------------------------------------- startup

    def _startup(self) -> bool:
        """Wait for the database and start the threads; False when stopped meanwhile."""
        backoff = 0.2
        while True:
            try:
                with self.engine.connect() as connection:
                    connection.execute(*self._statements.probe())
                break
            except ProgrammingError as exc:
                raise JobQueueError(
                    f"cannot read the job table {self.table.fullname!r}: "
                    f"{_first_line(exc.orig or exc)}; if your job model maps another "
                    "table, give it as the worker's model (Worker(engine, registry, "
                    "model=YourJob), or --model MODULE:CLASS); otherwise run the "
                    "migrations first (sqla-jobqueue migrate, or alembic upgrade head)"
                ) from exc
            except DBAPIError as exc:
                log.warning("database unavailable at startup (%s); retrying in %.1fs",
                            _first_line(exc.orig or exc), backoff)  # fmt: skip
                if self._stopping.wait(backoff):
                    return False
                backoff = min(backoff * 2, _MAX_BACKOFF)
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
        for name, target in background:
            thread = threading.Thread(target=target, name=f"sqla_jobqueue-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.listen:
            if self.engine.dialect.driver == "psycopg":
                self.listener = Listener(self._listener_connection, self.table, self._on_notify)
                self.listener.start()
            else:
                log.warning("LISTEN needs the psycopg driver, the engine uses %s: finding "
                            "jobs by polling every %gs only", self.engine.dialect.driver,
                            self.poll_interval)  # fmt: skip
        return True

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
        for index in range(self.concurrency):
            self._spawn_thread(index)

    def _spawn_thread(self, index: int) -> None:
        thread = threading.Thread(
            target=self._thread_main, name=f"sqla_jobqueue-handler-{index}", daemon=True
        )
        thread.start()

    def _on_notify(self, job_type: str | None) -> None:
        if job_type is None or self.job_types is None or job_type in self.job_types:
            self._notified += 1
            self._hungry = True
            self._wake.set()

    # -------------------------------------------------------------- dispatcher

    def _loop(self) -> None:
        backoff = 0.0
        while not self._abort.is_set():
            self._wake.clear()
            stopping = self._stopping.is_set()
            now = time.monotonic()
            self._check_timeouts(now)
            self._drain()
            with self._lock:
                active = len(self._active)
            if stopping and (active == 0 or now >= self._grace_deadline):
                return
            # Jobs whose outcome is written in this round free their slot in it too.
            free = self.concurrency - active + len(self._pending)
            want = 0
            if not stopping and free > 0 and (self._hungry or now >= self._next_poll):
                want = min(self.batch_size, free)
            if now >= self._resume_until:
                self._resume_after = None
            if self._pending or want:
                notified = self._notified
                try:
                    claimed = self._record_and_claim(want)
                except Exception as exc:
                    self._uncertain = True
                    self._resume_after = None
                    backoff = min(max(backoff * 2, 0.1), _MAX_BACKOFF)
                    self._log_db_error("recording outcomes and claiming", exc, backoff)
                    self._abort.wait(backoff)
                    continue
                backoff = 0.0
                if want:
                    full = len(claimed) == want
                    # A short claim that resumed may have passed over due jobs before its
                    # position; a notification during the claim may be for a job it could
                    # not see yet: either way, look again at once.
                    resumed = self._resume_after is not None
                    self._hungry = full or resumed or self._notified != notified
                    self._resume_from(claimed[-1] if full else None)
                    if not self._hungry:
                        self._next_poll = time.monotonic() + self.poll_interval
                self._dispatch(claimed)
                if (self._hungry and free > len(claimed)) or not self._outcomes.empty():
                    continue
            self._wake.wait(self._idle_timeout(stopping, free))

    def _resume_from(self, last: Claimed | None) -> None:
        """Let the next claim resume after ``last`` (``None``: from the start of the queue).

        Positions are kept for at most ``poll_interval`` from the first: jobs that become
        due before the position (a retry, a rescued job, a job whose enqueueing
        transaction began before the position) are claimed within that time.
        """
        if last is None:
            self._resume_after = None
            return
        if self._resume_after is None:
            self._resume_until = time.monotonic() + self.poll_interval
        self._resume_after = ClaimPosition.of(last)

    def _idle_timeout(self, stopping: bool, free: int) -> float:
        now = time.monotonic()
        timeout = _IDLE_CAP
        if stopping:
            timeout = min(timeout, self._grace_deadline - now)
        elif free > 0:
            timeout = min(timeout, self._next_poll - now)
        with self._lock:
            deadlines = [r.deadline for r in self._active.values() if r.deadline is not None]
        if deadlines:
            timeout = min(timeout, min(deadlines) - now)
        return max(timeout, 0.0)

    def _drain(self) -> None:
        while True:
            try:
                outcome = self._outcomes.get_nowait()
            except queue.Empty:
                return
            if not outcome.run.timed_out:
                self._pending.append(outcome)

    def _check_timeouts(self, now: float) -> None:
        expired: list[_Run] = []
        with self._lock:
            for run in self._active.values():
                if run.deadline is not None and now >= run.deadline and not run.finished:
                    run.timed_out = True
                    run.ctx.abandon()
                    expired.append(run)
        for run in expired:
            timeout = run.spec.timeout.total_seconds() if run.spec.timeout else 0.0
            message = (
                f"TimeoutError: handler of {run.ctx.job_type!r} did not finish within its "
                f"timeout of {timeout:g}s; the attempt is failed (the handler's thread is "
                "left to return on its own and its outcome is discarded)"
            )
            self._pending.append(_Outcome(run, _FAILED, error=message, duration=now - run.started))
            # The stuck thread leaves the pool when its handler returns; a new one takes
            # its place now so the slot is not lost.
            self._spawn_thread(len(self._threads) + 1000)

    def _record_and_claim(self, want: int) -> list[Claimed]:
        """Write the pending outcomes and claim ``want`` jobs, in one transaction.

        The common round (plain completions and a claim) is a single statement on an
        autocommit connection; failures, retries and cancellations add a statement each
        in an explicit transaction.
        """
        if self._uncertain:
            self._give_back_unknown()
        pending = self._pending
        completions = [o for o in pending if o.kind == _COMPLETED]
        more = any(o.kind in (_FAILED, _RETRY, _CANCELLED) for o in pending)
        claimed: list[Claimed] = []
        again: list[_Outcome] = []
        if completions or more or want:
            arrays = (
                [o.run.ctx.job_id for o in completions],
                [o.run.ctx.attempt for o in completions],
                [o.result_json for o in completions],
                [o.stage for o in completions],
                [o.events for o in completions],
            )
            with self._write_lock:
                if more:
                    with self.engine.connect() as connection, connection.begin():
                        done, claimed = self._complete_and_claim(connection, *arrays, want)
                        again = self._record(connection, pending)
                else:
                    connection = self._round_connection()
                    try:
                        done, claimed = self._complete_and_claim(connection, *arrays, want)
                    except BaseException:
                        self._close_round_connection()
                        raise
            if len(done) == len(completions):  # the common round: every one was written
                for outcome in completions:
                    outcome.final_status = _COMPLETED_STATUS
            else:
                written_ids = set(done)
                for outcome in completions:
                    in_done = outcome.run.ctx.job_id in written_ids
                    outcome.final_status = _COMPLETED_STATUS if in_done else _LOST
        uncertain, self._uncertain = self._uncertain, False
        for outcome in pending:
            if outcome.kind == _DONE:
                outcome.final_status = _COMPLETED_STATUS
            elif outcome.kind == _LOST:
                outcome.final_status = _LOST
        # An outcome refused for a non-transient reason is tried again next round, alone
        # in its savepoint, so that it never holds back the others.
        self._pending = again
        written = [o for o in pending if o not in again] if again else pending
        refused = [o for o in written if o.final_status == _LOST]
        if refused:
            self._settle_refused(refused, uncertain)
        with self._lock:
            for outcome in written:
                self._active.pop(outcome.run.ctx.job_id, None)
        self._log_outcomes(written)
        return claimed

    def _round_connection(self) -> Connection:
        """The dispatcher's autocommit connection, kept from round to round: checking one
        out of the pool and back in for every round costs more than the round's SQL."""
        if self._connection is None:
            self._connection = self._autocommit.connect()
        return self._connection

    def _close_round_connection(self) -> None:
        """Give the kept connection back (after an error, or when the worker stops)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _complete_and_claim(
        self,
        connection: Connection,
        ids: list[uuid.UUID],
        attempts: list[int],
        results: list[str | None],
        stages: list[str | None],
        events: list[int],
        want: int,
    ) -> tuple[list[uuid.UUID], list[Claimed]]:
        """Run a round (:meth:`JobStatements.complete_and_claim`); return the ids completed
        and the jobs claimed, in claim order."""
        bound = self._statements.complete_and_claim(
            self.worker_id, ids, attempts, results, stages, events, want, self.job_types,
            self._resume_after,
        )  # fmt: skip
        done: list[uuid.UUID] = []
        claimed: list[Claimed] = []
        for row in self._driver_rows(connection, bound):
            if row[0]:
                done.append(row[1])
            else:
                claimed.append(Claimed._make(row[1:]))
        return done, claimed

    @staticmethod
    def _driver_rows(connection: Connection, bound: Bound) -> Sequence[Any]:
        """Run ``bound`` and return the driver's own rows.

        These columns need no processing, and on the hot path building SQLAlchemy rows
        costs more per job than anything else but the database. The statement still runs
        through SQLAlchemy (its events, logging, error wrapping and invalidation of a lost
        connection).
        """
        sql, compiled = driver_sql(connection.dialect, bound.statement)
        result = connection.exec_driver_sql(sql, compiled.construct_params(bound.params))
        try:
            rows: Sequence[Any] = result.cursor.fetchall()
        finally:
            result.close()
        return rows

    def _give_back_unknown(self) -> None:
        """Give back the jobs the database says this worker holds but it is not running."""
        with self._lock:
            known = list(self._active)
        with self._write_lock, self._autocommit.connect() as connection:
            bound = self._statements.give_back(self.worker_id, known)
            given = list(connection.execute(*bound).scalars())
        if given:
            log.warning("gave back %d jobs claimed by a round whose answer was lost: %s",
                        len(given), ", ".join(map(str, given)))  # fmt: skip

    def _settle_refused(self, refused: list[_Outcome], uncertain: bool) -> None:
        """Find out why outcomes were refused, for the stats and the log.

        A job cancelled while it ran here is still marked with this worker and attempt:
        its outcome counts as cancelled. After an uncertain round, a refused completion
        may have been written by the earlier try whose answer was lost: it counts as
        completed. Any other refusal stays lost. Only the accounting depends on this
        read, so a failure to read leaves them lost.
        """
        attempts = {o.run.ctx.job_id: o.run.ctx.attempt for o in refused}
        try:
            with self.engine.connect() as connection:
                settled = self._statements.settled(self.worker_id, list(attempts))
                rows = connection.execute(*settled).all()
        except DBAPIError as exc:
            log.warning("could not read why %d outcomes were refused (%s); counted as lost",
                        len(refused), _first_line(exc.orig or exc))  # fmt: skip
            return
        now = {row.id: JobStatus(row.status) for row in rows if attempts[row.id] == row.attempts}
        for outcome in refused:
            status = now.get(outcome.run.ctx.job_id)
            if status == JobStatus.CANCELLED:
                outcome.final_status = _CANCELLED_STATUS
            elif status == JobStatus.COMPLETED and uncertain and outcome.kind == _COMPLETED:
                outcome.final_status = _COMPLETED_STATUS

    def _record(self, connection: Any, pending: list[_Outcome]) -> list[_Outcome]:
        """Write failures, retries and cancellations (completions are written already).

        Each outcome is written in its own savepoint. A job that is gone (deleted while it
        ran) or no longer held is lost. An outcome whose write fails for another reason
        that is not the connection's is returned to be tried again next round, and given
        up (logged, counted as lost) after ``_MAX_RECORD_TRIES`` rounds.
        """
        again: list[_Outcome] = []
        for outcome in pending:
            if outcome.kind not in (_FAILED, _RETRY, _CANCELLED):
                continue
            savepoint = connection.begin_nested()
            try:
                outcome.final_status = self._record_one(connection, outcome)
                savepoint.commit()
            except Exception as exc:
                if _transient(exc) or not savepoint.is_active:
                    raise
                savepoint.rollback()
                outcome.tries += 1
                ctx = outcome.run.ctx
                if outcome.tries < _MAX_RECORD_TRIES:
                    log.warning("job %s type=%s attempt=%d: writing its outcome %s failed "
                                "(%s); trying again next round", ctx.job_id, ctx.job_type,
                                ctx.attempt, outcome.kind, _first_line(exc))  # fmt: skip
                    again.append(outcome)
                else:
                    log.error("job %s type=%s attempt=%d: writing its outcome %s failed %d "
                              "times (%s); giving it up: the job comes back through rescue",
                              ctx.job_id, ctx.job_type, ctx.attempt, outcome.kind,
                              outcome.tries, _first_line(exc))  # fmt: skip
                    outcome.final_status = _LOST
        return again

    def _record_one(self, connection: Any, outcome: _Outcome) -> str:
        ctx = outcome.run.ctx
        if outcome.kind == _FAILED:
            failed = self._statements.fail(
                ctx.job_id,
                self.worker_id,
                ctx.attempt,
                outcome.error or "failed",
                retry_in=outcome.after,
                backoff=outcome.run.spec.retry,
            )
            row = connection.execute(*failed).first()
            return _LOST if row is None else JobStatus(row.status).value
        if outcome.kind == _RETRY:
            after = outcome.after or timedelta(0)
            snooze = self._statements.snooze(ctx.job_id, self.worker_id, ctx.attempt, after)
            held = connection.execute(*snooze).first() is not None
            return JobStatus.PENDING.value if held else _LOST
        reason = outcome.error or "cancelled by its handler"
        cancel = self._statements.cancel_held(ctx.job_id, self.worker_id, ctx.attempt, reason)
        held = connection.execute(*cancel).first() is not None
        return JobStatus.CANCELLED.value if held else _LOST

    def _dispatch(self, claimed: list[Claimed]) -> None:
        if not claimed:
            return
        now = time.monotonic()
        runs = []
        handlers = self._handlers
        with self._lock:
            for row in claimed:
                spec = handlers.get(row.job_type)
                if spec is None:
                    spec = handlers[row.job_type] = self.registry[row.job_type]
                ctx = JobContext(
                    job_id=row.id,
                    job_type=row.job_type,
                    data=row.data,
                    attempt=row.attempts,
                    max_attempts=row.max_attempts,
                    worker_id=self.worker_id,
                    session_factory=self.session_factory,
                )
                run = _Run(ctx, spec, now)
                self._active[row.id] = run
                runs.append(run)
        for run in runs:
            self._work.put(run)

    def _log_outcomes(self, outcomes: list[_Outcome]) -> None:
        """Count and log the outcomes of a round."""
        info = log.isEnabledFor(logging.INFO)
        for outcome in outcomes:
            plain = outcome.kind == _COMPLETED and outcome.final_status == _COMPLETED_STATUS
            if plain and not info:
                self.stats.completed += 1  # the common case, with nothing to log
            else:
                self._log_outcome(outcome)

    def _log_outcome(self, outcome: _Outcome) -> None:
        ctx = outcome.run.ctx
        if outcome.final_status == _CANCELLED_STATUS and outcome.kind != _CANCELLED:
            self.stats.cancelled += 1
            log.info(
                "job %s type=%s attempt=%d/%d was cancelled while it ran; its outcome %s "
                "after %.3fs was discarded", ctx.job_id, ctx.job_type, ctx.attempt,
                ctx.max_attempts, _COMPLETED if outcome.kind == _DONE else outcome.kind,
                outcome.duration,
            )  # fmt: skip
            return
        kind = _LOST if outcome.final_status == _LOST else outcome.kind
        self.stats.add(kind)
        if kind == _LOST:
            log.warning(
                "job %s type=%s attempt=%d: outcome %s discarded after %.3fs: this worker no "
                "longer holds the job (rescued after a stale heartbeat, or deleted)",
                ctx.job_id, ctx.job_type, ctx.attempt, outcome.kind, outcome.duration,
            )  # fmt: skip
            return
        if not log.isEnabledFor(logging.INFO):
            return
        if kind in (_COMPLETED, _DONE):
            what = "completed"
        elif kind == _FAILED:
            status = outcome.final_status
            what = "failed, will retry" if status == JobStatus.PENDING.value else "failed"
            what += f": {(outcome.summary or outcome.error or '').strip().splitlines()[0][:200]}"
        elif kind == _RETRY:
            what = f"retry requested in {outcome.after}"
        else:
            what = f"cancelled: {outcome.error}"
        log.info(
            "job %s type=%s attempt=%d/%d %s in %.3fs",
            ctx.job_id, ctx.job_type, ctx.attempt, ctx.max_attempts, what, outcome.duration,
        )  # fmt: skip

    def _log_db_error(self, doing: str, exc: BaseException, backoff: float) -> None:
        if isinstance(exc, DBAPIError):
            log.warning("database error while %s (%s); retrying in %.1fs",
                        doing, _first_line(exc.orig or exc), backoff)  # fmt: skip
        else:
            log.exception("unexpected error while %s; retrying in %.1fs", doing, backoff)

    # ---------------------------------------------------------------- handlers

    def _thread_main(self) -> None:
        while True:
            run = self._work.get()
            if run is None:
                return
            outcome = self._execute(run)
            with self._lock:
                run.finished = True
                timed_out = run.timed_out
            if timed_out:
                log.warning("job %s type=%s attempt=%d: handler returned after %.1fs, when "
                            "the worker had given up on it (its timeout, or the end of the "
                            "grace period); outcome discarded", run.ctx.job_id,
                            run.ctx.job_type, run.ctx.attempt, outcome.duration)  # fmt: skip
                return
            self._outcomes.put(outcome)
            if not self._wake.is_set():
                self._wake.set()

    def _execute(self, run: _Run) -> _Outcome:
        ctx = run.ctx
        try:
            try:
                value = run.spec.function(ctx)
            except Retry as request:
                return self._outcome(run, _RETRY, error=request.reason, after=request.after)
            except Cancel as request:
                return self._outcome(run, _CANCELLED, error=request.reason)
            except BaseException as exc:
                return self._outcome(
                    run, _FAILED, error=failure_text(exc), summary=_first_line(exc)
                )
            result_json: str | None = None
            if value is not None:
                try:
                    result_json = check.check_json(
                        value, "result", self.max_payload_bytes, require_object=False
                    )
                except InvalidJobError as exc:
                    return self._outcome(run, _FAILED, error=f"InvalidJobError: {exc}")
            if not ctx.uses_session:
                # Progress reported since the last tick is not lost: it goes with the
                # completion (the stage and the events; the percent becomes 100).
                unwritten = ctx.take_progress()
                outcome = _Outcome(
                    run, _COMPLETED, result_json, duration=time.monotonic() - run.started
                )
                if unwritten is not None:
                    outcome.stage, outcome.events = unwritten[1], unwritten[2]
                return outcome
            return self._complete_in_session(run, value)
        finally:
            if ctx.uses_session:
                ctx.session.close()

    def _complete_in_session(self, run: _Run, value: Any) -> _Outcome:
        ctx = run.ctx
        session = ctx.session
        try:
            queue = JobQueue(session, self.model, worker_id=self.worker_id)
            unwritten = ctx.take_progress()
            if unwritten is not None:
                _, stage, events = unwritten
                queue.update_progress(ctx.job_id, None, stage, events, attempt=ctx.attempt)
            queue.complete(ctx.job_id, value, attempt=ctx.attempt)
            # The commit and the timeout exclude each other: once the dispatcher declared
            # the attempt timed out (and fails it) the completion is not committed, and
            # once this commit is decided the dispatcher no longer times it out.
            with self._lock:
                timed_out = run.timed_out
                run.finished = not timed_out
            if timed_out:
                session.rollback()
                return self._outcome(run, _LOST, error="timed out before its commit")
            session.commit()
        except (JobNotFoundError, InvalidTransitionError) as exc:
            session.rollback()
            return self._outcome(run, _LOST, error=str(exc))
        except Exception as exc:
            session.rollback()
            return self._outcome(
                run,
                _FAILED,
                error="the handler's transaction failed to commit with the completion, so "
                "neither its writes nor the completion were kept:\n" + failure_text(exc),
                summary=f"commit failed, nothing kept: {_first_line(exc)}",
            )
        return self._outcome(run, _DONE)

    @staticmethod
    def _outcome(run: _Run, kind: str, **fields: Any) -> _Outcome:
        return _Outcome(run, kind, duration=time.monotonic() - run.started, **fields)

    # ------------------------------------------------------ ticker, maintenance

    def _tick_loop(self) -> None:
        backoff = 0.0
        while not self._background_stop.wait(backoff or self.progress_interval):
            try:
                self._write_progress()
                backoff = 0.0
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.5), _MAX_BACKOFF)
                self._log_db_error("writing progress", exc, backoff)

    def _heartbeat_loop(self) -> None:
        # Its own connection, kept: a heartbeat waits neither for the dispatcher nor for a
        # pool emptied by handlers, so a live worker's jobs are not rescued.
        connection: Any = None
        backoff = 0.0
        try:
            while not self._background_stop.wait(backoff or self.heartbeat_interval):
                ids = self._held_ids()
                if not ids:
                    continue
                try:
                    if connection is None:
                        connection = self._autocommit.connect()
                    connection.execute(*self._statements.heartbeat_unlocked(self.worker_id, ids))
                    backoff = 0.0
                except Exception as exc:
                    if connection is not None:
                        with contextlib.suppress(Exception):
                            connection.close()
                        connection = None
                    backoff = min(max(backoff * 2, 0.1), self.heartbeat_interval)
                    self._log_db_error("writing heartbeats", exc, backoff)
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()

    def _held_ids(self) -> list[uuid.UUID]:
        with self._lock:
            return [job_id for job_id, run in self._active.items() if not run.timed_out]

    def _write_progress(self) -> None:
        """Write what running handlers reported since the last tick, in one statement."""
        with self._lock:
            runs = [r for r in self._active.values() if not r.finished and not r.timed_out]
        reports = []
        for run in runs:
            taken = run.ctx.take_progress()
            if taken is not None:
                reports.append((run.ctx, taken))
        if not reports:
            return
        columns = (
            [ctx.job_id for ctx, _ in reports],
            [ctx.attempt for ctx, _ in reports],
            [percent for _, (percent, _, _) in reports],
            [stage for _, (_, stage, _) in reports],
            [events for _, (_, _, events) in reports],
        )
        try:
            # Under the write lock: a statement that locks many jobs' rows never runs
            # beside the dispatcher's round, which locks some of the same rows.
            with self._write_lock, self._autocommit.connect() as connection:
                bound = self._statements.write_progress(self.worker_id, *columns)
                held = {row[0] for row in self._driver_rows(connection, bound)}
        except Exception:
            for ctx, (_, _, events) in reports:
                ctx.give_back_events(events)
            raise
        for ctx, _ in reports:
            if ctx.job_id not in held:
                ctx.abandon()

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
                    self._log_db_error(f"running the {duty.name}", exc, duty.interval)
                due[duty.name] = time.monotonic() + duty.interval
            wait = min(due.values()) - time.monotonic()
            self._background_stop.wait(max(wait, 0.05))

    # ---------------------------------------------------------------- shutdown

    def _shutdown(self) -> int:
        if self._abort.is_set():
            self._drain()
            with contextlib.suppress(Exception):
                self._record_and_claim(0)
            log.warning("worker %s stopped at once; %d running jobs left for rescue",
                        self.worker_id, len(self._active))  # fmt: skip
            return 1
        with self._lock:
            cut_off = [r for r in self._active.values() if not r.finished and not r.timed_out]
            for run in cut_off:
                run.timed_out = True
                run.ctx.abandon()
        now = time.monotonic()
        self._drain()
        for run in cut_off:
            self._pending.append(
                _Outcome(
                    run,
                    _FAILED,
                    error=f"worker {self.worker_id} shut down before the handler finished "
                    f"(grace period {self.grace_period:g}s)",
                    after=timedelta(0),
                    duration=now - run.started,
                )
            )
        for attempt in range(5):
            try:
                if self._pending or self._uncertain:
                    self._record_and_claim(0)
                break
            except Exception as exc:
                self._log_db_error("recording final outcomes", exc, 0.5 * (attempt + 1))
                time.sleep(0.5 * (attempt + 1))
        log.info("worker %s stopped: %s", self.worker_id, self.stats)
        return 0

    def _stop_background(self) -> None:
        self._background_stop.set()
        if self.listener is not None:
            self.listener.stop()
        for _ in range(self.concurrency):
            self._work.put(None)


def load_registry(target: str) -> Registry:
    """Import ``"package.module:attribute"`` and return the :class:`Registry` it names.

    The attribute may be a dotted path inside the module (``"app.jobs:tasks.registry"``).

    Raises
    ------
    InvalidJobError
        When the target is malformed, cannot be imported, or is not a Registry.
    """
    if not isinstance(target, str) or target.count(":") != 1:
        raise InvalidJobError(
            f"registry target must look like 'package.module:attribute', got {target!r}"
        )
    module_name, attribute = target.split(":")
    if not module_name or not attribute:
        raise InvalidJobError(
            f"registry target must look like 'package.module:attribute', got {target!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidJobError(f"cannot import {module_name!r} for {target!r}: {exc}") from exc
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise InvalidJobError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(value, Registry):
        raise InvalidJobError(f"{target!r} is a {type(value).__name__}, not a Registry")
    return value
