"""Periodic jobs across real worker processes: one job per tick, however many workers
race for it, across a restart of all of them.

Four processes of ``tests/reliability/periodic_worker.py`` schedule a job every second
(every missed tick of the last five minutes caught up). They run for a few ticks, all
stop, stay down for at least two ticks, and four new ones start: every tick from the
first to the last has exactly one job, including those that passed while none ran.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import URL

from sqla_jobqueue import Job, JobSchedule
from tests.helpers import job_table, wait_for
from tests.reliability.conftest import ROOT, Spawn, reap

pytestmark = pytest.mark.slow

PROCESSES = 4
SECOND = timedelta(seconds=1)


@pytest.fixture(params=["threads", "asyncio"])
def spawn(request: pytest.FixtureRequest, database_url: URL, tmp_path: Path) -> Iterator[Spawn]:
    """Start periodic worker processes of one kind on this test's database; all are
    killed at the end, and their logs printed."""
    started: list[subprocess.Popen[bytes]] = []
    chosen = ["--asyncio"] if request.param == "asyncio" else []

    def start(*options: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.periodic_worker",
             database_url.render_as_string(hide_password=False), *chosen, *options],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    reap(started, tmp_path)


def ticks(engine: Engine) -> list[tuple[datetime, datetime, str]]:
    """``(run_at, created_at, data["tick"])`` of every job, by tick."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(Job.run_at, Job.created_at, Job.data["tick"].astext).order_by(Job.run_at)
        )
        return [(run_at, created_at, tick) for run_at, created_at, tick in rows]


def database_now(engine: Engine) -> datetime:
    with engine.connect() as connection:
        now: datetime = connection.execute(text("SELECT statement_timestamp()")).scalar_one()
    return now


def all_started(logs: Path, first: int) -> bool:
    """Whether worker processes ``first`` to ``first + PROCESSES - 1`` have started (a
    SIGTERM before that would end a process still importing)."""
    names = [logs / f"worker-{n}.log" for n in range(first, first + PROCESSES)]
    return all(" started: " in name.read_text(errors="replace") for name in names)


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    assert [process.wait(30) for process in processes] == [0] * len(processes)


def test_four_workers_enqueue_each_tick_once_across_a_restart(
    engine: Engine, spawn: Spawn, tmp_path: Path, figures: dict[str, object]
) -> None:
    job_table(JobSchedule).create(engine, checkfirst=True)
    first = [spawn() for _ in range(PROCESSES)]
    wait_for(lambda: all_started(tmp_path, 0), what="the first four workers to start")
    running = [database_now(engine)]
    wait_for(
        lambda: sum(run_at > running[0] for run_at, _, _ in ticks(engine)) >= 3,
        what="three ticks with the four running",
    )
    stop_all(first)
    before = ticks(engine)
    stopped_at = database_now(engine)
    # Down for at least two ticks: they are missed by every worker.
    wait_for(lambda: database_now(engine) >= stopped_at + 2.5 * SECOND, what="ticks while down")
    restarted_at = database_now(engine)
    second = [spawn() for _ in range(PROCESSES)]
    wait_for(lambda: all_started(tmp_path, PROCESSES), what="the next four workers to start")
    running.append(database_now(engine))
    wait_for(
        lambda: sum(run_at > running[1] for run_at, _, _ in ticks(engine)) >= 3,
        what="three ticks with the next four running",
    )
    stop_all(second)

    jobs = ticks(engine)
    run_ats = [run_at for run_at, _, _ in jobs]
    assert [tick for tick, count in Counter(run_ats).items() if count > 1] == [], "none twice"
    span = int((run_ats[-1] - run_ats[0]) / SECOND)
    assert run_ats == [run_ats[0] + n * SECOND for n in range(span + 1)], "none missing"
    assert all(datetime.fromisoformat(tick) == run_at for run_at, _, tick in jobs)
    assert run_ats[: len(before)] == [run_at for run_at, _, _ in before]
    missed = [run_at for run_at, created_at, _ in jobs if stopped_at < run_at <= restarted_at]
    assert len(missed) >= 2
    assert all(created_at > restarted_at for run_at, created_at, _ in jobs if run_at in missed)

    enqueued_by = Counter(
        log.name
        for log in sorted(tmp_path.glob("worker-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if re.search(r"scheduler: enqueued tick for its tick", line)
    )
    assert sum(enqueued_by.values()) == len(jobs)
    # How late the ticks that fell while four workers ran were enqueued (a measure, not a
    # promise: the machine is shared).
    lateness = sorted(
        (created_at - run_at).total_seconds()
        for run_at, created_at, _ in jobs
        if running[0] < run_at <= stopped_at or running[1] < run_at
    )
    figures.update(
        processes=2 * PROCESSES,
        ticks=len(jobs),
        missed_while_down=len(missed),
        duplicates=0,
        lost=0,
        workers_that_won_a_tick=len(enqueued_by),
        on_time_lateness_max_s=round(lateness[-1], 3),
        on_time_lateness_median_s=round(lateness[len(lateness) // 2], 3),
    )
