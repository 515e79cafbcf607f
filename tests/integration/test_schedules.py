"""Periodic jobs on a real PostgreSQL: the statement that enqueues a tick exactly once
under concurrent workers, the missed-tick policies (on backdated rows), and workers that
enqueue and run the ticks of a schedule."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select, text, update

from sqla_jobqueue import Every, Job, JobSchedule, JobStatus, Missed, Registry
from sqla_jobqueue.ids import new_job_id
from sqla_jobqueue.maintenance import Scheduler, SchedulerConfig
from sqla_jobqueue.schedules import PeriodicJob, Schedule
from sqla_jobqueue.statements.schedules import ScheduleStatements
from tests.helpers import StartWorker, job_table, wait_for

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SCHEDULES = job_table(JobSchedule)


@pytest.fixture
def schedules_table(engine: Engine) -> Iterator[None]:
    """The ready ``job_schedules`` table in this test's database (created by revision
    0005 where the template has it)."""
    SCHEDULES.create(engine, checkfirst=True)
    yield


pytestmark = pytest.mark.usefixtures("schedules_table")


def statements() -> ScheduleStatements:
    return ScheduleStatements.of(job_table(), SCHEDULES)


def database_now(engine: Engine) -> datetime:
    with engine.connect() as connection:
        now: datetime = connection.execute(text("SELECT statement_timestamp()")).scalar_one()
    return now


def tick_args(name: str, tick: datetime) -> dict[str, Any]:
    return {
        "name": name,
        "spec": "every 1h; missed: latest",
        "tick": tick,
        "next_tick": tick + HOUR,
        "job_id": new_job_id(),
        "job_type": name,
        "data_json": json.dumps({"tick": tick.isoformat()}),
        "priority": 100,
        "max_attempts": 3,
    }


def jobs_of(engine: Engine, job_type: str) -> list[tuple[datetime, dict[str, Any]]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(Job.run_at, Job.data).where(Job.job_type == job_type).order_by(Job.run_at)
        )
        return [(run_at, data) for run_at, data in rows]


def waiting_on_a_lock(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


# ------------------------------------------------------------------ exactly once


def test_workers_racing_for_a_new_schedule_enqueue_its_tick_once(engine: Engine) -> None:
    """Eight connections run the statement for the same tick of a schedule that has no
    row yet, all at once: one inserts the row and the job, the others nothing."""
    tick = datetime(2026, 6, 1, 10, tzinfo=UTC)
    racers = 8
    start = threading.Barrier(racers)
    won: list[bool] = []

    def race() -> None:
        with engine.begin() as connection:
            start.wait()
            inserted = connection.execute(*statements().enqueue_tick(**tick_args("race", tick)))
            won.append(inserted.first() is not None)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False] * (racers - 1) + [True]
    assert [run_at for run_at, _ in jobs_of(engine, "race")] == [tick]


def test_workers_waiting_on_the_winner_find_the_tick_taken_and_enqueue_nothing(
    engine: Engine,
) -> None:
    """The winner holds the schedule's row until the seven others are all waiting for its
    lock; when it commits they check the row again, as the winner left it, and insert
    nothing. A later tick is enqueued once again, and an earlier one never."""
    first, second = datetime(2026, 6, 1, 10, tzinfo=UTC), datetime(2026, 6, 1, 11, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(*statements().enqueue_tick(**tick_args("held", first)))
    others = 7
    won: list[bool] = []

    def follow() -> None:
        with engine.begin() as connection:
            inserted = connection.execute(*statements().enqueue_tick(**tick_args("held", second)))
            won.append(inserted.first() is not None)

    with engine.begin() as winner:
        assert winner.execute(*statements().enqueue_tick(**tick_args("held", second))).first()
        threads = [threading.Thread(target=follow) for _ in range(others)]
        for thread in threads:
            thread.start()
        wait_for(lambda: waiting_on_a_lock(engine) == others, what="the others to wait")
    for thread in threads:
        thread.join()
    assert won == [False] * others
    with engine.begin() as connection:
        late = connection.execute(*statements().enqueue_tick(**tick_args("held", first)))
        assert late.first() is None
    assert [run_at for run_at, _ in jobs_of(engine, "held")] == [first, second]
    with engine.connect() as connection:
        row = connection.execute(select(SCHEDULES).where(SCHEDULES.c.name == "held")).one()
    assert (row.last_tick, row.next_tick) == (second, second + HOUR)


# --------------------------------------------------------------- missed ticks


def ticking_half_an_hour_ago(engine: Engine) -> tuple[timedelta, datetime]:
    """The offset of an hourly schedule whose latest tick fell half an hour ago by the
    database's clock, and that tick: the policies' outcomes do not depend on when the test
    runs (as long as it takes less than half an hour)."""
    latest = database_now(engine) - timedelta(minutes=30)
    offset = (latest - EPOCH) % HOUR
    return offset, latest - (latest - EPOCH) % HOUR + offset


def scheduler_of(*jobs: PeriodicJob) -> Scheduler:
    return Scheduler(Job, SchedulerConfig(SCHEDULES, jobs))


def backdate(engine: Engine, name: str, last_tick: datetime | None, created: datetime) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(SCHEDULES)
            .where(SCHEDULES.c.name == name)
            .values(last_tick=last_tick, created_at=created, next_tick=None)
        )


def test_missed_ticks_follow_each_schedules_policy(engine: Engine) -> None:
    offset, latest = ticking_half_an_hour_ago(engine)

    def hourly(missed: Missed) -> Schedule:
        return Every(HOUR, offset=offset, missed=missed, tick_key="tick", data={"n": 1})

    policies = {
        "latest": hourly(Missed.latest()),
        "skip": hourly(Missed.skip(grace=timedelta(minutes=5))),
        "all": hourly(Missed.all_within(timedelta(hours=3))),
        "capped": hourly(Missed.all_within(timedelta(days=1), limit=2)),
    }
    scheduler = scheduler_of(*(PeriodicJob(name, s, 5) for name, s in policies.items()))
    assert scheduler.run_once(engine) == 0, "the first round records the schedules only"
    with engine.connect() as connection:
        recorded = connection.execute(select(SCHEDULES.c.name, SCHEDULES.c.spec)).all()
    assert dict(recorded) == {name: s.spec for name, s in policies.items()}
    # As if the workers had stopped five hours before the latest tick.
    for name in policies:
        backdate(engine, name, latest - 5 * HOUR, latest - 6 * HOUR)

    assert scheduler.run_once(engine) == 1 + 0 + 3 + 2
    expected = {
        "latest": [latest],
        "skip": [],
        "all": [latest - 2 * HOUR, latest - HOUR, latest],
        "capped": [latest - HOUR, latest],
    }
    for name, ticks in expected.items():
        jobs = jobs_of(engine, name)
        assert [run_at for run_at, _ in jobs] == ticks, name
        assert [data for _, data in jobs] == [{"n": 1, "tick": t.isoformat()} for t in ticks]
    with engine.connect() as connection:
        rows = {row.name: row for row in connection.execute(select(SCHEDULES))}
    assert rows["skip"].last_tick == latest - 5 * HOUR, "a skipped tick is not enqueued"
    assert {row.next_tick for row in rows.values()} == {latest + HOUR}
    assert rows["all"].last_tick == latest

    assert scheduler.run_once(engine) == 0, "each tick once"
    with engine.connect() as connection:
        counted = connection.execute(
            select(Job.job_type, func.count(), func.min(Job.max_attempts)).group_by(Job.job_type)
        ).all()
    assert sorted(counted) == [("all", 3, 5), ("capped", 2, 5), ("latest", 1, 5)]


def test_a_new_schedule_counts_its_ticks_from_when_it_was_recorded(engine: Engine) -> None:
    offset, latest = ticking_half_an_hour_ago(engine)
    schedule = Every(HOUR, offset=offset, missed=Missed.all_within(timedelta(days=1)))
    scheduler = scheduler_of(PeriodicJob("fresh", schedule))
    scheduler.run_once(engine)
    scheduler.run_once(engine)
    assert jobs_of(engine, "fresh") == [], "ticks before the schedule was recorded"
    backdate(engine, "fresh", None, latest - timedelta(minutes=90))
    assert scheduler.run_once(engine) == 2
    assert [run_at for run_at, _ in jobs_of(engine, "fresh")] == [latest - HOUR, latest]
    # A schedule whose row was deleted starts again from the next round.
    with engine.begin() as connection:
        connection.execute(delete(SCHEDULES))
    assert scheduler.run_once(engine) == 0
    assert len(jobs_of(engine, "fresh")) == 2


def test_a_changed_schedule_is_recorded_by_the_next_worker_to_start(engine: Engine) -> None:
    offset, _ = ticking_half_an_hour_ago(engine)
    scheduler_of(PeriodicJob("report", Every(HOUR, offset=offset))).run_once(engine)
    changed = Every(2 * HOUR, offset=offset)
    scheduler_of(PeriodicJob("report", changed)).run_once(engine)
    with engine.connect() as connection:
        spec = connection.execute(select(SCHEDULES.c.spec)).scalar_one()
    assert spec == "every 2h at +" + spec.split("+")[1] and spec == changed.spec


def test_a_missing_schedules_table_is_reported_and_the_round_skipped(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    SCHEDULES.drop(engine)
    scheduler = scheduler_of(PeriodicJob("report", Every(HOUR)))
    assert scheduler.run_once(engine) is None
    assert "the schedules table job_schedules does not exist" in caplog.text
    assert scheduler.interval == pytest.approx(60, abs=1)


# ------------------------------------------------------------------- workers


def test_a_worker_enqueues_and_runs_each_tick_of_a_schedule(
    engine: Engine, start_worker: StartWorker
) -> None:
    registry = Registry()
    ran: list[str] = []

    every_second = Every(
        timedelta(seconds=1), tick_key="tick", missed=Missed.all_within(timedelta(minutes=1))
    )

    @registry.handler("beat", schedule=every_second)
    def beat(ctx: Any) -> None:
        ran.append(ctx.data["tick"])

    with start_worker(registry):
        wait_for(lambda: len(ran) >= 3, what="three ticks run")
    jobs = jobs_of(engine, "beat")
    ticks = [run_at for run_at, _ in jobs]
    assert len(set(ticks)) == len(ticks) >= 3
    assert all(tick.microsecond == 0 for tick in ticks)
    assert {b - a for a, b in pairwise(ticks)} == {timedelta(seconds=1)}
    assert Counter(ran) == Counter(data["tick"] for _, data in jobs if data["tick"] in ran)
    with engine.connect() as connection:
        statuses = connection.execute(select(Job.status).where(Job.job_type == "beat")).scalars()
        assert set(statuses) <= {JobStatus.COMPLETED, JobStatus.PENDING, JobStatus.RUNNING}
