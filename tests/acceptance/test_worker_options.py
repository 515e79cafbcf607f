"""What ``sqla-jobqueue worker``'s options do, seen in the database and on stderr."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

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
