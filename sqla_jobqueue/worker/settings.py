"""A worker's settings: their defaults, and :class:`WorkerSettings`, the checked set a worker
runs with (both :class:`~sqla_jobqueue.worker.Worker` and
:class:`~sqla_jobqueue.worker.AsyncWorker` check their arguments through it, and
``sqla-jobqueue worker`` checks its options with it before it opens a database)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from sqlalchemy import Table
from sqlalchemy.engine import URL

from .. import validation as check
from ..database import libpq_conninfo
from ..errors import InvalidJobError, ModelError
from ..handlers import Registry
from ..maintenance import (
    Archiver,
    ArchiverConfig,
    Duty,
    Pruner,
    PrunerConfig,
    Rescuer,
    RescuerConfig,
    Scheduler,
    SchedulerConfig,
    Settler,
)
from ..maintenance.archiver import DEFAULT_ARCHIVE_AFTER
from ..maintenance.pruner import DEFAULT_RETENTION
from ..maintenance.rescuer import DEFAULT_STALE_TIMEOUT
from ..model import Job, JobMixin, is_job_table
from ..plans import check_job_types, default_worker_id
from ..schedules import is_schedule_table, schedule_table

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_PROGRESS_INTERVAL",
    "Duration",
    "WorkerOptions",
    "WorkerSettings",
    "job_table",
]

log = logging.getLogger("sqla_jobqueue.worker")

DEFAULT_CONCURRENCY = 10
DEFAULT_MAX_BATCH_SIZE = 100
"""The largest claim a worker makes when its ``batch_size`` is not given: with more slots
than that, a claim of about 100 lets the next one run while the jobs of the last one do
(at concurrency 200, claims of 100-150 drained 10-20 % faster than claims of 200, and at
concurrency 50 claims of 50 were the fastest: ``benchmarks/results/batch.md``)."""
DEFAULT_POLL_INTERVAL = timedelta(seconds=2)
DEFAULT_HEARTBEAT_INTERVAL = timedelta(seconds=10)
DEFAULT_GRACE_PERIOD = timedelta(seconds=30)
DEFAULT_PROGRESS_INTERVAL = timedelta(milliseconds=500)

Duration = timedelta | float | int
"""A duration: a :class:`~datetime.timedelta` or a number of seconds."""


class WorkerOptions(TypedDict, total=False):
    """The settings a worker takes as keywords (``Worker(engine, registry, concurrency=8)``),
    each optional; :meth:`WorkerSettings.check` checks them. The same for
    :class:`~sqla_jobqueue.worker.Worker` and :class:`~sqla_jobqueue.worker.AsyncWorker`.
    Durations are timedeltas or seconds."""

    model: type[JobMixin]
    """The job model (``Job`` by default)."""
    job_types: Sequence[str] | None
    """The types this worker claims; by default every type of the registry."""
    concurrency: int
    """The most jobs run at once (10); a ``Worker``'s handler threads."""
    batch_size: int | None
    """Most jobs claimed by one statement (by default ``concurrency``, at most 100); never
    more than the free slots."""
    poll_interval: Duration
    """How often an idle worker looks for due jobs when no notification woke it (2 s; also
    how soon a job whose ``run_at`` passes is picked up), and how often a busy worker looks
    again at the start of the queue for jobs of the priority it is draining that sort
    before its position (see :doc:`/workers`)."""
    heartbeat_interval: Duration
    """How often ``heartbeat_at`` of running jobs is refreshed (10 s)."""
    stale_timeout: Duration
    """Heartbeat age after which the rescuer returns a job to pending (60 s); at least
    three heartbeat intervals."""
    worker_id: str | None
    """This worker's identity (``host:pid:random`` by default)."""
    grace_period: Duration
    """How long a graceful stop waits for running handlers (30 s)."""
    progress_interval: Duration
    """Time between two writes of the progress running jobs reported (0.5 s)."""
    retention: Duration | None
    """How long finished jobs are kept before the pruner deletes them (7 days); ``None``
    never prunes."""
    rescue_interval: Duration | None
    """Time between rescue rounds (by default a quarter of ``stale_timeout``)."""
    listen: bool | str | URL
    """Whether and where to LISTEN for enqueue notifications: ``True`` (the default) on a
    connection the engine makes; ``False`` to find jobs by polling only; or a database URL
    to LISTEN on a connection straight to PostgreSQL, for an engine that goes through a
    transaction pooler such as PgBouncer, where LISTEN hears nothing (see
    :doc:`/production`)."""
    maintenance: bool
    """Whether this worker takes part in the rescue and prune rounds, and enqueues the
    periodic jobs of its registry (``True``)."""
    archive: type[Any] | None
    """A :class:`~sqla_jobqueue.archive.JobArchiveMixin` model to move finished jobs into
    (``None``: they stay in the job table until pruned); see :doc:`/scaling`."""
    archive_after: Duration
    """How long finished jobs stay in the job table before they move to the archive
    (1 hour); shorter than ``retention``, which then drops the archive's old days."""
    max_payload_bytes: int
    """Largest JSON result accepted (64 KiB)."""
    schedules: type[Any] | bool | None
    """Where the ticks of periodic jobs are recorded: a
    :class:`~sqla_jobqueue.schedules.JobScheduleMixin` model; by default (``None``) the
    one mapped in the job model's metadata, needed when the handlers (of ``job_types``)
    declare schedules. ``False``: this worker enqueues no periodic job."""


_OPTION_NAMES = WorkerOptions.__required_keys__ | WorkerOptions.__optional_keys__


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


def job_table(model: type[JobMixin]) -> Table:
    """The table of a mapped job model; :class:`ModelError` for anything else."""
    table = getattr(model, "__table__", None)
    if not isinstance(table, Table) or not is_job_table(table):
        raise ModelError(f"{model!r} is not a mapped JobMixin model")
    return table


@dataclass(frozen=True)
class WorkerSettings:
    """A worker's settings, checked, with durations in seconds: what a worker runs with.

    :meth:`check` is how :class:`~sqla_jobqueue.worker.Worker` and
    :class:`~sqla_jobqueue.worker.AsyncWorker` check their arguments, and how
    ``sqla-jobqueue worker`` checks its options before it opens a database. A running
    worker's settings are its ``settings`` attribute.
    """

    model: type[JobMixin]
    table: Table
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
    listen: bool
    listen_conninfo: str | None
    """Where to LISTEN when not on a connection the engine makes (libpq)."""
    maintenance: bool
    archiving: ArchiverConfig | None
    """Where and when finished jobs move to an archive (``None``: no archive)."""
    max_payload_bytes: int
    scheduling: SchedulerConfig | None = None
    """The periodic jobs this worker enqueues and their table (``None``: none)."""

    @classmethod
    def check(cls, registry: Registry, **options: Unpack[WorkerOptions]) -> WorkerSettings:
        """The settings a worker takes (:class:`WorkerOptions`), checked, with their
        defaults.

        Raises
        ------
        InvalidJobError
            When a setting is out of range, the registry is empty or has no handler for a
            type of ``job_types``, or the stale timeout is under three heartbeat intervals.
        ModelError
            When ``model`` is not a mapped :class:`~sqla_jobqueue.model.JobMixin` model,
            or the handlers declare schedules and no schedules table is found.
        ConfigurationError
            When ``listen`` is a string that is not a PostgreSQL URL.
        TypeError
            When a keyword is not a setting.
        """
        unknown = sorted(set(options) - _OPTION_NAMES)
        if unknown:
            raise TypeError(
                f"{', '.join(unknown)} {'is not a' if len(unknown) == 1 else 'are not'} "
                f"worker setting{'s' if len(unknown) > 1 else ''}; the settings are "
                f"{', '.join(sorted(_OPTION_NAMES))}"
            )
        given: dict[str, Any] = dict(options)
        model: type[JobMixin] = given.get("model", Job)
        job_types: Sequence[str] | None = given.get("job_types")
        concurrency = given.get("concurrency", DEFAULT_CONCURRENCY)
        batch_size = given.get("batch_size")
        poll_interval = given.get("poll_interval", DEFAULT_POLL_INTERVAL)
        heartbeat_interval = given.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL)
        stale_timeout = given.get("stale_timeout", DEFAULT_STALE_TIMEOUT)
        worker_id = given.get("worker_id")
        grace_period = given.get("grace_period", DEFAULT_GRACE_PERIOD)
        progress_interval = given.get("progress_interval", DEFAULT_PROGRESS_INTERVAL)
        retention = given.get("retention", DEFAULT_RETENTION)
        rescue_interval = given.get("rescue_interval")
        listen = given.get("listen", True)
        maintenance = given.get("maintenance", True)
        archive = given.get("archive")
        archive_after = given.get("archive_after", DEFAULT_ARCHIVE_AFTER)
        max_payload_bytes = given.get("max_payload_bytes", check.DEFAULT_MAX_PAYLOAD_BYTES)
        schedules = given.get("schedules")
        if not isinstance(registry, Registry):
            raise InvalidJobError(f"registry must be a Registry, got {type(registry).__name__}")
        if not len(registry):
            raise InvalidJobError("the registry has no handlers")
        table = job_table(model)
        types = registry.job_types if job_types is None else check_job_types(job_types) or []
        unknown = [t for t in types if t not in registry]
        if unknown:
            raise InvalidJobError(
                f"no handler registered for job types {unknown}; registered are "
                f"{registry.job_types}"
            )
        slots = _positive_int(concurrency, "concurrency")
        default_batch = min(slots, DEFAULT_MAX_BATCH_SIZE)
        batch = _positive_int(default_batch if batch_size is None else batch_size, "batch_size")
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
        listen_conninfo = None
        if isinstance(listen, (str, URL)):
            listen_conninfo = libpq_conninfo(listen)
        elif not isinstance(listen, bool):
            raise InvalidJobError(
                f"listen must be True, False or a database URL to LISTEN on, got {listen!r}"
            )
        identity = worker_id or default_worker_id()
        check.check_text(identity, "worker_id", 100)
        if isinstance(max_payload_bytes, bool) or not isinstance(max_payload_bytes, int):
            raise InvalidJobError(f"max_payload_bytes must be an int, got {max_payload_bytes!r}")
        if max_payload_bytes < 2:
            raise InvalidJobError(f"max_payload_bytes must be at least 2, got {max_payload_bytes}")
        kept = None if retention is None else _seconds(retention, "retention")
        archiving = None
        if archive is not None:
            archiving = ArchiverConfig(
                archive,
                after=timedelta(seconds=_seconds(archive_after, "archive_after")),
                retention=None if kept is None else timedelta(seconds=kept),
            )
        scheduling = _scheduling(registry, types, table, schedules)
        return cls(
            model=model,
            table=table,
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
            retention=kept,
            worker_id=identity,
            listen=bool(listen),
            listen_conninfo=listen_conninfo,
            maintenance=bool(maintenance),
            archiving=archiving,
            max_payload_bytes=max_payload_bytes,
            scheduling=scheduling,
        )

    def duties(self) -> list[Duty]:
        """The maintenance duties a worker with these settings takes part in."""
        if not self.maintenance:
            return []
        stale = timedelta(seconds=self.stale_timeout)
        every = timedelta(seconds=self.rescue_interval)
        duties: list[Duty] = [Rescuer(self.model, RescuerConfig(stale, every)), Settler(self.model)]
        if self.retention is not None:
            keep = timedelta(seconds=self.retention)
            duties.append(Pruner(self.model, PrunerConfig(retention=keep)))
        if self.archiving is not None:
            duties.append(Archiver(self.model, self.archiving))
        return duties

    def scheduler(self) -> Scheduler | None:
        """The scheduler of a worker with these settings: ``None`` when it enqueues no
        periodic job (none declared, ``schedules=False`` or ``maintenance=False``)."""
        if not self.maintenance or self.scheduling is None:
            return None
        return Scheduler(self.model, self.scheduling)


def _scheduling(
    registry: Registry, job_types: list[str], jobs: Table, schedules: object
) -> SchedulerConfig | None:
    """The scheduler's settings for the periodic jobs of ``job_types``, with the schedules
    table given or found in the job model's metadata."""
    if schedules is False:
        return None
    if schedules is None or schedules is True:
        table = schedule_table(jobs.metadata)
    else:
        table = getattr(schedules, "__table__", None)
        if not isinstance(table, Table) or not is_schedule_table(table):
            raise ModelError(
                f"schedules must be a mapped JobScheduleMixin model, got {schedules!r}"
            )
    periodic = registry.periodic_jobs(job_types)
    if not periodic:
        return None
    if table is None:
        declared = sorted({job.job_type for job in periodic})
        raise ModelError(
            f"the handlers of {', '.join(declared)} declare schedules, and the metadata of "
            f"the job table {jobs.fullname} has no table to record their ticks: map one "
            "beside it (class JobSchedule(JobScheduleMixin, Base): __tablename__ = "
            "'job_schedules') and create it with an Alembic revision, or give the worker "
            "schedules=YourModel; schedules=False runs no periodic job"
        )
    return SchedulerConfig(table, tuple(periodic))
