"""Periodic jobs: schedules declared with their handler, their ticks, and the table that
makes each tick's job exactly one, however many workers run.

A handler declares when its job type runs by itself, with a cron expression or an
interval::

    @registry.handler("report", schedule=Cron("0 * * * *", timezone="Europe/Paris"))
    def report(ctx: JobContext) -> None: ...

    @registry.handler("sweep", schedule=Every(timedelta(minutes=5), data={"deep": False}))
    def sweep(ctx: JobContext) -> None: ...

Each **tick** of a schedule (an instant: 10:00 Paris time, or every 5 minutes since the
Unix epoch) is enqueued as one job of that type, with the schedule's ``data`` and
``run_at`` set to the tick. Every worker computes the same ticks: a cron expression in its
time zone (:mod:`zoneinfo`, with cron's rules across daylight-saving changes, as
`cronsim <https://github.com/cuu508/cronsim>`_ evaluates them), an interval from the epoch
(plus an ``offset``). A job type may have several schedules, each with its own ``name``
(the job type by default).

**Exactly one job per tick.** The schedules table (:class:`JobScheduleMixin`, or the ready
:class:`JobSchedule`) holds a row per schedule whose ``last_tick`` only moves forward. A
worker enqueues a tick with one statement: an ``INSERT ... ON CONFLICT (name) DO UPDATE
SET last_tick = <tick> WHERE last_tick < <tick>`` that moves the row to the tick, and in
the same statement inserts the job only when it did. Concurrent workers wait on the row's
lock and check the condition again on the row as the winner left it, so whatever the
number of workers, the clocks or the timing, one of them moves the row to a tick and the
others insert nothing: no leader, no advisory lock. See
:mod:`sqla_jobqueue.maintenance.scheduler` for who runs it and when.

**Missed ticks** (no worker ran at their time) follow the schedule's :class:`Missed`
policy: ``Missed.latest()`` (the default) enqueues the latest of them once,
``Missed.skip()`` drops them, ``Missed.all_within(window)`` enqueues each of those within
``window``, oldest first, up to a limit. A new schedule starts from when a worker first
records it: ticks before that were never missed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from sqlalchemy import DateTime, MetaData, String, Table, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from . import validation as check
from .errors import InvalidJobError, ModelError
from .model import DEFAULT_MAX_ATTEMPTS, Priority
from .model import metadata as ready_metadata

__all__ = [
    "DEFAULT_CATCH_UP_LIMIT",
    "DEFAULT_SKIP_GRACE",
    "Cron",
    "Every",
    "JobSchedule",
    "JobScheduleMixin",
    "Missed",
    "PeriodicJob",
    "Schedule",
    "due_ticks",
    "duration_text",
    "is_schedule_table",
    "schedule_table",
]

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_MICROSECOND = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)
_INFO_KEY = "sqla_jobqueue_schedules"
_NAME_LENGTH = 100

DEFAULT_SKIP_GRACE = timedelta(minutes=1)
"""How late a tick may be enqueued under :meth:`Missed.skip` before it counts as missed."""
DEFAULT_CATCH_UP_LIMIT = 100
"""Most missed ticks :meth:`Missed.all_within` enqueues at once (the latest ones)."""


# ------------------------------------------------------------------ missed ticks


@dataclass(frozen=True)
class Missed:
    """What a schedule does with the ticks that passed while no worker ran.

    Make one with :meth:`latest` (the default), :meth:`skip` or :meth:`all_within`.

    Attributes
    ----------
    policy:
        ``"latest"``, ``"skip"`` or ``"all"``.
    grace:
        Under ``"skip"``: how late a tick may still be enqueued.
    window:
        Under ``"all"``: how far back missed ticks are enqueued.
    limit:
        Under ``"all"``: most missed ticks enqueued (the latest ones).
    """

    policy: Literal["latest", "skip", "all"]
    grace: timedelta | None = None
    window: timedelta | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        wanted = {"latest": (), "skip": ("grace",), "all": ("window", "limit")}.get(self.policy)
        if wanted is None:
            raise InvalidJobError(
                f"Missed policy must be 'latest', 'skip' or 'all', got {self.policy!r}"
            )
        for name in ("grace", "window", "limit"):
            value = getattr(self, name)
            if (value is None) == (name in wanted):
                needs = "needs" if name in wanted else "takes no"
                raise InvalidJobError(f"Missed policy {self.policy!r} {needs} {name}")
        for name in ("grace", "window"):
            value = getattr(self, name)
            if value is not None and check.check_positive_interval(value, name) < _SECOND:
                raise InvalidJobError(f"Missed {name} must be at least 1 second, got {value}")
        if self.limit is not None and check.check_int32(self.limit, "limit") < 1:
            raise InvalidJobError(f"Missed limit must be at least 1, got {self.limit}")

    @classmethod
    def latest(cls) -> Missed:
        """Enqueue the latest missed tick, once, however late; drop the earlier ones."""
        return cls("latest")

    @classmethod
    def skip(cls, grace: timedelta = DEFAULT_SKIP_GRACE) -> Missed:
        """Drop every tick not enqueued within ``grace`` of its time."""
        return cls("skip", grace=grace)

    @classmethod
    def all_within(cls, window: timedelta, *, limit: int = DEFAULT_CATCH_UP_LIMIT) -> Missed:
        """Enqueue every missed tick not older than ``window``, oldest first; at most
        ``limit`` of them (the latest), older ones are dropped."""
        return cls("all", window=window, limit=limit)

    def __str__(self) -> str:
        if self.policy == "skip":
            assert self.grace is not None
            return f"skip (after {duration_text(self.grace)})"
        if self.policy == "all":
            assert self.window is not None
            return f"all within {duration_text(self.window)} (at most {self.limit})"
        return "latest"


# --------------------------------------------------------------------- schedules


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """What every schedule has: its name, the job it enqueues, its missed-tick policy.

    Use :class:`Cron` or :class:`Every`. The keywords are checked on construction
    (:class:`~sqla_jobqueue.errors.InvalidJobError`).

    Attributes
    ----------
    name:
        The schedule's name in the schedules table; by default the job type it is
        declared with. Several schedules of one type need names of their own.
    data:
        The ``data`` of each job (a JSON object, checked as an enqueue's).
    missed:
        What to do with ticks missed while no worker ran (:class:`Missed`).
    priority:
        The priority of each job.
    tick_key:
        When given, each job's ``data`` also holds its tick under this key (ISO 8601,
        UTC): what a handler needs to know which tick it runs for, e.g. under
        ``Missed.all_within``.
    """

    name: str | None = None
    data: Mapping[str, Any] | None = None
    missed: Missed = field(default_factory=Missed.latest)
    priority: int = Priority.DISCOVERED
    tick_key: str | None = None
    _data: dict[str, Any] = field(init=False, repr=False, compare=False)
    _data_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.name is not None:
            check.check_text(self.name, "schedule name", _NAME_LENGTH)
        data_json = (
            "{}"
            if self.data is None
            else check.check_json(
                self.data, "schedule data", check.DEFAULT_MAX_PAYLOAD_BYTES, require_object=True
            )
        )
        if not isinstance(self.missed, Missed):
            raise InvalidJobError(f"missed must be a Missed policy, got {self.missed!r}")
        check.check_int32(self.priority, "priority")
        plain = json.loads(data_json)
        if self.tick_key is not None:
            check.check_text(self.tick_key, "tick_key", _NAME_LENGTH)
            if self.tick_key in plain:
                raise InvalidJobError(
                    f"the schedule's data already has the key {self.tick_key!r} that "
                    "tick_key would write each tick into; choose another tick_key"
                )
        object.__setattr__(self, "_data", plain)
        object.__setattr__(self, "_data_json", data_json)

    # What each kind of schedule defines.

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after ``moment`` (an aware datetime), in UTC;
        ``None`` when there is none (a cron expression matching no date for 50 years)."""
        raise NotImplementedError

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last tick at or before ``moment`` (an aware datetime), in UTC; ``None``
        when there is none."""
        raise NotImplementedError

    @property
    def when(self) -> str:
        """When it ticks, in words: ``cron 0 * * * * Europe/Paris``, ``every 5m``."""
        raise NotImplementedError

    # What follows from them.

    @property
    def spec(self) -> str:
        """What the schedules table and ``status`` show: when, and the missed policy."""
        return f"{self.when}; missed: {self.missed}"

    def job_data(self, tick: datetime) -> str:
        """The JSON text of the ``data`` of the job of ``tick``."""
        if self.tick_key is None:
            return self._data_json
        return json.dumps({**self._data, self.tick_key: tick.astimezone(_UTC).isoformat()})

    def named(self, job_type: str) -> Schedule:
        """This schedule with its name filled in (the job type, when it has none)."""
        return self if self.name is not None else replace(self, name=job_type)

    def _first_tick_exists(self) -> None:
        if self.next_after(datetime.now(_UTC)) is None:
            raise InvalidJobError(f"the schedule {self.when} never ticks")


@dataclass(frozen=True)
class Cron(Schedule):
    """A schedule of cron ticks in a time zone.

    ``Cron("0 9 * * MON-FRI", timezone="Europe/Paris")`` ticks at 9:00 Paris time on
    weekdays, winter and summer alike.

    Attributes
    ----------
    expression:
        Five fields (minute, hour, day of month, month, day of week), or six with the
        seconds first; names (``MON``, ``JAN``), ranges, steps, lists, ``L`` (last day),
        ``W`` and ``#`` as cronsim reads them. Day of month and day of week combine as in
        Debian's cron: either matches when neither starts with ``*``.
    timezone:
        An IANA zone name (``"Europe/Paris"``) or a ``tzinfo``; UTC by default. Across a
        daylight-saving change, a tick at a fixed time that does not exist that day runs at
        the first minute after the gap, and one that exists twice runs once (cron's rules);
        an expression whose minute or hour field starts with ``*``, and any of six fields,
        ticks by elapsed time instead.
    """

    expression: str
    timezone: str | tzinfo = "UTC"
    _zone: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.expression, str):
            raise InvalidJobError(f"a cron expression is a string, got {self.expression!r}")
        zone = self.timezone
        if isinstance(zone, str):
            try:
                zone = ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise InvalidJobError(
                    f"unknown time zone {self.timezone!r}: give an IANA name such as "
                    "'Europe/Paris' or 'UTC' (install tzdata where the system has none)"
                ) from None
        elif not isinstance(zone, tzinfo):
            raise InvalidJobError(f"timezone must be a zone name or a tzinfo, got {zone!r}")
        object.__setattr__(self, "_zone", zone)
        try:
            CronSim(self.expression, datetime.now(zone))
        except CronSimError as error:
            raise InvalidJobError(
                f"bad cron expression {self.expression!r}: {error} (five fields: minute hour "
                "day-of-month month day-of-week; or six, seconds first)"
            ) from None
        self._first_tick_exists()

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after ``moment``, in UTC."""
        ticks = CronSim(self.expression, moment.astimezone(self._zone))
        # In the hour a fall-back repeats, cronsim reckons in wall time and may answer a
        # tick of the first pass, earlier than ``moment``: the next one is the answer.
        for found in ticks:
            tick = found.astimezone(_UTC)
            if tick > moment:
                return tick
        return None

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last tick at or before ``moment``, in UTC."""
        # From the next whole second, computed in UTC so that a wall time that occurs twice
        # keeps its fold; cronsim steps back at least one second before it matches.
        start = (moment.astimezone(_UTC).replace(microsecond=0) + _SECOND).astimezone(self._zone)
        found = next(CronSim(self.expression, start, reverse=True), None)
        if found is None:
            return None
        candidate = found.astimezone(_UTC)
        # Walking backwards across a daylight-saving change may stop short of a tick that
        # walking forwards finds: the forward walk is the one the ticks are defined by.
        while (later := self.next_after(candidate)) is not None and later <= moment:
            candidate = later
        return candidate

    @property
    def when(self) -> str:
        """``cron <expression> <zone>``."""
        zone = self._zone
        name = getattr(zone, "key", None) or str(zone)
        return f"cron {' '.join(self.expression.split())} {name}"


@dataclass(frozen=True)
class Every(Schedule):
    """A schedule that ticks every ``period``, counted from the Unix epoch.

    ``Every(timedelta(minutes=5))`` ticks at :00, :05, :10... of every hour (UTC), on every
    worker alike; ``offset=timedelta(minutes=1)`` moves the ticks to :01, :06...

    Attributes
    ----------
    period:
        Time between ticks, at least one second.
    offset:
        Where ticks fall within the period, from 0 to less than ``period``.
    """

    period: timedelta
    offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.period, timedelta) or self.period < _SECOND:
            raise InvalidJobError(
                f"Every needs a period of at least one second, got {self.period!r}"
            )
        if not isinstance(self.offset, timedelta) or not (
            timedelta(0) <= self.offset < self.period
        ):
            raise InvalidJobError(
                f"offset must be a timedelta from 0 to less than the period ({self.period}), "
                f"got {self.offset!r}"
            )

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before ``moment``, in UTC."""
        period, offset = self.period // _MICROSECOND, self.offset // _MICROSECOND
        since = (moment - _EPOCH) // _MICROSECOND - offset
        return _EPOCH + _MICROSECOND * (since // period * period + offset)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``, in UTC."""
        return self.latest_at_or_before(moment) + self.period

    @property
    def when(self) -> str:
        """``every <period>``, and ``at +<offset>`` when there is one."""
        shift = f" at +{duration_text(self.offset)}" if self.offset else ""
        return f"every {duration_text(self.period)}{shift}"


def duration_text(value: timedelta) -> str:
    """``1d2h``, ``5m``, ``1.5s``: a duration in the fewest units."""
    rest = value // _MICROSECOND
    parts = []
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    if rest or not parts:
        parts.append(f"{rest / 1_000_000:g}s")
    return "".join(parts)


def due_ticks(schedule: Schedule, since: datetime, now: datetime) -> list[datetime]:
    """The ticks of ``schedule`` to enqueue at ``now``, oldest first, when the ticks up to
    ``since`` are done (``since``: the schedule's last tick, or when it was first recorded).

    Every tick in ``(since, now]`` but the latest was missed; the latest is on time or
    missed too. The schedule's :class:`Missed` policy chooses among them.
    """
    latest = schedule.latest_at_or_before(now)
    if latest is None or latest <= since:
        return []
    policy = schedule.missed
    if policy.policy == "latest":
        return [latest]
    if policy.policy == "skip":
        assert policy.grace is not None
        return [latest] if now - latest <= policy.grace else []
    assert policy.window is not None and policy.limit is not None
    oldest = now - policy.window
    ticks: list[datetime] = []
    tick: datetime | None = latest
    while tick is not None and tick > since and tick >= oldest and len(ticks) < policy.limit:
        ticks.append(tick)
        tick = schedule.latest_at_or_before(tick - _MICROSECOND)
    ticks.reverse()
    return ticks


@dataclass(frozen=True)
class PeriodicJob:
    """A schedule bound to the job type it enqueues: what a worker's scheduler runs.

    Attributes
    ----------
    job_type:
        The type of the jobs enqueued.
    schedule:
        When, with its name filled in.
    max_attempts:
        The handler's ``max_attempts``, written on each job.
    """

    job_type: str
    schedule: Schedule
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @property
    def name(self) -> str:
        """The schedule's name (its row in the schedules table)."""
        return self.schedule.name or self.job_type


# ----------------------------------------------------------------------- table


class JobScheduleMixin:
    """The columns of a schedules table, for any declarative base::

        class JobSchedule(JobScheduleMixin, Base):
            __tablename__ = "job_schedules"

    One row per schedule, written by workers: ``name`` (the schedule's), ``spec`` (when
    it ticks and its missed policy, for people), ``last_tick`` (the latest tick enqueued,
    ``NULL`` before the first), ``next_tick`` (the tick to come), ``created_at`` (when a
    worker first recorded it: its ticks count from then) and ``updated_at``. Set
    ``__table_schema__`` to put it in a schema. A worker finds the table in its job model's
    ``MetaData``, or is given it (``schedules=``).
    """

    __table_schema__: ClassVar[str | None] = None

    name: Mapped[str] = mapped_column(String(_NAME_LENGTH), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)
    last_tick: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_tick: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> dict[str, Any]:
        arguments: dict[str, Any] = {"info": {_INFO_KEY: True}}
        if cls.__table_schema__ is not None:
            arguments["schema"] = cls.__table_schema__
        return arguments


def is_schedule_table(table: Table) -> bool:
    """Whether ``table`` was built from :class:`JobScheduleMixin`."""
    return _INFO_KEY in table.info


def schedule_table(metadata: MetaData) -> Table | None:
    """The :class:`JobScheduleMixin` table of ``metadata``; ``None`` when it has none.

    Raises
    ------
    ModelError
        When it has several (give a worker the one to use, ``schedules=``).
    """
    found = [table for table in metadata.tables.values() if is_schedule_table(table)]
    if len(found) > 1:
        names = ", ".join(sorted(table.fullname for table in found))
        raise ModelError(
            f"the metadata has several JobScheduleMixin tables ({names}): give the worker "
            "the one to use, schedules=YourSchedules"
        )
    return found[0] if found else None


class _Base(DeclarativeBase):
    metadata = ready_metadata


class JobSchedule(JobScheduleMixin, _Base):
    """A ready schedules table on :data:`sqla_jobqueue.metadata`, ``job_schedules`` in the
    default schema, beside the ready :class:`~sqla_jobqueue.Job` (the packaged Alembic
    revision 0005 creates it)."""

    __tablename__ = "job_schedules"
