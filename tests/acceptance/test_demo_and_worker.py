"""``sqla-jobqueue demo`` and ``sqla-jobqueue worker``, run as processes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL

from sqla_jobqueue import Job
from tests.helpers import wait_for

from .running import (
    CliRunner,
    assert_one_line_error,
    base_environment,
    cli_command,
    run_cli,
    running,
    running_worker,
    url_text,
)

pytestmark = pytest.mark.slow


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(select(Job.status, func.count()).group_by(Job.status))
        return {str(getattr(status, "value", status)): int(n) for status, n in rows}


def test_demo_runs_to_the_end_on_the_embedded_postgres(
    embedded_root: Path, embedded_env: dict[str, str]
) -> None:
    data_dir = embedded_root / "pg"
    env = embedded_env
    demo = run_cli("demo", "--jobs", "50", "--data-dir", str(data_dir), env=env, timeout=180)
    assert demo.returncode == 0, demo.stderr
    assert f"Using the embedded PostgreSQL in {data_dir} (started;" in demo.stderr
    assert "Traceback" not in demo.stderr
    assert "Demo summary" in demo.stdout
    for job_type in ("render_report", "sync_feed", "backfill_thumbnails"):
        assert job_type in demo.stdout
    assert not (data_dir / "postmaster.pid").exists(), "the demo stops the server it started"

    status = run_cli("status", "--json", "--data-dir", str(data_dir), env=env, timeout=120)
    assert status.returncode == 0, status.stderr
    totals = json.loads(status.stdout)["totals"]
    assert totals["pending"] == totals["claimed"] == totals["running"] == 0
    assert totals["completed"] + totals["failed"] == 50
    assert totals["failed"] >= 1, "the demo's always-failing feed ends failed"


def test_demo_json_summary_shows_priorities(empty_database_url: URL) -> None:
    # A database given by URL with no jobs table yet: the demo migrates it first.
    env = base_environment(DATABASE_URL=url_text(empty_database_url))
    result = run_cli("demo", "--jobs", "30", "--workers", "2", "--json", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["jobs"] == 30 and summary["interrupted"] is False
    totals = summary["totals"]
    assert totals["completed"] + totals["failed"] == 30
    by_type = summary["by_type"]
    assert {t: row["priority"] for t, row in by_type.items()} == {
        "render_report": 150,
        "sync_feed": 100,
        "backfill_thumbnails": 30,
    }
    assert by_type["sync_feed"]["rerun"] >= 1
    # Claims take the highest priority first: reports all start before backfills on average.
    assert (
        by_type["render_report"]["mean_start_seconds"]
        < by_type["backfill_thumbnails"]["mean_start_seconds"]
    )


def test_demo_ctrl_c_stops_cleanly(database_url: URL, engine: Engine) -> None:
    env = base_environment(DATABASE_URL=url_text(database_url))
    # A terminal's Ctrl-C signals the whole foreground process group: do the same.
    command = [*cli_command(), "demo", "--jobs", "600", "--workers", "2"]
    with running(command, env=env, interruptible=True) as demo:
        wait_for(
            lambda: counts(engine).get("completed", 0) >= 5,
            timeout=60,
            what="the demo to get going",
        )
        exited = demo.stop(signal.SIGINT)
    assert exited.returncode == 130, exited
    assert "Traceback" not in exited.stderr
    assert "Interrupted" in exited.stderr and "Stopped early" in exited.stdout
    after = counts(engine)
    assert after.get("claimed", 0) == after.get("running", 0) == 0, after
    assert after.get("pending", 0) > 0
    assert sum(after.values()) == 600


WORKER_MODULE = """
from sqla_jobqueue.handlers import JobContext, Registry

registry = Registry()


@registry.handler("greet")
def greet(ctx: JobContext) -> dict[str, str]:
    ctx.progress(50, stage="greeting")
    return {"greeting": "hello " + ctx.data["name"]}
"""


def test_worker_runs_jobs_and_stops_on_sigterm(
    tmp_path: Path, cli: CliRunner, cli_env: dict[str, str], engine: Engine
) -> None:
    (tmp_path / "myjobs.py").write_text(WORKER_MODULE)
    ids = []
    for name in ("ada", "grace", "edsger"):
        job = json.loads(
            cli("enqueue", "greet", "--data", json.dumps({"name": name}), "--json").stdout
        )
        ids.append(job["id"])
    options = ["--concurrency", "2", "--types", "greet"]
    with running_worker("myjobs:registry", *options, env=cli_env, cwd=tmp_path) as worker:
        wait_for(
            lambda: counts(engine).get("completed", 0) == 3,
            timeout=60,
            what="the worker to run the jobs",
        )
        exited = worker.stop()
    assert exited.returncode == 0, exited.stderr
    assert "Traceback" not in exited.stderr
    for job_id in ids:
        assert job_id in exited.stderr, "one log line per job outcome, with its id"
    with engine.connect() as connection:
        results = connection.execute(text("SELECT result->>'greeting' FROM jobs")).scalars()
        assert sorted(results) == ["hello ada", "hello edsger", "hello grace"]


def test_worker_bad_arguments(cli: CliRunner) -> None:
    line = assert_one_line_error(cli("worker", "sqla_jobqueue.demo:registry", "--types", "x"), 2)
    assert "no handler for" in line
    line = assert_one_line_error(cli("worker", "sqla_jobqueue.demo:DEMO_TYPES"), 2)
    assert "not a Registry" in line
    line = assert_one_line_error(cli("worker", "no-colon"), 2)
    assert "module:attribute" in line
    line = assert_one_line_error(cli("demo", "--workers", "99"), 2)
    assert "at most 16" in line


BLOCKING_MODULE = """
import os
import time

from sqla_jobqueue.handlers import JobContext, Registry

registry = Registry()


@registry.handler("crunch")
def crunch(ctx: JobContext) -> None:
    ctx.progress(30, stage="crunching numbers")
    while not os.path.exists(ctx.data["release"]) and not ctx.abandoned:
        time.sleep(0.02)
"""


def test_watch_shows_the_stage_of_a_job_a_worker_runs(
    tmp_path: Path, cli: CliRunner, cli_env: dict[str, str], engine: Engine
) -> None:
    (tmp_path / "blocking.py").write_text(BLOCKING_MODULE)
    release = tmp_path / "release"
    cli("enqueue", "crunch", "--data", json.dumps({"release": str(release)}))
    with running_worker(
        "blocking:registry", "--concurrency", "1", env=cli_env, cwd=tmp_path
    ) as worker:

        def stage_written() -> bool:
            with engine.connect() as connection:
                stage = connection.execute(text("SELECT current_stage FROM jobs")).scalar_one()
            return bool(stage == "crunching numbers")

        wait_for(stage_written, timeout=60, what="the handler to report its stage")
        frames = cli("watch", "--count", "3", "--interval", "100ms")
        assert frames.returncode == 0, frames.stderr
        assert frames.stdout.count("crunching numbers") == 3
        assert frames.stdout.count("30%") == 3 and "crunch" in frames.stdout
        release.touch()
        wait_for(
            lambda: counts(engine).get("completed", 0) == 1, timeout=60, what="the job to complete"
        )
        exited = worker.stop()
    assert exited.returncode == 0, exited.stderr


def test_demo_runs_and_counts_what_an_earlier_run_left(database_url: URL, engine: Engine) -> None:
    from sqlalchemy.orm import Session

    from sqla_jobqueue import demo

    with Session(engine) as session, session.begin():
        demo.enqueue(session, 12)  # what an interrupted run leaves pending
    env = base_environment(DATABASE_URL=url_text(database_url))
    result = run_cli("demo", "--jobs", "6", "--workers", "2", "--json", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["jobs"], summary["enqueued"], summary["earlier_unfinished"]) == (18, 6, 12)
    totals = summary["totals"]
    assert totals["completed"] + totals["failed"] == 18
    assert counts(engine).get("pending", 0) == 0


def test_demo_live_rate_is_the_summary_rate(empty_database_url: URL) -> None:
    env = base_environment(DATABASE_URL=url_text(empty_database_url))
    result = run_cli("demo", "--jobs", "20", "--workers", "2", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "handlers sleep" in result.stdout and "not the queue's throughput" in result.stdout
    progress = [line for line in result.stdout.splitlines() if line.endswith(" jobs/s")]
    last_live = progress[-1].split(" · ")[-1]
    assert f"({last_live}, handlers that sleep" in result.stdout, result.stdout
