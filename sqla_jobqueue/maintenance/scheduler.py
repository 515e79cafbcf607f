"""The scheduler: enqueues the ticks of the periodic jobs a registry declares.

Every worker whose registry declares schedules (:mod:`sqla_jobqueue.schedules`) runs one,
in a loop of its own beside the other duties so that a long pruning round never delays a
tick. A round is one short transaction at READ COMMITTED:

1. read the schedules' rows and the database's clock (``statement_timestamp()``: ticks
   are due by the database's time, never by the worker's);
2. record the schedules it has no row for (and, on its first round, those whose ``spec``
   changed): their ticks count from then;
3. for each schedule, enqueue the ticks its missed policy chooses (:func:`due_ticks`),
   each with :meth:`ScheduleStatements.enqueue_tick
   <sqla_jobqueue.statements.schedules.ScheduleStatements.enqueue_tick>`, the statement
   that makes a tick's job exactly one whatever the other workers do at the same time.

No advisory lock: every worker races for each tick and the statement lets one win. The
round then works out when the next tick of any schedule falls, from the database's clock
mapped onto the worker's monotonic clock, and :attr:`Scheduler.interval` says how long to
wait for it (at most ``config.interval``), so a tick's job is enqueued within moments of
its time. A worker that waits longer than :data:`~.base.DUTY_LOCK_TIMEOUT` on a row
another worker holds gives up the round and comes back at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.exc import ProgrammingError

from ..errors import InvalidJobError
from ..ids import new_job_id
from ..schedules import PeriodicJob, due_ticks, is_schedule_table
from ..statements.schedules import ScheduleStatements
from .base import DutyBase, check_positive_intervals

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["DEFAULT_SCHEDULER_INTERVAL", "Scheduler", "SchedulerConfig"]

log = logging.getLogger("sqla_jobqueue.maintenance")

DEFAULT_SCHEDULER_INTERVAL = timedelta(minutes=1)
"""The longest a scheduler waits between two rounds (it wakes at each tick before that)."""
_SOONEST = 0.01
_UNDEFINED_TABLE = "42P01"


@dataclass(frozen=True)
class SchedulerConfig:
    """Settings of the scheduler.

    Parameters
    ----------
    table:
        The :class:`~sqla_jobqueue.schedules.JobScheduleMixin` table.
    jobs:
        The periodic jobs to enqueue, each with a name of its own.
    interval:
        The longest time between two rounds; a round also runs at each tick.
    """

    table: Table
    jobs: tuple[PeriodicJob, ...]
    interval: timedelta = DEFAULT_SCHEDULER_INTERVAL

    def __post_init__(self) -> None:
        if not isinstance(self.table, Table) or not is_schedule_table(self.table):
            raise InvalidJobError(
                f"the schedules table must be built from JobScheduleMixin, got {self.table!r}"
            )
        names = [job.name for job in self.jobs]
        if not names:
            raise InvalidJobError("a scheduler needs at least one periodic job")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise InvalidJobError(f"several schedules are named {', '.join(twice)}")
        check_positive_intervals(self, "interval")


class Scheduler(DutyBase[SchedulerConfig]):
    """Runs scheduler rounds for one job model and its schedules table.

    Parameters
    ----------
    model:
        The mapped job model.
    config:
        Its settings.
    """

    name = "scheduler"

    def __init__(self, model: type[Any], config: SchedulerConfig) -> None:
        super().__init__(model, config)
        self.statements = ScheduleStatements.of(model.__table__, config.table)
        self._jobs = {job.name: job for job in config.jobs}
        self._names = sorted(self._jobs)
        self._recorded = False
        self._enqueued: list[tuple[str, datetime]] = []
        self._wake_at = time.monotonic()

    @property
    def interval(self) -> float:
        """Seconds until the next tick of any schedule (by the last round), at most
        ``config.interval``."""
        left = self._wake_at - time.monotonic()
        return min(max(left, _SOONEST), self.config.interval.total_seconds())

    def run_once(self, engine: Engine) -> int | None:
        """One round: the jobs enqueued, ``None`` when it gave up on a row another worker
        held, or found no schedules table."""
        committed = engine.execution_options(isolation_level="READ COMMITTED")
        try:
            return self._committed(super().run_once(committed))
        except ProgrammingError as error:
            self._missing_table(error)
            return None

    async def run_once_async(self, engine: AsyncEngine) -> int | None:
        """:meth:`run_once` on an ``AsyncEngine``."""
        committed = engine.execution_options(isolation_level="READ COMMITTED")
        try:
            return self._committed(await super().run_once_async(committed))
        except ProgrammingError as error:
            self._missing_table(error)
            return None

    def _committed(self, enqueued: int | None) -> int | None:
        """After a round: what it enqueued is in the database now, and said so."""
        if enqueued is not None:
            self._recorded = True
            for name, tick in self._enqueued:
                log.info("scheduler: enqueued %s for its tick at %s", name, tick.isoformat())
        return enqueued

    def _missing_table(self, error: ProgrammingError) -> None:
        if getattr(error.orig, "sqlstate", None) != _UNDEFINED_TABLE:
            raise error
        log.error(
            "scheduler: no periodic job is enqueued: the schedules table %s does not exist "
            "(create it: alembic upgrade head, with the revision that creates it; the "
            "packaged environment's 0005 creates the ready JobSchedule's); trying again in %gs",
            self.config.table.fullname,
            self.config.interval.total_seconds(),
        )
        self._wake_at = time.monotonic() + self.config.interval.total_seconds()

    def transaction(self, connection: Connection) -> int | None:
        """Read the schedules, record the new ones, enqueue the due ticks."""
        statements = self.statements
        self._enqueued = []
        rows = connection.execute(*statements.read(self._names)).all()
        read_at = time.monotonic()
        now: datetime = rows[0].now
        unrecorded = [
            row.name
            for row in rows
            if row.created_at is None
            or (not self._recorded and row.spec != self._jobs[row.name].schedule.spec)
        ]
        if unrecorded:
            self._record(connection, unrecorded, now, rows)
        enqueued = 0
        for row in rows:
            if row.created_at is None:
                continue  # recorded just now: its ticks start after this round
            job = self._jobs[row.name]
            schedule = job.schedule
            following = schedule.next_after(now)
            ticks = due_ticks(schedule, row.last_tick or row.created_at, now)
            for tick in ticks:
                enqueue = statements.enqueue_tick(
                    name=job.name,
                    spec=schedule.spec,
                    tick=tick,
                    next_tick=following,
                    job_id=new_job_id(),
                    job_type=job.job_type,
                    data_json=schedule.job_data(tick),
                    priority=schedule.priority,
                    max_attempts=job.max_attempts,
                )
                if connection.execute(*enqueue).first() is not None:
                    enqueued += 1
                    self._enqueued.append((job.name, tick))
            stale = row.next_tick is None or row.next_tick <= now
            if not ticks and stale and following is not None:
                connection.execute(*statements.advance_next(job.name, following))
        self._plan_wake(now, read_at)
        return enqueued

    def _record(
        self, connection: Connection, names: list[str], now: datetime, rows: Sequence[Any]
    ) -> None:
        stored = {row.name: row.spec for row in rows}
        recorded = []
        for name in names:
            schedule = self._jobs[name].schedule
            if stored[name] is not None:
                log.info("scheduler: schedule %s was %r, now %r", name, stored[name], schedule.spec)
            recorded.append((name, schedule.spec, schedule.next_after(now)))
        connection.execute(*self.statements.register(recorded))

    def _plan_wake(self, now: datetime, read_at: float) -> None:
        """Wake at the next tick of any schedule: its distance from the database's clock,
        counted on this worker's monotonic clock from when that clock was read."""
        ticks = [tick for job in self.config.jobs if (tick := job.schedule.next_after(now))]
        if ticks:
            self._wake_at = read_at + (min(ticks) - now).total_seconds()
        else:
            self._wake_at = read_at + self.config.interval.total_seconds()
