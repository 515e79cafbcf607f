"""``sqla-jobqueue bulk``, run as a user runs it: dry run, chunks, progress, Ctrl-C, bad
input; and a bulk cancel of 100,000 jobs while two real worker processes run them."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus
from tests.helpers import wait_for
from tests.reliability.conftest import reap, spawner
from tests.reliability.worker_process import effects

from .running import CliRunner, assert_one_line_error, cli_command, running


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def by_status(engine: Engine) -> Counter[str]:
    with engine.connect() as connection:
        rows = connection.execute(select(Job.status, func.count()).group_by(Job.status))
        return Counter({JobStatus(status).value: int(n) for status, n in rows})


def enqueue(factory: sessionmaker[Session], *jobs: dict[str, Any]) -> list[uuid.UUID]:
    with factory.begin() as session:
        return JobQueue(session).enqueue_many(list(jobs))


def fail(factory: sessionmaker[Session], job_type: str, error: str, n: int) -> None:
    """``n`` jobs of ``job_type`` that ended failed with ``error``."""
    enqueue(factory, *[{"job_type": job_type, "max_attempts": 1}] * n)
    with factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        for job in queue.claim([job_type], batch_size=n):
            queue.fail(job, error)


def test_dry_run_counts_and_the_run_cancels_as_many_in_chunks(
    cli: CliRunner, session_factory: sessionmaker[Session], engine: Engine
) -> None:
    enqueue(session_factory, *[{"job_type": "email"}] * 25, *[{"job_type": "sms"}] * 3)
    dry = ok_json(cli("bulk", "cancel", "--type", "email", "--dry-run", "--json"))
    assert dry == {"action": "cancel", "dry_run": True, "matched": 25}
    human = cli("bulk", "cancel", "--type", "email", "--dry-run")
    assert human.returncode == 0, human.stderr
    assert human.stdout == (
        "25 jobs would be cancelled (waiting, pending, claimed or running; of type email); "
        "nothing was changed.\n"
    )
    assert by_status(engine) == {"pending": 28}

    done = ok_json(cli("bulk", "cancel", "--type", "email", "--chunk-size", "10", "--json"))
    assert done == {
        "action": "cancel",
        "dry_run": False,
        "matched": 25,
        "changed": 25,
        "chunks": [10, 10, 5],
        "interrupted": False,
    }
    assert by_status(engine) == {"cancelled": 25, "pending": 3}

    human = cli("bulk", "cancel", "--type", "sms,email", "--chunk-size", "2")
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines() == [
        "3 jobs to be cancelled, in chunks of at most 2.",
        "  2 in this chunk, 2 of 3 so far",
        "  1 in this chunk, 3 of 3 so far",
        "3 jobs cancelled in 2 chunks.",
    ]


def test_retry_reprioritize_and_delete_by_filter(
    cli: CliRunner, session_factory: sessionmaker[Session], engine: Engine
) -> None:
    fail(session_factory, "feed", "HTTPError: 503 Service Unavailable", 4)
    fail(session_factory, "feed", "ValueError: bad row", 2)
    with engine.begin() as connection:
        connection.execute(text("UPDATE jobs SET created_at = created_at - interval '3 hours'"))
    fail(session_factory, "feed", "HTTPError: 503 again", 1)

    args = ("--error-contains", "http", "--older-than", "2h")
    assert ok_json(cli("bulk", "retry", *args, "--dry-run", "--json"))["matched"] == 4
    assert ok_json(cli("bulk", "retry", *args, "--json"))["changed"] == 4
    assert by_status(engine) == {"pending": 4, "failed": 3}

    moved = ok_json(cli("bulk", "reprioritize", "--priority", "explicit", "--all", "--json"))
    assert (moved["matched"], moved["changed"]) == (4, 4)
    again = ok_json(cli("bulk", "reprioritize", "--priority", "150", "--type", "feed", "--json"))
    assert (again["matched"], again["changed"], again["chunks"]) == (0, 0, [])
    with engine.connect() as connection:
        priorities = connection.execute(
            text("SELECT DISTINCT priority FROM jobs WHERE status = 'pending'")
        ).scalars()
        assert list(priorities) == [150]

    deleted = cli("bulk", "delete", "--status", "failed", "--chunk-size", "1")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines()[-1] == "3 jobs deleted in 3 chunks."
    assert by_status(engine) == {"pending": 4}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cancel",), "no filter given, so cancel would change every waiting, pending, claimed or"),
        (("delete", "--all", "--type", "a"), "--all is every job: give it alone"),
        (("retry", "--status", "pending"), "retry changes only failed jobs"),
        (
            ("delete", "--status", "running"),
            "delete changes only waiting, pending, completed, failed",
        ),
        (("cancel", "--status", "paused"), "unknown status 'paused'"),
        (("cancel", "--older-than", "soon"), "invalid duration 'soon'"),
        (("cancel", "--all", "--chunk-size", "0"), "must be at least 1"),
        (("reprioritize", "--all"), "Missing option '--priority'"),
        (("reprioritize", "--all", "--priority", "high"), "'high' is not a priority"),
        (("cancel", "--error-contains", ""), "error_contains must not be empty"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    cli: CliRunner, session_factory: sessionmaker[Session], engine: Engine,
    args: tuple[str, ...], message: str,
) -> None:  # fmt: skip
    enqueue(session_factory, {"job_type": "a"})
    line = assert_one_line_error(cli("bulk", *args), 2)
    assert message in line
    assert line.startswith(f"sqla-jobqueue bulk {args[0]}: error: ")
    assert by_status(engine) == {"pending": 1}


def test_a_chunk_gives_up_on_a_table_locked_by_a_migration(
    cli: CliRunner, session_factory: sessionmaker[Session], engine: Engine
) -> None:
    enqueue(session_factory, {"job_type": "a"})
    with engine.connect() as migration:
        migration.execute(text("LOCK TABLE jobs IN SHARE MODE"))
        line = assert_one_line_error(cli("bulk", "cancel", "--all"), 1)
        migration.rollback()
    assert "gave up after waiting 5.0s for a lock" in line and "(0 changed before it)" in line
    assert by_status(engine) == {"pending": 1}


def _blocked_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE jobs%'"
            )
        ).scalar_one()
        return bool(waiting)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_after_the_chunk_in_progress_and_twice_at_once(
    cli_env: dict[str, str], session_factory: sessionmaker[Session], engine: Engine,
    presses: int,
) -> None:  # fmt: skip
    enqueue(session_factory, *[{"job_type": "a"}] * 5)
    command = [*cli_command(), "bulk", "cancel", "--all", "--chunk-size", "2", "--json"]
    # The first chunk waits for the table lock; Ctrl-C is pressed while it waits.
    with engine.connect() as migration:
        migration.execute(text("LOCK TABLE jobs IN SHARE MODE"))
        with running(command, env=cli_env, interruptible=True) as bulk:
            wait_for(lambda: _blocked_on_a_lock(engine), what="the chunk waiting for the lock")
            bulk.send(signal.SIGINT)
            bulk.stderr_line("stopping after the chunk in progress")
            if presses == 2:
                bulk.send(signal.SIGINT)
            migration.rollback()
            returncode = bulk.process.wait(30)
            stdout, stderr = bulk.output()
    assert returncode == 130, (stdout, stderr)
    if presses == 1:
        report = json.loads(stdout)
        assert (report["changed"], report["chunks"], report["interrupted"]) == (2, [2], True)
        assert "interrupted after a committed chunk; 2 jobs cancelled" in stderr
        assert by_status(engine) == {"cancelled": 2, "pending": 3}
    else:
        assert stdout == ""
        assert stderr.strip().endswith("interrupted")
        assert by_status(engine) == {"pending": 5}, "the chunk in progress was rolled back"


@pytest.mark.slow
@pytest.mark.usefixtures("cli")
def test_bulk_cancel_of_100000_jobs_while_two_worker_processes_run_them(
    cli: CliRunner, database_url: URL, engine: Engine, session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Every job ends completed (a worker ran it before the cancel reached it) or
    cancelled; none is lost, none is left running, a cancelled job's effect is never
    committed, and no chunk changed more than its size."""
    effects.metadata.create_all(engine)
    total, chunk = 100_000, 10_000
    ids = enqueue(session_factory, *[{"job_type": "effect", "data": {}}] * total)
    assert len(set(ids)) == total
    spawn, started = spawner(database_url, tmp_path)
    try:
        for _ in range(2):
            spawn("--concurrency", "4", "--heartbeat", "0.2", "--stale", "5")
        wait_for(lambda: by_status(engine)["completed"] >= 500, what="both workers running jobs")
        report = ok_json(
            cli("bulk", "cancel", "--type", "effect", "--chunk-size", str(chunk), "--json")
        )
        # What the workers held when the cancel passed finishes; nothing is claimable now.
        wait_for(
            lambda: by_status(engine)["claimed"] + by_status(engine)["running"] == 0,
            what="the held jobs to finish",
        )
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            assert process.wait(60) == 0
    finally:
        reap(started, tmp_path)
    counts = by_status(engine)
    assert set(counts) == {"completed", "cancelled"}, counts
    assert counts["completed"] + counts["cancelled"] == total, "no job lost"
    assert counts["completed"] >= 500, "the workers ran jobs before the cancel reached them"
    assert report["changed"] == counts["cancelled"]
    assert report["matched"] <= total - 500
    assert all(0 < size <= chunk for size in report["chunks"]), report["chunks"]
    assert len(report["chunks"]) >= -(-counts["cancelled"] // chunk)
    with engine.connect() as connection:
        done = set(
            connection.execute(select(Job.id).where(Job.status == JobStatus.COMPLETED)).scalars()
        )
        effected = list(connection.execute(select(effects.c.job_id)).scalars())
    assert len(effected) == len(set(effected)), "no job ran to completion twice"
    assert set(effected) == done, "exactly the completed jobs committed their effect"
