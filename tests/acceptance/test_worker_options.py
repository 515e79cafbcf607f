"""What ``sqla-jobqueue worker``'s options do, seen in the database and on stderr."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from tests.helpers import wait_for

from .running import CliRunner, assert_one_line_error, running_worker

HOLDING_MODULE = """
import time

from sqla_jobqueue.handlers import JobContext, Registry

registry = Registry()


@registry.handler("hold")
def hold(ctx: JobContext) -> None:
    while not ctx.abandoned:  # until the grace period is over
        time.sleep(0.02)
"""


def test_batch_size_grace_period_and_log_level_act_as_documented(
    tmp_path: Path, cli: CliRunner, cli_env: dict[str, str], engine: Engine
) -> None:
    (tmp_path / "holding.py").write_text(HOLDING_MODULE)
    for _ in range(4):
        assert cli("enqueue", "hold").returncode == 0
    options = ["--concurrency", "4", "--batch-size", "2", "--grace-period", "1s"]

    def running() -> int:
        with engine.connect() as connection:
            query = text("SELECT count(*) FROM jobs WHERE status = 'running'")
            return int(connection.execute(query).scalar_one())

    with running_worker(
        "holding:registry", *options, "--log-level", "WARNING", env=cli_env, cwd=tmp_path
    ) as worker:
        wait_for(lambda: running() == 4, timeout=60, what="four jobs running")
        exited = worker.stop()
    assert exited.returncode == 0, exited.stderr
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT status, attempts, last_error, claimed_at IS NULL FROM jobs")
        ).all()
        # --batch-size 2: two claims of two (a claim stamps its jobs with one timestamp);
        # read from the started_at the claims left, since a failure clears claimed_at.
        claims = connection.execute(text("SELECT started_at FROM jobs")).scalars()
    assert sorted(Counter(claims).values()) == [2, 2]
    # --grace-period 1s: cut off after a second, failed and due again.
    for status, attempts, last_error, _ in rows:
        assert (status, attempts) == ("pending", 1)
        assert "grace period 1s" in last_error
    # --log-level WARNING: none of the INFO lines (start, one per outcome, stop).
    assert " INFO " not in exited.stderr, exited.stderr


def test_bad_worker_durations_get_one_line_and_exit_2(cli: CliRunner) -> None:
    for option in ("--poll-interval", "--grace-period", "--heartbeat-interval"):
        line = assert_one_line_error(cli("worker", "sqla_jobqueue.demo:registry", option, "-1"), 2)
        assert option in line or "must be" in line, line


def test_the_start_line_shows_the_polling_and_heartbeat_intervals_given(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """--poll-interval and --heartbeat-interval reach the worker: its start line says what
    it runs with (how often an idle worker polls is a matter of time, not asserted here)."""
    (tmp_path / "holding.py").write_text(HOLDING_MODULE)
    options = ["--poll-interval", "250ms", "--heartbeat-interval", "3s", "--log-level", "INFO"]
    with running_worker("holding:registry", *options, env=cli_env, cwd=tmp_path) as worker:
        started = worker.stderr_line(" started: ")
        exited = worker.stop()
    assert "polling every 0.25s, heartbeat every 3s" in started, started
    assert exited.returncode == 0, exited.stderr


def test_listen_options_that_contradict_or_name_no_postgresql_get_one_line_and_exit_2(
    cli: CliRunner,
) -> None:
    both = cli("worker", "sqla_jobqueue.demo:registry", "--no-listen",
               "--listen-url", "postgresql://db/shop")  # fmt: skip
    assert "contradict each other" in assert_one_line_error(both, 2)
    other = cli("worker", "sqla_jobqueue.demo:registry", "--listen-url", "mysql://db/shop")
    assert "--listen-url" in assert_one_line_error(other, 2)


SESSION_MODULE = """
from sqlalchemy import text

from sqla_jobqueue.handlers import JobContext, Registry

registry = Registry()


@registry.handler("write")
def write(ctx: JobContext) -> None:
    ctx.session.execute(text("SELECT pg_sleep(0.005)"))
"""


def test_pool_size_caps_the_connections_a_worker_opens(
    tmp_path: Path, cli_env: dict[str, str], engine: Engine
) -> None:
    """--pool-size 2 --no-maintenance --no-listen: eight handlers that all use ctx.session
    share what is left of two connections, and the database never sees more than two of
    the worker's (sampled from pg_stat_activity while it drains)."""
    (tmp_path / "session_jobs.py").write_text(SESSION_MODULE)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO jobs (job_type) SELECT 'write' FROM generate_series(1, 300)")
        )
    options = ["--concurrency", "8", "--pool-size", "2", "--no-maintenance", "--no-listen"]
    peak = 0

    def left() -> int:
        nonlocal peak
        with engine.connect() as connection:
            peak = max(peak, int(connection.execute(text(WORKER_CONNECTIONS)).scalar_one()))
            query = text("SELECT count(*) FROM jobs WHERE status <> 'completed'")
            return int(connection.execute(query).scalar_one())

    env = {**cli_env, "PGAPPNAME": WORKER_NAME}  # libpq names every connection it opens
    with running_worker("session_jobs:registry", *options, env=env, cwd=tmp_path) as worker:
        wait_for(lambda: left() == 0, timeout=120, what="300 jobs completed")
        exited = worker.stop()
    assert exited.returncode == 0, exited.stderr
    assert 1 <= peak <= 2, peak


WORKER_NAME = "capped-worker"
WORKER_CONNECTIONS = (
    f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{WORKER_NAME}'"
)


def test_a_pool_too_small_for_the_worker_gets_one_line_and_exit_2(cli: CliRunner) -> None:
    small = cli("worker", "sqla_jobqueue.demo:registry", "--pool-size", "2")
    line = assert_one_line_error(small, 2)
    assert "--pool-size 2 is too small" in line and "--no-maintenance" in line
    ok = cli("worker", "sqla_jobqueue.demo:registry", "--pool-size", "1", "--no-maintenance")
    assert "give at least 2" in assert_one_line_error(ok, 2)


ARCHIVE_MODULE = """
from sqlalchemy.orm import DeclarativeBase

from sqla_jobqueue import JobArchiveMixin


class Base(DeclarativeBase):
    pass


class JobArchive(JobArchiveMixin, Base):
    __tablename__ = "jobs_archive"
"""


def test_archive_moves_finished_jobs_out_of_the_job_table(
    tmp_path: Path, cli_env: dict[str, str], engine: Engine
) -> None:
    (tmp_path / "holding.py").write_text(HOLDING_MODULE)
    (tmp_path / "archive_models.py").write_text(ARCHIVE_MODULE)
    namespace: dict[str, Any] = {}
    exec(ARCHIVE_MODULE, namespace)
    namespace["Base"].metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (job_type, status, attempts, completed_at) "
                "SELECT 'hold', 'completed', 1, now() - g * interval '1 hour' "
                "FROM generate_series(0, 4) AS g"
            )
        )

    def archived() -> int:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM jobs_archive")).scalar_one())

    options = ["--archive", "archive_models:JobArchive", "--archive-after", "90m"]
    with running_worker("holding:registry", *options, env=cli_env, cwd=tmp_path) as worker:
        wait_for(lambda: archived() == 3, what="the three jobs finished 2-4 hours ago archived")
        exited = worker.stop()
    assert exited.returncode == 0, exited.stderr


def test_archive_options_that_make_no_sense_get_one_line_and_exit_2(
    tmp_path: Path, cli: CliRunner
) -> None:
    alone = cli("worker", "sqla_jobqueue.demo:registry", "--archive-after", "1h")
    assert "--archive-after needs --archive" in assert_one_line_error(alone, 2)
    job_model = cli("worker", "sqla_jobqueue.demo:registry", "--archive", "sqla_jobqueue:Job")
    assert "not a mapped JobArchiveMixin class" in assert_one_line_error(job_model, 2)
