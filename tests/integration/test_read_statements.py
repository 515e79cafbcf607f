"""The reads of the command line and the demo (``ReadStatements``), on real PostgreSQL: what
each returns, in which order, narrowed how, and that each is built once per shape.

Times are written into the rows (backdated from the database clock, or fixed), never
waited for.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Interval, func, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus
from sqla_jobqueue.statements import JobStatements, loading
from tests.helpers import job_table

TABLE = job_table()
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def statements() -> JobStatements:
    return JobStatements.of(TABLE)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction for the test, rolled back: the reads see the rows it wrote."""
    with session_factory() as session, session.begin():
        yield session
        session.rollback()


def ago(seconds: float) -> Any:
    """The database clock ``seconds`` ago."""
    return func.statement_timestamp() - literal(timedelta(seconds=seconds), Interval())


def put(
    session: Session,
    job_type: str = "t",
    status: JobStatus = JobStatus.PENDING,
    **columns: Any,
) -> uuid.UUID:
    """A job of ``job_type`` in ``status``, its other ``columns`` written as given."""
    job_id = JobQueue(session).enqueue(job_type).id
    values = {"status": status.value, **columns}
    session.execute(update(TABLE).where(TABLE.c.id == job_id).values(**values))
    written: uuid.UUID = values.get("id", job_id)
    return written


def run(session: Session, bound: Any) -> list[Any]:
    return list(session.execute(*bound).all())


def by_status(session: Session, bound: Any) -> dict[str, int]:
    return {JobStatus(status).value: int(count) for status, count in run(session, bound)}


# ------------------------------------------------------------------------------- newest


def test_newest_lists_the_newest_first_with_the_larger_id_first_on_a_tie(
    session: Session, statements: JobStatements
) -> None:
    oldest = put(session, created_at=ago(300))
    middle = put(session, created_at=ago(200))
    same = [put(session, created_at=T0 + timedelta(days=10000)) for _ in range(2)]
    tied = sorted(same, key=lambda job_id: str(job_id), reverse=True)
    newest = statements.newest(None, None, 10)
    listed = [job.id for job in session.scalars(*loading(Job, newest))]
    assert listed == [*tied, middle, oldest]
    assert [job.id for job in session.scalars(*loading(Job, statements.newest(None, None, 3)))] == [
        *tied,
        middle,
    ]


def test_newest_is_narrowed_to_the_given_types_and_statuses(
    session: Session, statements: JobStatements
) -> None:
    a_failed = put(session, "a", JobStatus.FAILED, created_at=ago(10))
    a_pending = put(session, "a", JobStatus.PENDING, created_at=ago(20))
    b_pending = put(session, "b", JobStatus.PENDING, created_at=ago(30))
    put(session, "a", JobStatus.COMPLETED, created_at=ago(5))
    put(session, "c", JobStatus.PENDING, created_at=ago(5))

    def ids(job_types: list[str] | None, statuses: list[JobStatus] | None) -> list[uuid.UUID]:
        bound = statements.newest(job_types, statuses, 20)
        return [job.id for job in session.scalars(*loading(Job, bound))]

    assert ids(["a", "b"], [JobStatus.PENDING, JobStatus.FAILED]) == [
        a_failed,
        a_pending,
        b_pending,
    ]
    assert ids(["a"], None)[1:] == [a_failed, a_pending]
    assert ids(None, [JobStatus.PENDING])[1:] == [a_pending, b_pending]
    assert ids([], None) == []


# ------------------------------------------------------------------------ ids_by_digits

IDS = [
    uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001"),
    uuid.UUID("aaaaaaaa-1111-4000-8000-0000000000ff"),
    uuid.UUID("12345678-0000-4000-8000-0000bbbbbbbb"),
    uuid.UUID("99999999-0000-4000-8000-000012345678"),
]


@pytest.mark.parametrize(
    ("digits", "limit", "expected"),
    [
        ("aaaaaaaa", 3, [IDS[0], IDS[1]]),
        ("aaaaaaaa0000", 3, [IDS[0]]),
        ("bbbbbbbb", 3, [IDS[2]]),
        ("000000000001", 3, [IDS[0]]),
        ("12345678", 3, [IDS[2], IDS[3]]),
        ("12345678", 1, [IDS[2]]),
        ("40008000", 3, []),
        ("ffffffff", 3, []),
    ],
    ids=["start", "longer", "end", "end-of-one", "start-and-end", "limit", "middle", "none"],
)
def test_ids_by_digits_finds_the_ids_that_begin_or_end_with_the_digits_in_order(
    session: Session, statements: JobStatements, digits: str, limit: int, expected: list[Any]
) -> None:
    for job_id in IDS:
        put(session, id=job_id)
    found = list(session.scalars(*statements.ids_by_digits(digits, limit)))
    assert found == expected


# ------------------------------------------------------------------------- written_here


def test_written_here_tells_the_transaction_that_wrote_the_row(
    session_factory: sessionmaker[Session], statements: JobStatements
) -> None:
    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("t", unique_key="k").id
        assert session.execute(*statements.written_here(job_id)).scalar_one() is True
    with session_factory.begin() as session:
        assert session.execute(*statements.written_here(job_id)).scalar_one() is False
        # enqueue returns the live job of its unique key without writing it
        assert JobQueue(session).enqueue("t", unique_key="k").id == job_id
        assert session.execute(*statements.written_here(job_id)).scalar_one() is False
        JobQueue(session).cancel(job_id)
        assert session.execute(*statements.written_here(job_id)).scalar_one() is True
        unknown = statements.written_here(uuid.uuid4())
        assert session.execute(*unknown).one_or_none() is None


# -------------------------------------------------------------------------- stale_count


def test_stale_count_counts_what_a_rescue_takes_back(
    session: Session, statements: JobStatements
) -> None:
    put(
        session, status=JobStatus.RUNNING, worker_id="w", claimed_at=ago(300), heartbeat_at=ago(120)
    )
    put(session, status=JobStatus.CLAIMED, worker_id="w", claimed_at=ago(120))
    put(session, status=JobStatus.RUNNING, worker_id="w", claimed_at=ago(300), heartbeat_at=ago(10))
    put(session, status=JobStatus.CLAIMED, worker_id="w", claimed_at=ago(120), heartbeat_at=ago(10))
    put(session, status=JobStatus.PENDING, claimed_at=ago(300), heartbeat_at=ago(300))
    put(session, status=JobStatus.COMPLETED, claimed_at=ago(300), heartbeat_at=ago(300))

    def stale(seconds: float) -> int:
        return int(
            session.execute(*statements.stale_count(timedelta(seconds=seconds))).scalar_one()
        )

    assert (stale(60), stale(200), stale(5)) == (2, 0, 4)
    assert JobQueue(session).recover_stale(timedelta(seconds=60)) == 2
    assert stale(60) == 0


# ----------------------------------------------------------- status_counts, finished_within


def test_status_counts_and_finished_within_are_narrowed_to_ids_and_types(
    session: Session, statements: JobStatements
) -> None:
    done = put(session, "a", JobStatus.COMPLETED, completed_at=ago(30))
    put(session, "a", JobStatus.FAILED, completed_at=ago(30))
    put(session, "a", JobStatus.COMPLETED, completed_at=ago(120))
    put(session, "b", JobStatus.CANCELLED, completed_at=ago(10))
    running = put(session, "b", JobStatus.RUNNING, worker_id="w", claimed_at=ago(5))
    minute = timedelta(minutes=1)

    assert by_status(session, statements.finished_within(minute)) == {"completed": 1, "failed": 1}
    assert by_status(session, statements.finished_within(timedelta(minutes=3))) == {
        "completed": 2,
        "failed": 1,
    }
    assert by_status(session, statements.finished_within(minute, ids=[done, running])) == {
        "completed": 1
    }
    assert by_status(session, statements.finished_within(minute, job_types=["b"])) == {}
    assert by_status(session, statements.finished_within(minute, ids=[])) == {}

    assert by_status(session, statements.status_counts()) == {
        "completed": 2,
        "failed": 1,
        "cancelled": 1,
        "running": 1,
    }
    assert by_status(session, statements.status_counts(job_types=["b"])) == {
        "cancelled": 1,
        "running": 1,
    }
    assert by_status(session, statements.status_counts(ids=[done, running], job_types=["a"])) == {
        "completed": 1
    }
    assert by_status(session, statements.status_counts(ids=[])) == {}


# ---------------------------------------------------------------------- held_jobs, clock


def test_held_jobs_lists_running_before_claimed_longest_first_with_elapsed_time(
    session: Session, statements: JobStatements
) -> None:
    later = put(session, status=JobStatus.RUNNING, worker_id="w", started_at=ago(10))
    claimed = put(session, status=JobStatus.CLAIMED, worker_id="w", claimed_at=ago(60))
    longest = put(session, status=JobStatus.RUNNING, worker_id="w", started_at=ago(30))
    put(session, "other", JobStatus.RUNNING, worker_id="w", started_at=ago(90))
    put(session, status=JobStatus.PENDING)
    put(session, status=JobStatus.COMPLETED, started_at=ago(100))

    rows = run(session, statements.held_jobs(10, job_types=["t"]))
    assert [row.id for row in rows] == [longest, later, claimed]
    started = {
        job_id: at
        for job_id, at in session.execute(
            select(TABLE.c.id, TABLE.c.started_at).where(TABLE.c.id.in_([longest, later]))
        )
    }
    for row in rows[:2]:
        assert row.elapsed == row.at - started[row.id]
    assert rows[2].elapsed is None
    assert JobStatus(rows[2].status) is JobStatus.CLAIMED
    assert [row.id for row in run(session, statements.held_jobs(2, job_types=["t"]))] == [
        longest,
        later,
    ]
    assert len(run(session, statements.held_jobs(10))) == 4
    assert [row.id for row in run(session, statements.held_jobs(10, ids=[claimed]))] == [claimed]

    clock = session.execute(*statements.clock()).scalar_one()
    assert clock.tzinfo is not None and clock >= rows[0].at


# -------------------------------------------------------------- summary_by_type, counts


def test_summary_by_type_and_counts_cover_only_the_given_ids(
    session: Session, statements: JobStatements
) -> None:
    def ran(
        job_type: str, status: JobStatus, priority: int, attempts: int, *, start: int, end: int
    ) -> uuid.UUID:
        """A job that started ``start`` and finished ``end`` seconds after T0."""
        started, ended = T0 + timedelta(seconds=start), T0 + timedelta(seconds=end)
        return put(
            session,
            job_type,
            status,
            priority=priority,
            attempts=attempts,
            started_at=started,
            completed_at=ended,
        )

    ours = [
        ran("hi", JobStatus.COMPLETED, 150, 2, start=0, end=2),
        ran("hi", JobStatus.FAILED, 150, 3, start=6, end=7),
        ran("lo", JobStatus.COMPLETED, 30, 1, start=4, end=5),
    ]
    ran("hi", JobStatus.COMPLETED, 200, 1, start=-100, end=1)

    summary = [
        (
            row.job_type,
            row.priority,
            row.jobs,
            row.rerun,
            float(row.mean_seconds),
            float(row.mean_start),
        )
        for row in run(session, statements.summary_by_type(ours))
    ]
    assert summary == [("hi", 150, 2, 2, 2.0, 3.0), ("lo", 30, 1, 0, 1.0, 4.0)]

    def counts(ids: list[uuid.UUID] | None) -> set[tuple[str, str, int]]:
        bound = statements.counts(ids)
        return {(t, JobStatus(s).value, int(n)) for t, s, n in run(session, bound)}

    assert counts(ours) == {("hi", "completed", 1), ("hi", "failed", 1), ("lo", "completed", 1)}
    assert counts(None) == {("hi", "completed", 2), ("hi", "failed", 1), ("lo", "completed", 1)}
    assert counts([]) == set()


# ----------------------------------------------------------------------------- live_ids


def test_live_ids_are_the_pending_and_held_jobs_of_the_types_in_order(
    session: Session, statements: JobStatements
) -> None:
    live = [
        put(session, "a", JobStatus.PENDING),
        put(session, "a", JobStatus.CLAIMED, worker_id="w", claimed_at=ago(1)),
        put(session, "b", JobStatus.RUNNING, worker_id="w", claimed_at=ago(1)),
    ]
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        put(session, "a", status)
    put(session, "c", JobStatus.PENDING)
    assert list(session.scalars(*statements.live_ids(["a", "b"]))) == sorted(live, key=str)


# ------------------------------------------------------------------------- built once


def test_each_read_is_built_once_per_shape_and_takes_its_values_as_parameters(
    statements: JobStatements,
) -> None:
    one, two = [uuid.uuid4()], [uuid.uuid4(), uuid.uuid4()]
    pairs = [
        (statements.newest(["a"], None, 5), statements.newest(["b", "c"], None, 9)),
        (statements.ids_by_digits("abcdef01", 3), statements.ids_by_digits("12345678", 2)),
        (statements.written_here(one[0]), statements.written_here(two[0])),
        (statements.stale_count(timedelta(1)), statements.stale_count(timedelta(2))),
        (statements.status_counts(ids=one), statements.status_counts(ids=two)),
        (
            statements.finished_within(timedelta(1), job_types=["a"]),
            statements.finished_within(timedelta(2), job_types=["b"]),
        ),
        (statements.held_jobs(1, ids=one), statements.held_jobs(2, ids=two)),
        (statements.summary_by_type(one), statements.summary_by_type(two)),
        (statements.counts(one), statements.counts(two)),
        (statements.live_ids(["a"]), statements.live_ids(["a", "b"])),
    ]
    for first, second in pairs:
        assert first.statement is second.statement
        assert first.params != second.params
    assert statements.newest(None, None, 5).statement is not pairs[0][0].statement
    assert statements.counts().statement is not pairs[8][0].statement
    assert statements.status_counts().params == {}
