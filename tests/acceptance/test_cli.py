"""The operator commands, run as a user runs them: happy paths and bad input."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus

from .running import CliRunner, assert_one_line_error, base_environment, run_cli, url_text


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result
    return json.loads(result.stdout)


def enqueue(cli: CliRunner, *args: str) -> dict[str, object]:
    job = ok_json(cli("enqueue", *args, "--json"))
    assert isinstance(job, dict)
    return job


def test_enqueue_show_and_list(cli: CliRunner) -> None:
    first = enqueue(cli, "send_receipt", "--data", '{"order_id": 7}', "--priority", "explicit")
    later = enqueue(cli, "nightly", "--run-at", "10m", "--unique-key", "n-1", "--max-attempts", "5")
    assert first["status"] == "pending" and first["priority"] == 150
    assert first["data"] == {"order_id": 7}
    assert later["max_attempts"] == 5 and later["unique_key"] == "n-1"
    again = enqueue(cli, "nightly", "--unique-key", "n-1")
    assert again["id"] == later["id"], "a live unique_key returns the existing job"

    shown = ok_json(cli("show", str(first["id"]), "--json"))
    assert shown == first

    listed = ok_json(cli("list", "--type", "send_receipt", "--status", "pending", "--json"))
    assert [job["id"] for job in listed] == [first["id"]]
    both = ok_json(cli("list", "--json", "--limit", "1"))
    assert [job["id"] for job in both] == [later["id"]]

    human = cli("list")
    assert human.returncode == 0, human.stderr
    assert str(first["id"]) in human.stdout and "send_receipt" in human.stdout
    human = cli("show", str(first["id"]))
    assert human.returncode == 0, human.stderr
    assert '{"order_id": 7}' in human.stdout and "send_receipt" in human.stdout

    plain = cli("enqueue", "hello")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("Enqueued ") and "hello" in plain.stdout


def test_status_counts_throughput_and_stale(
    cli: CliRunner, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(4):
        enqueue(cli, "a")
    enqueue(cli, "b", "--priority", "backfill")
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w-1")
        claimed = queue.claim(["a"], batch_size=3)
        queue.complete(claimed[0], {"ok": True})
        queue.complete(claimed[2], {"ok": True})
        queue.start(claimed[1])
        session.execute(
            text("UPDATE jobs SET heartbeat_at = now() - interval '10 minutes' WHERE id = :id"),
            {"id": claimed[1].id},
        )
        # Completion times set apart from the wall clock, so the count of the last minute does
        # not depend on how soon the command runs: one well inside it (ahead of the clock),
        # one well before it.
        for job, moment in ((claimed[0], "now() + interval '1 hour'"),
                            (claimed[2], "now() - interval '2 minutes'")):  # fmt: skip
            session.execute(
                text(f"UPDATE jobs SET completed_at = {moment} WHERE id = :id"), {"id": job.id}
            )

    report = ok_json(cli("status", "--json"))
    assert isinstance(report, dict)
    assert report["counts"] == {
        "a": {"pending": 1, "completed": 2, "running": 1},
        "b": {"pending": 1},
    }
    assert report["totals"]["pending"] == 2
    assert report["last_minute"] == {"completed": 1, "failed": 0}
    assert report["stale"] == 1
    assert report["oldest_pending_age_seconds"] >= 0

    fresh = ok_json(cli("status", "--json", "--stale-after", "1h"))
    assert fresh["stale"] == 0

    human = cli("status")
    assert human.returncode == 0, human.stderr
    assert "Jobs by type and state" in human.stdout
    assert "Stale (no heartbeat for 1m00s): 1" in human.stdout


def test_cancel_and_retry(cli: CliRunner, session_factory: sessionmaker[Session]) -> None:
    job = enqueue(cli, "doomed", "--max-attempts", "1")
    job_id = str(job["id"])

    refused = cli("retry", job_id)
    line = assert_one_line_error(refused, 1)
    assert "it is 'pending'" in line and "retry needs 'failed'" in line

    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w-1")
        (claimed,) = queue.claim(["doomed"])
        queue.start(claimed)
        queue.fail(claimed, "boom")
    failed = ok_json(cli("show", job_id, "--json"))
    assert failed["status"] == "failed" and failed["last_error"] == "boom"

    retried = ok_json(cli("retry", job_id, "--json"))
    assert retried["status"] == "pending" and retried["attempts"] == 0

    human = cli("cancel", job_id)
    assert human.returncode == 0, human.stderr
    assert f"Job {job_id} (doomed) is now cancelled." in human.stdout

    line = assert_one_line_error(cli("cancel", job_id), 1)
    assert "it is 'cancelled'" in line


def test_unknown_job_id(cli: CliRunner) -> None:
    missing = str(uuid.uuid4())
    for command in ("show", "cancel", "retry"):
        line = assert_one_line_error(cli(command, missing), 1)
        assert f"no job with id {missing}" in line


def test_recover_returns_stale_jobs(cli: CliRunner, session_factory: sessionmaker[Session]) -> None:
    job = enqueue(cli, "slow")
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="dead-worker")
        (claimed,) = queue.claim(["slow"])
        queue.start(claimed)
        session.execute(
            text("UPDATE jobs SET heartbeat_at = now() - interval '10 minutes' WHERE id = :id"),
            {"id": claimed.id},
        )
    assert ok_json(cli("recover", "--timeout", "15m", "--json"))["recovered"] == 0
    assert ok_json(cli("recover", "--timeout", "5m", "--json"))["recovered"] == 1
    shown = ok_json(cli("show", str(job["id"]), "--json"))
    assert shown["status"] == "pending" and shown["worker_id"] is None
    human = cli("recover")
    assert human.returncode == 0 and "Recovered 0 jobs" in human.stdout


def test_prune_deletes_old_finished_jobs(
    cli: CliRunner, session_factory: sessionmaker[Session]
) -> None:
    old, recent = enqueue(cli, "x"), enqueue(cli, "x")
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        for job in queue.claim(["x"], batch_size=2):
            queue.complete(job)
        session.execute(
            text("UPDATE jobs SET completed_at = now() - interval '8 days' WHERE id = :id"),
            {"id": uuid.UUID(str(old["id"]))},
        )
    assert ok_json(cli("prune", "--older-than", "7d", "--json"))["deleted"] == 1
    assert_one_line_error(cli("show", str(old["id"])), 1)
    assert ok_json(cli("show", str(recent["id"]), "--json"))["status"] == "completed"
    human = cli("prune", "--older-than", "1w", "--limit", "10")
    assert human.returncode == 0 and "Deleted 0 finished jobs" in human.stdout


def test_prune_deletes_in_short_transactions_oldest_first(cli: CliRunner, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (job_type, status, attempts, completed_at) "
                "SELECT 'x', 'completed', 1, now() - interval '8 days' - g * interval '1 hour' "
                "FROM generate_series(1, 25) AS g"
            )
        )
    first = ok_json(
        cli("prune", "--older-than", "7d", "--batch-size", "10", "--limit", "22", "--json")
    )
    assert (first["deleted"], first["transactions"]) == (22, 3)
    with engine.connect() as connection:
        hours = connection.execute(
            text("SELECT round(extract(epoch FROM now() - completed_at) / 3600) - 192 FROM jobs")
        ).scalars()
        assert sorted(hours) == [1, 2, 3], "the oldest went first"
    human = cli("prune", "--older-than", "7d", "--batch-size", "10")
    assert human.returncode == 0 and "Deleted 3 finished jobs" in human.stdout
    assert "in 1 transaction." in human.stdout


def test_prune_gives_up_on_a_table_locked_by_a_migration(cli: CliRunner, engine: Engine) -> None:
    with engine.connect() as migration:
        migration.execute(text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
        line = assert_one_line_error(cli("prune", "--older-than", "7d"), 1)
        migration.rollback()
    assert "gave up after waiting 5.0s for a lock" in line and "run the command again" in line


def test_migrate_an_empty_database(empty_database_url: URL) -> None:
    env = base_environment(DATABASE_URL=url_text(empty_database_url))
    before = run_cli("status", env=env)
    line = assert_one_line_error(before, 1)
    assert "sqla-jobqueue migrate" in line

    migrated = run_cli("migrate", "--json", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["revision"]
    again = run_cli("migrate", env=env)
    assert again.returncode == 0 and "(head)" in again.stdout
    assert run_cli("status", "--json", env=env).returncode == 0


def test_init_alembic(tmp_path: Path) -> None:
    env = base_environment()
    made = run_cli("init-alembic", "migrations", "--json", env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "alembic.ini").is_file()
    assert (tmp_path / "migrations" / "env.py").is_file()
    assert list((tmp_path / "migrations" / "versions").glob("*.py"))
    line = assert_one_line_error(run_cli("init-alembic", "migrations", env=env, cwd=tmp_path), 2)
    assert "exists" in line
    (tmp_path / "a_file").write_text("")
    line = assert_one_line_error(run_cli("init-alembic", "a_file", env=env, cwd=tmp_path), 2)
    assert "Not a directory" in line


UNCONTACTED = base_environment(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere")
"""DATABASE_URL names a port where no server listens: a command that connects fails."""


def test_unreachable_database() -> None:
    line = assert_one_line_error(run_cli("status", env=UNCONTACTED), 1)
    assert "cannot reach the database" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "Missing command"),
        (["bogus"], "No such command 'bogus'"),
        (["status", "--stale-after", "soon"], "invalid duration 'soon'"),
        (["watch", "--interval", "0s"], "must be more than zero"),
        (["watch", "--count", "0"], "must be at least 1"),
        (["list", "--status", "done"], "unknown status 'done'"),
        (["list", "--limit", "many"], "'many' is not a whole number"),
        (["show"], "Missing argument 'ID'"),
        (["show", "42"], "'42' is not a job id"),
        (["enqueue"], "Missing argument 'TYPE'"),
        (["enqueue", "x", "--data", "{oops"], "not valid JSON"),
        (["enqueue", "x", "--data", "[1, 2]"], "must be a JSON object"),
        (["enqueue", "x", "--data", '{"a": ' + "[" * 5000 + "]" * 5000 + "}"], "nests deeper"),
        (["enqueue", "x", "--data", '{"a": ' + "[" * 200 + "]" * 200 + "}"], "more than 100"),
        (["enqueue", "x", "--priority", "urgent"], "'urgent' is not a priority"),
        (["enqueue", "x", "--priority", "99999999999"], "outside the int32 range"),
        (["enqueue", "x", "--run-at", "2030-01-01T09:00:00"], "has no time zone"),
        (["enqueue", "x", "--run-at", "tomorrow"], "neither a delay"),
        (["enqueue", ""], "job_type must not be empty"),
        (["enqueue", "t" * 51], "job_type"),
        (["cancel", "not-a-uuid"], "is not a job id"),
        (["retry"], "Missing argument 'ID'"),
        (["recover", "--timeout", "5 minutes"], "invalid duration"),
        (["prune"], "Missing option '--older-than'"),
        (["prune", "--older-than", "-7d"], "invalid duration '-7d'"),
        (["prune", "--older-than", "100000000d"], "at most 36600d (100 years)"),
        (["prune", "--older-than", "9" * 400 + "w"], "at most 36600d (100 years)"),
        (["recover", "--timeout", "36601d"], "at most 36600d (100 years)"),
        (["status", "--stale-after", "5300w"], "at most 36600d (100 years)"),
        (["show", "abc123"], "at least 8 of its hex digits"),
        (["cancel", "0123abcz"], "is not a job id"),
        (["status", "--app", "x:engine", "--database-url", "postgresql://h/d"], "only one"),
        (["status", "--database-url", "nope://x"], "invalid database URL"),
        (["status", "--model", "no_such_module:Job"], "cannot import 'no_such_module'"),
        (["status", "--model", "sqla_jobqueue:Priority"], "not a mapped JobMixin class"),
        (["worker"], "Missing argument 'TARGET'"),
        (["worker", "no_such_module:registry"], "no_such_module"),
        (["worker", "sqla_jobqueue.demo:registry", "--concurrency", "0"], "at least 1"),
        (["demo", "--jobs", "0"], "must be at least 1"),
        (["init-alembic"], "Missing argument 'DIR'"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(args: list[str], expected: str) -> None:
    # Bad arguments are refused before any connection: the server named is never contacted
    # (if it were, the error would be "cannot reach the database", exit code 1).
    line = assert_one_line_error(run_cli(*args, env=UNCONTACTED), 2)
    assert expected in line


BAD_MODULE = """
raise RuntimeError("the settings module needs SECRET_KEY")
"""


@pytest.mark.parametrize(
    "args",
    [
        ["worker", "badmodule:registry"],
        ["status", "--model", "badmodule:Job"],
        ["enqueue", "x", "--model", "badmodule:Job"],
    ],
)
def test_a_module_that_raises_on_import_gets_one_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "badmodule.py").write_text(BAD_MODULE)
    line = assert_one_line_error(run_cli(*args, env=UNCONTACTED, cwd=tmp_path), 2)
    assert "badmodule" in line
    assert "RuntimeError: the settings module needs SECRET_KEY" in line


WORKER_TARGET = ("worker", "sqla_jobqueue.demo:registry")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["enqueue", "x", "--priority", "99999999999"], "outside the int32 range"),
        (["enqueue", "t" * 51], "job_type is 51 characters long"),
        (["enqueue", "x", "--data", '{"ratio": NaN}'], "NaN is not a JSON number"),
        (["enqueue", "x", "--data", '{"big": "' + "x" * 70_000 + '"}'], "over the limit"),
        (["enqueue", "x", "--unique-key", "k" * 256], "unique_key is 256 characters"),
        (["enqueue", "x", "--run-at", "40000d"], "at most 36600d (100 years)"),
        (
            [*WORKER_TARGET, "--stale-timeout", "20s"],
            "at least three heartbeat intervals",
        ),
        (
            [*WORKER_TARGET, "--heartbeat-interval", "10s", "--stale-timeout", "29s"],
            "at least three heartbeat intervals",
        ),
        (["worker", "sqla_jobqueue.demo:DEMO_TYPES"], "not a Registry"),
    ],
)
def test_bad_arguments_never_start_the_embedded_server(
    tmp_path: Path, embedded_env: dict[str, str], args: list[str], expected: str
) -> None:
    data_dir = tmp_path / "pg"
    line = assert_one_line_error(run_cli(*args, "--data-dir", str(data_dir), env=embedded_env), 2)
    assert expected in line
    assert not data_dir.exists(), "the data directory was initialised before the check"
    assert not (tmp_path / "xdg").exists()


def test_watch_shows_running_jobs(
    cli: CliRunner, session_factory: sessionmaker[Session], engine: Engine
) -> None:
    job = enqueue(cli, "resize", "--priority", "explicit")
    enqueue(cli, "resize")
    with session_factory.begin() as session:
        queue = JobQueue(session, Job, worker_id="host-7:1234:cafe")
        (held,) = queue.claim(["resize"], batch_size=1)
        assert str(held.id) == job["id"]
        queue.start(held)
        queue.update_progress(held, 40, stage="resizing images")

    frames = cli("watch", "--count", "3", "--interval", "200ms")
    assert frames.returncode == 0, frames.stderr
    assert frames.stdout.count("resizing images") == 3
    assert frames.stdout.count("40%") == 3
    assert "host-7:1234:cafe" in frames.stdout
    assert "pending 1" in frames.stdout and "running 1" in frames.stdout

    lines = cli("watch", "--count", "2", "--interval", "100ms", "--json").stdout.splitlines()
    assert len(lines) == 2
    snapshot = json.loads(lines[-1])
    assert snapshot["totals"]["running"] == 1
    (running,) = snapshot["running"]
    assert running["id"] == job["id"]
    assert running["stage"] == "resizing images" and running["progress"] == 40
    assert running["status"] == JobStatus.RUNNING.value

    with session_factory.begin() as session:
        JobQueue(session, Job, worker_id="host-7:1234:cafe").complete(held.id)
    quiet = cli("watch", "--count", "1", "--type", "resize")
    assert quiet.returncode == 0 and "no job is running" in quiet.stdout


def test_migrate_refuses_an_applications_own_alembic_history(empty_database_url: URL) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE alembic_version (version_num varchar(32))"))
            connection.execute(text("INSERT INTO alembic_version VALUES ('app0001')"))
    finally:
        engine.dispose()
    env = base_environment(DATABASE_URL=url_text(empty_database_url))
    line = assert_one_line_error(run_cli("migrate", env=env), 1)
    assert "'app0001'" in line and "alembic upgrade head" in line


# ------------------------------------------------------------------ issue 12


def backdate_running(session_factory: sessionmaker[Session], job_type: str, age: str) -> str:
    """Claim and start the one job of ``job_type`` and make its heartbeat ``age`` old."""
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="dead-worker")
        (claimed,) = queue.claim([job_type])
        queue.start(claimed)
        session.execute(
            text(f"UPDATE jobs SET heartbeat_at = now() - interval '{age}' WHERE id = :id"),
            {"id": claimed.id},
        )
        return str(claimed.id)


def test_status_suggests_the_recover_that_returns_its_stale_jobs(
    cli: CliRunner, session_factory: sessionmaker[Session]
) -> None:
    enqueue(cli, "slow")
    # Stale for --stale-after 2s, not for recover's default of 1m.
    backdate_running(session_factory, "slow", "30 seconds")
    human = cli("status", "--stale-after", "2s")
    assert human.returncode == 0, human.stderr
    suggested = human.stdout.split("`")[1]
    assert suggested == "sqla-jobqueue recover --timeout 2s", human.stdout
    recovered = cli(*suggested.split()[1:], "--json")
    assert ok_json(recovered)["recovered"] == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("mysql://app:s3cret@db.internal/app", "mysql://app:***@db.internal/app"),
        ("mssql+pyodbc://app@dsn", "mssql+pyodbc://app@dsn"),
    ],
)
@pytest.mark.parametrize("command", ["status", "migrate", "list"])
def test_a_url_of_another_database_is_refused_before_use(
    tmp_path: Path, command: str, url: str, shown: str
) -> None:
    for args, env in (
        ([command, "--database-url", url], base_environment()),
        ([command], base_environment(DATABASE_URL=url)),
    ):
        line = assert_one_line_error(run_cli(*args, env=env, cwd=tmp_path), 2)
        assert f"'{shown}' is not a PostgreSQL URL" in line
        assert "s3cret" not in line
        source = "--database-url" if "--database-url" in args else "DATABASE_URL"
        assert f"from {source}" in line
    assert not list(tmp_path.iterdir()), "nothing is written for a refused URL"


def test_the_url_of_an_async_driver_is_used_through_psycopg(
    cli_env: dict[str, str], database_url: URL
) -> None:
    for driver in ("asyncpg", "psycopg_async"):
        url = url_text(database_url.set(drivername=f"postgresql+{driver}"))
        report = run_cli("status", "--json", "--database-url", url, env=base_environment())
        assert report.returncode == 0, report.stderr


def test_status_on_a_table_it_cannot_find_points_at_model(empty_database_url: URL) -> None:
    env = base_environment(DATABASE_URL=url_text(empty_database_url))
    line = assert_one_line_error(run_cli("status", env=env), 1)
    assert 'relation "jobs" does not exist' in line
    assert "--model MODULE:CLASS" in line and "sqla-jobqueue migrate" in line
    line = assert_one_line_error(run_cli("status", "--model", "sqla_jobqueue:Job", env=env), 1)
    assert "--model" not in line, "no hint at --model when it was given"


def test_worker_on_a_table_it_cannot_find_points_at_model(empty_database_url: URL) -> None:
    env = base_environment(DATABASE_URL=url_text(empty_database_url))
    result = run_cli("worker", "sqla_jobqueue.demo:registry", env=env, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sqla-jobqueue worker: error:")
    assert "--model MODULE:CLASS" in last and "sqla-jobqueue migrate" in last


TRACEBACK = """Traceback (most recent call last):
  File "/srv/app/jobs.py", line 12, in sync_feed
    response = client.get(url, timeout=5)
               ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/app/client.py", line 40, in get
    raise FeedError(f"feed {name} answered {status}")
FeedError: feed 7 answered 500
"""


def test_list_shows_the_exception_of_a_failed_job_at_120_columns(
    cli_env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    ids = [str(enqueue_direct(session_factory, "sync_feed")) for _ in range(3)]
    with session_factory.begin() as session:
        queue = JobQueue(session, worker_id="w")
        for job in queue.claim(["sync_feed"], batch_size=3):
            queue.start(job)
            queue.fail(job, TRACEBACK)
    env = {**cli_env, "COLUMNS": "120"}
    result = run_cli("list", "--status", "failed", env=env)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 120
    assert result.stdout.count("FeedError: feed 7 answered 500") == 3, result.stdout
    assert "Traceback" not in result.stdout
    for job_id in ids:
        assert job_id[-8:] in result.stdout
    shown = run_cli("show", ids[0], env=env)
    assert "Traceback (most recent call last)" in shown.stdout, "show keeps the traceback"


def enqueue_direct(session_factory: sessionmaker[Session], job_type: str) -> uuid.UUID:
    with session_factory.begin() as session:
        return JobQueue(session).enqueue(job_type, max_attempts=1).id


def test_ids_may_be_given_by_their_first_or_last_digits(
    cli: CliRunner, session_factory: sessionmaker[Session]
) -> None:
    first, second = enqueue(cli, "resize"), enqueue(cli, "resize")
    first_id, second_id = str(first["id"]), str(second["id"])
    # The last 8 hex digits, as watch shows them.
    assert ok_json(cli("show", first_id[-8:], "--json"))["id"] == first_id
    cancelled = ok_json(cli("cancel", second_id[-8:].upper(), "--json"))
    assert cancelled["id"] == second_id and cancelled["status"] == "cancelled"
    prefix = first_id[:23]
    assert ok_json(cli("show", prefix, "--json"))["id"] == first_id

    # Two ids that begin alike: their first 8 digits name both, their last 8 one each.
    twins = ["abcdef01-0000-7000-8000-000000000001", "abcdef01-0000-7000-8000-000000000002"]
    with session_factory.begin() as session:
        for old, new in zip((first_id, second_id), twins, strict=True):
            session.execute(
                text("UPDATE jobs SET id = :new WHERE id = :old"), {"old": old, "new": new}
            )
    for command in ("show", "cancel", "retry"):
        line = assert_one_line_error(cli(command, "abcdef01"), 2)
        assert "'abcdef01' matches more than one job" in line and twins[0] in line
        line = assert_one_line_error(cli(command, "0123abcd"), 1)
        assert "no job id begins or ends with '0123abcd'" in line
    assert ok_json(cli("show", "00000002", "--json"))["id"] == twins[1]

    # What watch prints is what show takes.
    backdate_running(session_factory, "resize", "1 second")
    watched = cli("watch", "--count", "1")
    assert watched.returncode == 0 and "000000000001"[-8:] in watched.stdout
    assert ok_json(cli("show", "00000001", "--json"))["status"] == "running"


def test_a_duplicate_unique_key_says_the_live_job_was_returned(cli: CliRunner) -> None:
    new = cli("enqueue", "nightly", "--unique-key", "n-1")
    assert new.returncode == 0 and new.stdout.startswith("Enqueued "), new.stdout
    job_id = new.stdout.split()[1]
    again = cli("enqueue", "nightly", "--unique-key", "n-1")
    assert again.returncode == 0, again.stderr
    assert not again.stdout.startswith("Enqueued")
    assert f"A live job with unique key 'n-1' already exists: {job_id}" in again.stdout
    assert "nothing was enqueued" in again.stdout
    as_json = cli("enqueue", "nightly", "--unique-key", "n-1", "--json")
    assert json.loads(as_json.stdout)["id"] == job_id
    assert "already exists" in as_json.stderr
    other = cli("enqueue", "nightly", "--unique-key", "n-2", "--json")
    assert other.returncode == 0 and other.stderr == ""
