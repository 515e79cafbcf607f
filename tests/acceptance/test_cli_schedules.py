"""``status`` shows the periodic jobs: each schedule's name, when it ticks, its last tick
and its next one, for people and in ``--json``."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import Engine, text

from sqla_jobqueue import Cron, Every, Job, JobSchedule, Missed
from sqla_jobqueue.maintenance import Scheduler, SchedulerConfig
from sqla_jobqueue.schedules import PeriodicJob
from tests.helpers import job_table

from .running import CliRunner


def test_status_shows_the_schedules_and_their_ticks(cli: CliRunner, engine: Engine) -> None:
    hourly = Cron("0 * * * *", timezone="Europe/Paris")
    catch_up = Every(timedelta(minutes=5), missed=Missed.all_within(timedelta(hours=1)))
    jobs = (PeriodicJob("report", hourly), PeriodicJob("sweep", catch_up))
    Scheduler(Job, SchedulerConfig(job_table(JobSchedule), jobs)).run_once(engine)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE job_schedules SET last_tick = '2026-06-01 10:00+00' WHERE name = 'report'")
        )

    result = cli("status", "--json")
    assert result.returncode == 0, result.stderr
    shown = {row["name"]: row for row in json.loads(result.stdout)["schedules"]}
    assert {name: row["spec"] for name, row in shown.items()} == {
        "report": "cron 0 * * * * Europe/Paris; missed: latest",
        "sweep": "every 5m; missed: all within 1h (at most 100)",
    }
    assert shown["report"]["last_tick"] == "2026-06-01T10:00:00+00:00"
    assert shown["sweep"]["last_tick"] is None
    assert all(row["next_tick"] for row in shown.values())

    human = cli("status")
    assert human.returncode == 0, human.stderr
    assert "Periodic jobs (times in UTC)" in human.stdout
    assert "every 5m; missed: all within 1h (at most 100)" in human.stdout
    assert "2026-06-01 10:00:00" in human.stdout


def test_status_without_schedules_shows_none(cli: CliRunner, engine: Engine) -> None:
    job_table(JobSchedule).drop(engine, checkfirst=True)
    result = cli("status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["schedules"] == []
    human = cli("status")
    assert human.returncode == 0, human.stderr
    assert "Periodic jobs" not in human.stdout
