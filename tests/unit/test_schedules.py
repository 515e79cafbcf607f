"""Periodic jobs without a database: the ticks of cron expressions (time zones, daylight
saving) and of intervals, the missed-tick policies, and how schedules are declared and
found."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from sqla_jobqueue import (
    Cron,
    Every,
    Job,
    JobContext,
    JobMixin,
    JobSchedule,
    JobScheduleMixin,
    Missed,
    Registry,
    metadata,
)
from sqla_jobqueue.errors import InvalidJobError, ModelError
from sqla_jobqueue.schedules import Schedule, due_ticks, is_schedule_table, schedule_table
from sqla_jobqueue.worker import WorkerSettings
from tests.helpers import job_table

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    microsecond: int = 0,
) -> datetime:  # fmt: skip
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def paris(
    year: int, month: int, day: int, hour: int, minute: int = 0, *, fold: int = 0
) -> datetime:
    """A wall time in Paris, as the instant in UTC (an ambiguous wall time compares unequal
    to every instant of another zone)."""
    return datetime(year, month, day, hour, minute, tzinfo=PARIS, fold=fold).astimezone(UTC)


def ticks_between(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    found, tick = [], schedule.next_after(start)
    while tick is not None and tick <= end:
        found.append(tick)
        tick = schedule.next_after(tick)
    return found


def noop(ctx: JobContext) -> None:
    return None


# ------------------------------------------------------------------- intervals


def test_interval_ticks_are_counted_from_the_epoch_whatever_the_time_zone() -> None:
    every = Every(timedelta(minutes=5))
    moment = utc(2026, 6, 1, 10, 7, 30)
    assert every.latest_at_or_before(moment) == utc(2026, 6, 1, 10, 5)
    assert every.next_after(moment) == utc(2026, 6, 1, 10, 10)
    assert every.latest_at_or_before(moment.astimezone(PARIS)) == utc(2026, 6, 1, 10, 5)
    # A tick is at or before itself, and strictly before the next one.
    assert every.latest_at_or_before(utc(2026, 6, 1, 10, 5)) == utc(2026, 6, 1, 10, 5)
    assert every.next_after(utc(2026, 6, 1, 10, 5)) == utc(2026, 6, 1, 10, 10)
    assert every.latest_at_or_before(utc(2026, 6, 1, 10, 5) - timedelta(microseconds=1)) == utc(
        2026, 6, 1, 10, 0
    )


def test_an_offset_moves_the_ticks_within_the_period() -> None:
    hourly = Every(timedelta(hours=1), offset=timedelta(minutes=15))
    assert ticks_between(hourly, utc(2026, 6, 1, 10), utc(2026, 6, 1, 12)) == [
        utc(2026, 6, 1, 10, 15),
        utc(2026, 6, 1, 11, 15),
    ]
    # Before the epoch too (floor division).
    assert hourly.latest_at_or_before(utc(1969, 12, 31, 23, 0)) == utc(1969, 12, 31, 22, 15)


def test_sub_second_parts_of_a_period_are_kept() -> None:
    every = Every(timedelta(seconds=1, milliseconds=500))
    assert ticks_between(every, utc(1970, 1, 1), utc(1970, 1, 1, 0, 0, 4)) == [
        utc(1970, 1, 1, 0, 0, 1) + timedelta(milliseconds=500),
        utc(1970, 1, 1, 0, 0, 3),
    ]


@pytest.mark.parametrize(
    ("period", "offset", "message"),
    [
        (timedelta(milliseconds=999), timedelta(0), "at least one second"),
        (60, timedelta(0), "at least one second"),
        (timedelta(minutes=1), timedelta(minutes=1), "less than the period"),
        (timedelta(minutes=1), timedelta(seconds=-1), "from 0"),
    ],
)
def test_bad_intervals_are_refused(period: object, offset: object, message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        Every(period, offset=offset)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ cron


def test_cron_ticks_in_utc_by_default() -> None:
    hourly = Cron("0 * * * *")
    assert hourly.latest_at_or_before(utc(2026, 6, 1, 10, 59, 59, 999999)) == utc(2026, 6, 1, 10)
    assert hourly.latest_at_or_before(utc(2026, 6, 1, 10)) == utc(2026, 6, 1, 10)
    assert hourly.next_after(utc(2026, 6, 1, 10)) == utc(2026, 6, 1, 11)
    assert hourly.when == "cron 0 * * * * UTC"


def test_cron_ticks_by_the_clock_of_its_time_zone_winter_and_summer() -> None:
    nine = Cron("0 9 * * MON-FRI", timezone="Europe/Paris")
    assert ticks_between(nine, utc(2026, 1, 2), utc(2026, 1, 6)) == [
        utc(2026, 1, 2, 8),  # Friday, UTC+1
        utc(2026, 1, 5, 8),  # Monday
    ]
    assert nine.next_after(utc(2026, 7, 1)) == utc(2026, 7, 1, 7)  # UTC+2
    assert nine.when == "cron 0 9 * * MON-FRI Europe/Paris"


def test_a_fixed_time_that_does_not_exist_runs_after_the_gap_and_one_twice_runs_once() -> None:
    half_past_two = Cron("30 2 * * *", timezone=PARIS)
    # 29 March 2026: 02:00 -> 03:00 in Paris; 25 October: 03:00 -> 02:00.
    spring = ticks_between(half_past_two, utc(2026, 3, 28), utc(2026, 3, 31))
    assert spring == [paris(2026, 3, 28, 2, 30), paris(2026, 3, 29, 3), paris(2026, 3, 30, 2, 30)]
    autumn = ticks_between(half_past_two, utc(2026, 10, 24), utc(2026, 10, 27))
    assert autumn == [paris(2026, 10, 24, 2, 30), paris(2026, 10, 25, 2, 30),
                      paris(2026, 10, 26, 2, 30)]  # fmt: skip


def test_an_expression_every_half_hour_ticks_by_elapsed_time_across_the_changes() -> None:
    half_hourly = Cron("*/30 * * * *", timezone="Europe/Paris")
    autumn = ticks_between(half_hourly, paris(2026, 10, 25, 1, 45), paris(2026, 10, 25, 3, 15))
    assert autumn == [
        paris(2026, 10, 25, 2, 0),
        paris(2026, 10, 25, 2, 30),
        paris(2026, 10, 25, 2, 0, fold=1),
        paris(2026, 10, 25, 2, 30, fold=1),
        paris(2026, 10, 25, 3, 0),
    ]
    assert {b - a for a, b in pairwise(autumn)} == {timedelta(minutes=30)}


@pytest.mark.parametrize(
    "expression",
    ["30 2 * * *", "*/30 * * * *", "0 * * * *", "15 1-3 * * *", "*/20 * * * * *", "0 0 L * *"],
)
@pytest.mark.parametrize("day", [(2026, 3, 29), (2026, 10, 25), (2026, 6, 1)])
def test_the_latest_tick_and_the_next_agree_around_daylight_saving(
    expression: str, day: tuple[int, int, int]
) -> None:
    cron = Cron(expression, timezone="Europe/Paris")
    moment = datetime(*day, tzinfo=UTC) - timedelta(hours=2)
    end = moment + timedelta(hours=8)
    step = timedelta(minutes=7, seconds=13, microseconds=500)
    while moment < end:
        latest = cron.latest_at_or_before(moment)
        assert latest is not None and latest <= moment
        following = cron.next_after(latest)
        assert following is not None and following > moment, (moment, latest, following)
        upcoming = cron.next_after(moment)
        assert upcoming == following
        assert cron.latest_at_or_before(upcoming) == upcoming
        moment += step


def test_six_fields_tick_by_the_second() -> None:
    every_ten_seconds = Cron("*/10 * * * * *")
    assert ticks_between(every_ten_seconds, utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 30)) == [
        utc(2026, 1, 1, 0, 0, 10),
        utc(2026, 1, 1, 0, 0, 20),
        utc(2026, 1, 1, 0, 0, 30),
    ]


@pytest.mark.parametrize(
    ("expression", "timezone_", "message"),
    [
        ("0 * * *", "UTC", "bad cron expression '0 \\* \\* \\*': Wrong number of fields"),
        ("61 * * * *", "UTC", "Bad minute"),
        ("0 0 30 2 *", "UTC", "Bad day-of-month"),
        ("@daily", "UTC", "Wrong number of fields"),
        ("0 * * * *", "Europe/Pariss", "unknown time zone 'Europe/Pariss'"),
        ("0 * * * *", 2, "timezone must be a zone name or a tzinfo"),
        (None, "UTC", "a cron expression is a string"),
    ],
)
def test_bad_cron_schedules_are_refused_when_declared(
    expression: object, timezone_: object, message: str
) -> None:
    with pytest.raises(InvalidJobError, match=message):
        Cron(expression, timezone=timezone_)  # type: ignore[arg-type]


# --------------------------------------------------------------- missed ticks


def test_missed_ticks_latest_enqueues_the_latest_once() -> None:
    hourly = Every(timedelta(hours=1))
    now = utc(2026, 6, 1, 10, 40)
    assert due_ticks(hourly, utc(2026, 6, 1, 3), now) == [utc(2026, 6, 1, 10)]
    assert due_ticks(hourly, utc(2026, 6, 1, 10), now) == []  # done already
    assert due_ticks(hourly, utc(2026, 6, 1, 10, 20), now) == []  # recorded after it


def test_missed_ticks_skip_keeps_only_a_tick_within_its_grace() -> None:
    hourly = Every(timedelta(hours=1), missed=Missed.skip(grace=timedelta(minutes=5)))
    since = utc(2026, 6, 1, 3)
    assert due_ticks(hourly, since, utc(2026, 6, 1, 10, 4, 59)) == [utc(2026, 6, 1, 10)]
    assert due_ticks(hourly, since, utc(2026, 6, 1, 10, 5)) == [utc(2026, 6, 1, 10)]
    assert due_ticks(hourly, since, utc(2026, 6, 1, 10, 5, 1)) == []


def test_missed_ticks_all_within_a_window_oldest_first_at_most_a_limit() -> None:
    now = utc(2026, 6, 1, 10, 40)
    catch_up = Every(timedelta(hours=1), missed=Missed.all_within(timedelta(hours=3)))
    assert due_ticks(catch_up, utc(2026, 6, 1, 3), now) == [
        utc(2026, 6, 1, 8),
        utc(2026, 6, 1, 9),
        utc(2026, 6, 1, 10),
    ]
    assert due_ticks(catch_up, utc(2026, 6, 1, 8), now) == [utc(2026, 6, 1, 9), utc(2026, 6, 1, 10)]
    capped = Every(timedelta(hours=1), missed=Missed.all_within(timedelta(days=1), limit=2))
    assert due_ticks(capped, utc(2026, 6, 1, 3), now) == [utc(2026, 6, 1, 9), utc(2026, 6, 1, 10)]
    # A latest tick older than the window is dropped too.
    daily = Every(timedelta(days=1), missed=Missed.all_within(timedelta(hours=6)))
    assert due_ticks(daily, utc(2026, 5, 20), now) == []


def test_missed_ticks_of_cron_are_its_own_ticks() -> None:
    weekdays = Cron("0 9 * * MON-FRI", missed=Missed.all_within(timedelta(days=7)))
    # From Friday 09:00 to Tuesday 10:00: Monday and Tuesday were missed.
    assert due_ticks(weekdays, utc(2026, 1, 2, 9), utc(2026, 1, 6, 10)) == [
        utc(2026, 1, 5, 9),
        utc(2026, 1, 6, 9),
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Missed("skip"), "'skip' needs grace"),
        (lambda: Missed("latest", grace=timedelta(1)), "'latest' takes no grace"),
        (lambda: Missed("all", window=timedelta(hours=1)), "'all' needs limit"),
        (lambda: Missed("sometimes"), "must be 'latest', 'skip' or 'all'"),  # type: ignore[arg-type]
        (lambda: Missed.skip(timedelta(milliseconds=10)), "at least 1 second"),
        (lambda: Missed.skip(timedelta(0)), "grace must be positive"),
        (lambda: Missed.all_within(timedelta(hours=1), limit=0), "limit must be at least 1"),
        (lambda: Missed.all_within(3600), "window must be a timedelta"),  # type: ignore[arg-type]
    ],
)
def test_bad_missed_policies_are_refused(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(InvalidJobError, match=message):
        make()


# ------------------------------------------------------------- what a job holds


def test_the_spec_says_when_and_what_happens_to_missed_ticks() -> None:
    assert Cron("0  * * * *", timezone="Europe/Paris").spec == (
        "cron 0 * * * * Europe/Paris; missed: latest"
    )
    every = Every(
        timedelta(hours=1, minutes=30),
        offset=timedelta(minutes=1),
        missed=Missed.all_within(timedelta(hours=6), limit=10),
    )
    assert every.spec == "every 1h30m at +1m; missed: all within 6h (at most 10)"
    assert Every(timedelta(seconds=1.5), missed=Missed.skip()).spec == (
        "every 1.5s; missed: skip (after 1m)"
    )


def test_a_job_holds_the_schedule_data_and_its_tick_under_tick_key() -> None:
    tick = paris(2026, 6, 1, 12)
    plain = Every(timedelta(minutes=1), data={"kind": "sweep"})
    assert json.loads(plain.job_data(tick)) == {"kind": "sweep"}
    keyed = Every(timedelta(minutes=1), data={"kind": "sweep"}, tick_key="tick")
    assert json.loads(keyed.job_data(tick)) == {
        "kind": "sweep",
        "tick": "2026-06-01T10:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"data": {"tick": 1}, "tick_key": "tick"}, "already has the key 'tick'"),
        ({"data": [1, 2]}, "schedule data must be a JSON object"),
        ({"data": {"x": float("nan")}}, "schedule data"),
        ({"name": ""}, "schedule name"),
        ({"priority": 2**31}, "priority"),
        ({"missed": "skip"}, "missed must be a Missed policy"),
    ],
)
def test_bad_schedule_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        Every(timedelta(minutes=1), **options)  # type: ignore[arg-type]


# ------------------------------------------------------------------ declaring


def test_a_schedule_is_declared_with_its_handler_and_named_after_its_type() -> None:
    registry = Registry()
    registry.register("report", noop, max_attempts=7, schedule=Cron("0 * * * *"))
    registry.register(
        "sweep",
        noop,
        schedule=[Every(timedelta(minutes=5)), Every(timedelta(hours=1), name="sweep-deep")],
    )
    registry.register("plain", noop)
    jobs = registry.periodic_jobs()
    assert [(job.name, job.job_type, job.max_attempts) for job in jobs] == [
        ("report", "report", 7),
        ("sweep", "sweep", 3),
        ("sweep-deep", "sweep", 3),
    ]
    assert [job.name for job in registry.periodic_jobs(["sweep", "plain"])] == [
        "sweep",
        "sweep-deep",
    ]


def test_schedule_names_must_be_distinct_across_the_registry() -> None:
    registry = Registry()
    with pytest.raises(InvalidJobError, match="two schedules are named 'a'"):
        registry.register("a", noop, schedule=[Every(timedelta(minutes=1)), Cron("0 * * * *")])
    registry.register("b", noop, schedule=Every(timedelta(minutes=1), name="nightly"))
    with pytest.raises(InvalidJobError, match="two schedules are named 'nightly'"):
        registry.register("c", noop, schedule=Cron("0 0 * * *", name="nightly"))
    assert "c" not in registry
    with pytest.raises(InvalidJobError, match="must be a Cron or an Every"):
        registry.register("d", noop, schedule="0 * * * *")  # type: ignore[arg-type]


def test_the_decorator_takes_a_schedule() -> None:
    registry = Registry()

    @registry.handler("tick", schedule=Every(timedelta(seconds=1)))
    def tick(ctx: JobContext) -> None:
        return None

    assert [s.name for s in registry["tick"].schedules] == ["tick"]


# --------------------------------------------------------------- finding the table


class OwnBase(DeclarativeBase):
    metadata = MetaData()


class OwnJob(JobMixin, OwnBase):
    __tablename__ = "own_jobs"


class OwnSchedule(JobScheduleMixin, OwnBase):
    __tablename__ = "own_schedules"
    __table_schema__ = "queue"


class LoneBase(DeclarativeBase):
    metadata = MetaData()


class LoneJob(JobMixin, LoneBase):
    __tablename__ = "lone_jobs"


def test_the_schedules_table_is_found_in_the_metadata() -> None:
    assert schedule_table(metadata) is JobSchedule.__table__
    assert schedule_table(OwnBase.metadata) is OwnSchedule.__table__
    own = job_table(OwnSchedule)
    assert own.fullname == "queue.own_schedules"
    assert is_schedule_table(own) and not is_schedule_table(job_table(OwnJob))
    assert schedule_table(LoneBase.metadata) is None
    both = MetaData()
    for table in (JobSchedule.__table__, OwnSchedule.__table__):
        table.to_metadata(both)
    with pytest.raises(ModelError, match="several JobScheduleMixin tables"):
        schedule_table(both)


def scheduled_registry() -> Registry:
    registry = Registry()
    registry.register("report", noop, schedule=Every(timedelta(minutes=1)))
    registry.register("other", noop)
    return registry


def test_a_worker_finds_the_schedules_table_beside_its_job_model() -> None:
    settings = WorkerSettings.check(scheduled_registry())
    assert settings.scheduling is not None
    assert settings.scheduling.table is JobSchedule.__table__
    assert [job.name for job in settings.scheduling.jobs] == ["report"]
    scheduler = settings.scheduler()
    assert scheduler is not None and scheduler.statements.schedules is JobSchedule.__table__
    own = WorkerSettings.check(scheduled_registry(), model=OwnJob)
    assert own.scheduling is not None and own.scheduling.table is OwnSchedule.__table__
    given = WorkerSettings.check(scheduled_registry(), model=LoneJob, schedules=OwnSchedule)
    assert given.scheduling is not None and given.scheduling.table is OwnSchedule.__table__


def test_a_worker_without_a_schedules_table_says_what_to_add() -> None:
    with pytest.raises(ModelError) as refused:
        WorkerSettings.check(scheduled_registry(), model=LoneJob)
    message = str(refused.value)
    assert "the handlers of report declare schedules" in message
    assert "JobScheduleMixin" in message and "schedules=False" in message
    # Not needed when this worker runs no schedule.
    assert WorkerSettings.check(scheduled_registry(), model=LoneJob, job_types=["other"])
    off = WorkerSettings.check(scheduled_registry(), model=LoneJob, schedules=False)
    assert off.scheduling is None and off.scheduler() is None
    with pytest.raises(ModelError, match="schedules must be a mapped JobScheduleMixin model"):
        WorkerSettings.check(scheduled_registry(), schedules=Job)


def test_a_worker_out_of_maintenance_enqueues_no_periodic_job() -> None:
    settings = WorkerSettings.check(scheduled_registry(), maintenance=False)
    assert settings.scheduling is not None and settings.scheduler() is None


def test_a_scheduler_sleeps_until_the_next_tick_at_most_its_interval() -> None:
    settings = WorkerSettings.check(scheduled_registry())
    scheduler = settings.scheduler()
    assert scheduler is not None
    assert 0 < scheduler.interval <= 60
