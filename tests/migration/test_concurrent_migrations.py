"""Migrations next to other migrations and next to a busy job table (issue 14).

Two ``alembic upgrade head`` runs started at once on an empty database: the packaged
``env.py`` takes an advisory lock first, so one migrates and the other waits, then finds
the database at head. A migration whose ``ALTER TABLE`` waits behind an open transaction
on the job table fails at its ``lock_timeout`` with a message saying what to do, and
succeeds once that transaction ends. Real ``alembic`` and ``sqla-jobqueue`` processes, on a
project copied from the packaged template, as a deployment would run them.

These live here rather than in tests/reliability/: they build Alembic environments on
throw-away databases, as the other tests of this directory do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL

from sqla_jobqueue.alembic import copy_template, upgrade
from sqla_jobqueue.alembic.guard import (
    DEFAULT_MIGRATION_LOCK_TIMEOUT,
    MIGRATION_LOCK_KEY,
    MIGRATION_LOCK_TIMEOUT_OPTION,
    MIGRATION_LOCK_TIMEOUT_VARIABLE,
    migration_lock_timeout,
)
from sqla_jobqueue.maintenance.lock import LOCK_CLASS_ID

PAIRS = 5
"""How many pairs of simultaneous upgrades the race test starts, each on a new database."""
PROCESS_TIMEOUT = 60
"""Seconds after which a migration process counts as hung (the test fails)."""

ADD_COLUMN_REVISION = '''"""add a column to the busy jobs table

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("tenant", sa.String(50), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "tenant")
'''

RUNNING_UPGRADE = "Running upgrade  -> 0001"
"""What alembic.ini's logging prints when a process creates the jobs table."""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project made by ``copy_template`` (its alembic.ini names no database)."""
    copy_template(tmp_path / "migrations")
    return tmp_path


@pytest.fixture
def engine(empty_database_url: URL) -> Iterator[Engine]:
    engine = create_engine(empty_database_url)
    yield engine
    engine.dispose()


def _environment(url: URL, **extra: str) -> dict[str, str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", MIGRATION_LOCK_TIMEOUT_VARIABLE)
    }
    return {**inherited, "DATABASE_URL": url.render_as_string(hide_password=False), **extra}


def start_alembic(project: Path, url: URL, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "alembic", *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_environment(url, **extra),
    )


def start_migrate(url: URL, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sqla_jobqueue.cli", "migrate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_environment(url, **extra),
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    """The exit code and output of ``process``; a process still running is a hang."""
    try:
        output, _ = process.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"a migration process still ran after {PROCESS_TIMEOUT} s: it hung")
    return process.returncode, output


def installed(engine: Engine) -> dict[str, object]:
    """What the migrations left: the version rows and each object, counted."""
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        counts = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM pg_tables "
                "WHERE tablename IN ('jobs', 'jobs_controls', 'job_schedules')) AS tables, "
                "(SELECT count(*) FROM pg_proc WHERE proname = 'claim_job_batch') AS claims, "
                "(SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal) AS triggers, "
                "(SELECT count(*) FROM pg_indexes WHERE tablename = 'jobs') AS indexes"
            )
        ).one()
        return {"versions": list(versions), **counts._asdict()}


HEAD_ONCE = {"versions": ["0006"], "tables": 3, "claims": 1, "triggers": 2, "indexes": 9}
"""The packaged head, installed once: the job table, its controls table and the schedules
table, the claim function, the job table's two triggers (jobs enqueued, awaited jobs
finished), its primary key and eight indexes."""


def waiting_for_the_migration_lock(connection: Connection) -> int:
    """How many sessions of this database wait for the migration lock."""
    return int(
        connection.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid = :class_id AND objid = :key AND objsubid = 2"
            ),
            {"class_id": LOCK_CLASS_ID, "key": MIGRATION_LOCK_KEY},
        ).scalar_one()
    )


@pytest.mark.parametrize("pair", range(PAIRS))
def test_two_upgrades_started_at_once_migrate_once(
    pair: int, project: Path, empty_database_url: URL, engine: Engine
) -> None:
    first = start_alembic(project, empty_database_url, "upgrade", "head")
    second = start_alembic(project, empty_database_url, "upgrade", "head")
    outcomes = [finish(first), finish(second)]

    assert [code for code, _ in outcomes] == [0, 0], outcomes
    # One created the objects; the other waited, found the database at head, did nothing.
    assert sum(RUNNING_UPGRADE in output for _, output in outcomes) == 1, outcomes
    assert installed(engine) == HEAD_ONCE


def test_upgrades_that_waited_for_a_migration_find_it_done(
    project: Path, empty_database_url: URL, engine: Engine
) -> None:
    """The closest race: both wait behind a migration in progress (the test stands in for
    it, holding its lock), then start at the same moment when it ends."""
    with engine.connect() as holder:
        holder.execute(
            text("SELECT pg_advisory_xact_lock(:class_id, :key)"),
            {"class_id": LOCK_CLASS_ID, "key": MIGRATION_LOCK_KEY},
        )
        alembic = start_alembic(project, empty_database_url, "upgrade", "head")
        migrate = start_migrate(empty_database_url)
        with engine.connect() as watcher:
            deadline = time.monotonic() + PROCESS_TIMEOUT
            while waiting_for_the_migration_lock(watcher) < 2:
                assert alembic.poll() is None and migrate.poll() is None, (
                    "a migration ran without waiting for the migration in progress: "
                    f"{finish(alembic)} {finish(migrate)}"
                )
                assert time.monotonic() < deadline, "the migrations never waited for the lock"
                time.sleep(0.05)
        holder.rollback()
    outcomes = [finish(alembic), finish(migrate)]

    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert "The database is at revision 0006 (head)." in outcomes[1][1]
    assert installed(engine) == HEAD_ONCE


def hold_a_job_row(connection: Connection) -> None:
    """What a worker's open transaction holds: a job row it updated (ROW EXCLUSIVE on the
    table, which ALTER TABLE's ACCESS EXCLUSIVE waits for)."""
    connection.execute(text("INSERT INTO jobs (job_type) VALUES ('report')"))
    connection.commit()
    connection.execute(text("UPDATE jobs SET progress = 50 WHERE job_type = 'report'"))


def the_failure(output: str) -> str:
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if line.startswith("FAILED")]
    return line


def test_a_migration_behind_a_busy_job_table_fails_fast_then_succeeds(
    project: Path, empty_database_url: URL, engine: Engine
) -> None:
    upgrade(engine)  # the packaged revisions, which the project's 0007 follows
    versions = project / "migrations" / "versions"
    (versions / "0007_add_a_column.py").write_text(ADD_COLUMN_REVISION)

    with engine.connect() as worker:
        hold_a_job_row(worker)
        # The environment variable sets the limit; the process ends while the lock is held.
        code, output = finish(
            start_alembic(
                project,
                empty_database_url,
                "upgrade",
                "head",
                **{MIGRATION_LOCK_TIMEOUT_VARIABLE: "1s"},
            )
        )
        assert code != 0
        line = the_failure(output)
        assert line.startswith(
            "FAILED: the migration waited more than lock_timeout (1s) for a lock"
        )
        assert "run it again when the database is quieter, or allow a longer wait" in line
        assert f"{MIGRATION_LOCK_TIMEOUT_VARIABLE}=30s" in line
        assert "waiting: ALTER TABLE jobs ADD COLUMN tenant" in line

        # So does the option in alembic.ini.
        ini = project / "alembic.ini"
        ini.write_text(
            ini.read_text().replace(
                "[alembic]\n", f"[alembic]\n{MIGRATION_LOCK_TIMEOUT_OPTION} = 500ms\n"
            )
        )
        code, output = finish(start_alembic(project, empty_database_url, "upgrade", "head"))
        assert code != 0
        assert the_failure(output).startswith(
            "FAILED: the migration waited more than lock_timeout (500ms)"
        )
        # Rolled back: the worker's transaction goes on, and commits.
        worker.commit()

    with engine.connect() as connection:
        assert connection.execute(text("SELECT progress FROM jobs")).scalar_one() == 50
    assert installed(engine)["versions"] == ["0006"]

    code, output = finish(start_alembic(project, empty_database_url, "upgrade", "head"))
    assert code == 0, output
    assert installed(engine)["versions"] == ["0007"]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT tenant FROM jobs")).scalar_one() is None


def test_sqla_jobqueue_migrate_says_what_to_do_when_a_lock_holds_it_up(
    empty_database_url: URL, engine: Engine
) -> None:
    upgrade(engine)
    with engine.connect() as other_tool:
        other_tool.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
        code, output = finish(
            start_migrate(empty_database_url, **{MIGRATION_LOCK_TIMEOUT_VARIABLE: "500ms"})
        )
        other_tool.rollback()
    assert code == 1
    assert output.startswith(
        "sqla-jobqueue migrate: error: the migration waited more than lock_timeout (500ms)"
    ), output
    assert "cannot run here" not in output and "Traceback" not in output

    code, output = finish(
        start_migrate(empty_database_url, **{MIGRATION_LOCK_TIMEOUT_VARIABLE: "5"})
    )
    assert code == 2
    assert output.startswith(
        f"sqla-jobqueue migrate: error: {MIGRATION_LOCK_TIMEOUT_VARIABLE} is '5': write a lock "
        "timeout"
    ), output


def config_with(option: str | None) -> Config:
    config = Config()
    if option is not None:
        config.set_main_option(MIGRATION_LOCK_TIMEOUT_OPTION, option)
    return config


def test_the_lock_timeout_comes_from_the_environment_then_the_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MIGRATION_LOCK_TIMEOUT_VARIABLE, raising=False)
    assert migration_lock_timeout(config_with(None)) == DEFAULT_MIGRATION_LOCK_TIMEOUT
    assert timedelta(seconds=5) == DEFAULT_MIGRATION_LOCK_TIMEOUT
    assert migration_lock_timeout(config_with("2m")) == timedelta(minutes=2)
    assert migration_lock_timeout(config_with("0")) is None
    monkeypatch.setenv(MIGRATION_LOCK_TIMEOUT_VARIABLE, "250ms")
    assert migration_lock_timeout(config_with("2m")) == timedelta(milliseconds=250)
    monkeypatch.setenv(MIGRATION_LOCK_TIMEOUT_VARIABLE, "0s")
    assert migration_lock_timeout(config_with("2m")) is None


@pytest.mark.parametrize("value", ["5", "soon", "-1s", "600000m", "30 days"])
def test_a_bad_lock_timeout_is_refused_before_connecting(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MIGRATION_LOCK_TIMEOUT_VARIABLE, raising=False)
    with pytest.raises(CommandError, match=rf"^{MIGRATION_LOCK_TIMEOUT_OPTION} is '.*': write"):
        migration_lock_timeout(config_with(value))
