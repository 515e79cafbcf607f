"""The archive of finished jobs: the archiver moves due jobs into day partitions, leaves
the rest, drops expired days, skips locked rows, and says so when its role may not make
partitions; and both kinds of worker run it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import DeclarativeBase

from sqla_jobqueue import Job, JobArchiveMixin, Registry
from sqla_jobqueue.errors import InvalidJobError
from sqla_jobqueue.maintenance import Archiver, ArchiverConfig, try_lock
from sqla_jobqueue.worker import WorkerSettings
from tests.helpers import StartWorker, job_table, wait_for


class ArchiveBase(DeclarativeBase):
    pass


class JobArchive(JobArchiveMixin, ArchiveBase):
    __tablename__ = "jobs_archive"


@pytest.fixture
def archive(engine: Engine) -> type[JobArchive]:
    ArchiveBase.metadata.create_all(engine)
    return JobArchive


def finished(engine: Engine, hours_ago: range, status: str = "completed") -> None:
    """Jobs that finished so many hours ago, one per hour of the range."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (job_type, status, attempts, data, result, completed_at) "
                "SELECT 'report', :status, 1, jsonb_build_object('h', h), '{\"ok\": true}', "
                "now() - h * interval '1 hour' FROM unnest(CAST(:hours AS int[])) AS h"
            ),
            {"status": status, "hours": list(hours_ago)},
        )


def hours_left(engine: Engine, table: str) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(f"SELECT (data ->> 'h')::int FROM {table} WHERE data ? 'h' ORDER BY 1")
            ).scalars()
        )


def archiver(**config: object) -> Archiver:
    return Archiver(Job, ArchiverConfig(JobArchive, **config))  # type: ignore[arg-type]


def test_due_jobs_move_into_the_partition_of_their_day_and_the_rest_stay(
    engine: Engine, archive: type[JobArchive]
) -> None:
    finished(engine, range(0, 24 * 9))
    finished(engine, range(30, 32), status="failed")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (job_type) VALUES ('pending one')"))

    moved = archiver(after=timedelta(hours=2), retention=timedelta(days=7), batch_limit=40)
    assert moved.run_once(engine) == (168 - 2) + 2  # in five transactions of at most 40

    assert hours_left(engine, "jobs") == [0, 1, *range(168, 24 * 9)]
    assert hours_left(engine, "jobs_archive") == sorted([*range(2, 168), 30, 31])
    with engine.connect() as connection:
        misplaced = connection.execute(
            text(
                "SELECT count(*) FROM jobs_archive WHERE tableoid::regclass::text <> "
                "'jobs_archive_p' || to_char(completed_at AT TIME ZONE 'UTC', 'YYYYMMDD')"
            )
        ).scalar_one()
        tomorrow = connection.execute(
            text(
                "SELECT to_regclass('jobs_archive_p' || "
                "to_char((now() + interval '1 day') AT TIME ZONE 'UTC', 'YYYYMMDD'))"
            )
        ).scalar_one()
        row = connection.execute(
            text(
                "SELECT status, attempts, result FROM jobs_archive "
                "WHERE data ->> 'h' = '31' AND status = 'failed'"
            )
        ).one()
        pending = connection.execute(text("SELECT status FROM jobs WHERE data = '{}'")).scalar()
    assert misplaced == 0 and tomorrow is not None
    assert tuple(row) == ("failed", 1, {"ok": True}) and pending == "pending"
    assert moved.run_once(engine) == 0


def test_days_older_than_the_retention_are_dropped(
    engine: Engine, archive: type[JobArchive]
) -> None:
    finished(engine, range(24 * 10, 24 * 10 + 1))
    finished(engine, range(24 * 3, 24 * 3 + 1))
    assert archiver(after=timedelta(hours=1)).run_once(engine) == 2  # no retention: both
    assert archiver(after=timedelta(hours=1), retention=timedelta(days=7)).run_once(engine) == 0
    assert hours_left(engine, "jobs_archive") == [72], "the day ten days ago was dropped"
    with engine.connect() as connection:
        days = connection.execute(
            text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'jobs_archive'::regclass")
        ).scalar_one()
    assert days == 9, "every day from seven days ago (partly kept) to tomorrow"


def test_a_job_locked_by_another_transaction_waits_for_a_later_round(
    engine: Engine, archive: type[JobArchive]
) -> None:
    finished(engine, range(5, 8))
    with engine.connect() as other, other.begin():
        other.execute(text("SELECT id FROM jobs WHERE data ->> 'h' = '6' FOR UPDATE"))
        assert archiver(after=timedelta(hours=1)).run_once(engine) == 2
    assert archiver(after=timedelta(hours=1)).run_once(engine) == 1


def test_one_archiving_round_at_a_time(engine: Engine, archive: type[JobArchive]) -> None:
    finished(engine, range(5, 8))
    with engine.connect() as other, other.begin():
        assert try_lock(other, "archiver", job_table())
        assert archiver(after=timedelta(hours=1)).run_once(engine) is None
    assert archiver(after=timedelta(hours=1)).run_once(engine) == 3


@pytest.fixture
def worker_role(engine: Engine, database_url: URL) -> Iterator[Engine]:
    """A role that may move jobs (``DELETE`` on jobs, ``INSERT`` into the archive) but does
    not own the archive."""
    name = f"sqjq_archiver_{uuid.uuid4().hex[:10]}"
    with engine.begin() as connection:
        connection.execute(text(f'CREATE ROLE "{name}" LOGIN'))
        connection.execute(text(f'GRANT SELECT, DELETE ON jobs TO "{name}"'))
        connection.execute(text(f'GRANT SELECT, INSERT ON jobs_archive TO "{name}"'))
    role = create_engine(database_url.set(username=name))
    yield role
    role.dispose()
    with engine.begin() as connection:
        connection.execute(text(f'DROP OWNED BY "{name}"'))
        connection.execute(text(f'DROP ROLE "{name}"'))


def test_a_role_that_may_not_make_partitions_is_told_what_to_do(
    engine: Engine,
    archive: type[JobArchive],
    worker_role: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished(engine, range(5, 8))
    with caplog.at_level(logging.WARNING, "sqla_jobqueue.maintenance"):
        assert archiver(after=timedelta(hours=1)).run_once(worker_role) == 0
    (warning,) = [r.getMessage() for r in caplog.records if "may not create" in r.getMessage()]
    assert "member of the archive's owner" in warning and "no job is archived" in warning
    assert hours_left(engine, "jobs") == [5, 6, 7]

    with engine.begin() as connection:  # the owner makes the workers' role a member
        owner = connection.execute(text("SELECT current_user")).scalar_one()
        role = worker_role.url.username
        connection.execute(text(f'GRANT "{owner}" TO "{role}"'))
    assert archiver(after=timedelta(hours=1)).run_once(worker_role) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"archive": Job},
        {"after": timedelta(0)},
        {"after": timedelta(days=8), "retention": timedelta(days=7)},
        {"batch_limit": 0},
    ],
)
def test_archiver_configs_are_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidJobError):
        ArchiverConfig(**{"archive": JobArchive, **kwargs})  # type: ignore[arg-type]


def test_a_worker_archives_finished_jobs_and_keeps_live_and_recent_ones(
    start_worker: StartWorker, engine: Engine, archive: type[JobArchive]
) -> None:
    """``archive=`` on either worker: its archiver moves the jobs that finished before
    ``archive_after`` and leaves the job it has just run."""
    finished(engine, range(2, 5))
    registry = Registry()
    registry.register("x", lambda ctx: None)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (job_type) VALUES ('x')"))

    def counts() -> tuple[int, int]:
        with engine.connect() as connection:
            archived = connection.execute(text("SELECT count(*) FROM jobs_archive")).scalar_one()
            done = connection.execute(
                text("SELECT count(*) FROM jobs WHERE job_type = 'x' AND status = 'completed'")
            ).scalar_one()
        return int(archived), int(done)

    with start_worker(registry, archive=JobArchive, archive_after=timedelta(hours=1)):
        wait_for(lambda: counts() == (3, 1), what="three archived, x completed in place")
    assert hours_left(engine, "jobs") == []


def test_worker_settings_refuse_a_job_model_as_the_archive() -> None:
    registry = Registry()
    registry.register("x", lambda ctx: None)
    with pytest.raises(InvalidJobError, match="JobArchiveMixin"):
        WorkerSettings.check(registry, archive=Job)
    with pytest.raises(InvalidJobError, match="longer than archive_after"):
        WorkerSettings.check(
            registry, archive=JobArchive, archive_after=timedelta(days=8), retention=7 * 86400
        )
