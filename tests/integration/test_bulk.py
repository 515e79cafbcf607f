"""Bulk actions against a real PostgreSQL: cancel, retry, re-prioritise and delete by
filter, a chunk per call, with the count as their dry run.

Every test runs on both executors (``JobQueue`` on a ``Session``, ``AsyncJobQueue`` on an
``AsyncSession``). Ages are made by backdating rows, never by sleeping.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sqla_jobqueue import JobFilter, JobStatus
from sqla_jobqueue.errors import InvalidJobError, InvalidTransitionError
from sqla_jobqueue.statements.bulk import INDEXED_GROUPS
from tests.integration.executors import Executor, execute
from tests.integration.test_maintenance_never_waits import GUARD, row_locked

STATUSES = ["pending", "claimed", "running", "completed", "failed", "cancelled"]


def make_jobs(executor: Executor, job_type: str = "t", **enqueue: Any) -> dict[str, uuid.UUID]:
    """One job of ``job_type`` in each of :data:`STATUSES`, by status."""
    with executor.begin() as queue:
        ids = queue.enqueue_many([{"job_type": job_type, **enqueue} for _ in STATUSES])
    made = dict(zip(STATUSES, ids, strict=True))
    with executor.begin(worker_id=f"w-{job_type}") as queue:
        execute(
            queue,
            "UPDATE jobs SET max_attempts = 1 WHERE id = :failed",
            {"failed": made["failed"]},
        )
        held = [s for s in STATUSES if s != "pending"]
        claimed = {job.id: job for job in queue.claim([job_type], batch_size=len(held) + 1)}
        # The claim took the pending one too: give it back.
        queue.release([made["pending"]])
        for status in ("running", "completed", "failed", "cancelled"):
            queue.start(claimed[made[status]])
        queue.complete(claimed[made["completed"]])
        queue.fail(claimed[made["failed"]], "Boom: disk 100% full")
        queue.cancel(made["cancelled"])
    return made


def statuses_of(engine: Engine, ids: Any) -> dict[uuid.UUID, str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, status FROM jobs WHERE id = ANY(:ids)"), {"ids": list(ids)}
        )
        return {job_id: status for job_id, status in rows}


def all_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text("SELECT * FROM jobs ORDER BY id"))]


def backdate(engine: Engine, column: str, by: str, ids: Any) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE jobs SET {column} = {column} - interval '{by}' WHERE id = ANY(:ids)"),
            {"ids": list(ids)},
        )


def chunks(call: Callable[[], int]) -> list[int]:
    """Call ``call`` in a transaction of its own until it changes nothing; what each changed."""
    changed = []
    while True:
        changed.append(call())
        if changed[-1] == 0:
            return changed


def test_the_made_jobs_are_in_every_status(executor: Executor, engine: Engine) -> None:
    made = make_jobs(executor)
    assert statuses_of(engine, made.values()) == {job_id: s for s, job_id in made.items()}


def test_cancel_where_cancels_the_live_jobs_of_the_filter_in_chunks(
    executor: Executor, engine: Engine
) -> None:
    made = make_jobs(executor, "email")
    other = make_jobs(executor, "sms")
    with executor.begin() as queue:
        more = queue.enqueue_many([{"job_type": "email"}] * 5)
    wanted = JobFilter(job_types=["email"])
    with executor.begin() as queue:
        assert queue.count_where(wanted, action="cancel") == 8
        assert queue.count_where(wanted) == 11, "without an action: every status"

    def cancel_chunk() -> int:
        with executor.begin() as queue:
            return int(queue.cancel_where(wanted, limit=3))

    assert chunks(cancel_chunk) == [3, 3, 2, 0]
    live = [made["pending"], made["claimed"], made["running"], *more]
    assert set(statuses_of(engine, live).values()) == {"cancelled"}
    assert statuses_of(engine, [made[s] for s in ("completed", "failed")]) == {
        made["completed"]: "completed",
        made["failed"]: "failed",
    }
    assert statuses_of(engine, other.values()) == {job_id: s for s, job_id in other.items()}
    with executor.begin() as queue:
        cancelled = queue.get(made["running"])
        assert cancelled.completed_at is not None and cancelled.worker_id == "w-email"


def test_a_running_job_cancelled_in_bulk_cannot_be_completed_by_its_worker(
    executor: Executor,
) -> None:
    made = make_jobs(executor)
    with executor.begin() as queue:
        assert queue.cancel_where(JobFilter(statuses=["running"])) == 1
    with executor.begin(worker_id="w-t") as queue:
        running = queue.get(made["running"])
        assert running.status is JobStatus.CANCELLED
        with pytest.raises(InvalidTransitionError, match="it is 'cancelled'"):
            queue.complete(made["running"], attempt=1)


def test_retry_where_retries_failed_jobs_whose_error_contains_the_text(
    executor: Executor, engine: Engine
) -> None:
    first = make_jobs(executor, "a")
    second = make_jobs(executor, "b")
    third = make_jobs(executor, "c")
    # Wildcards in the text are matched as themselves: "100%" is not "1000", "_" not "x".
    with executor.begin() as queue:
        execute(
            queue,
            "UPDATE jobs SET last_error = 'disk 1000 full' WHERE id = :id",
            {"id": second["failed"]},
        )
        execute(
            queue,
            "UPDATE jobs SET last_error = 'Traceback ... DISK 100% FULL, a_b' WHERE id = :id",
            {"id": third["failed"]},
        )
        assert queue.count_where(JobFilter(error_contains="disk 100%"), action="retry") == 2
        assert queue.count_where(JobFilter(error_contains="a_b")) == 1
        assert queue.count_where(JobFilter(error_contains="a%b")) == 0
        assert queue.retry_where(JobFilter(error_contains="disk 100%")) == 2
    retried = statuses_of(engine, [first["failed"], second["failed"], third["failed"]])
    assert retried == {
        first["failed"]: "pending",
        second["failed"]: "failed",
        third["failed"]: "pending",
    }
    with executor.begin() as queue:
        job = queue.get(first["failed"])
        assert (job.attempts, job.worker_id, job.completed_at) == (0, None, None)
        assert job.last_error == "Boom: disk 100% full", "the last error is kept, as retry does"


def test_retry_where_makes_one_live_job_per_unique_key(executor: Executor, engine: Engine) -> None:
    ids = []
    for key in ["k", "k", "held", None]:
        # One at a time: a key has one live job at most.
        with executor.begin(worker_id="w") as queue:
            ids.append(queue.enqueue("sync", unique_key=key, max_attempts=1).id)
            [job] = queue.claim(batch_size=1)
            queue.fail(job, "down")
    with executor.begin() as queue:
        live_holder = queue.enqueue("sync", unique_key="held")
    wanted = JobFilter(job_types=["sync"])
    with executor.begin() as queue:
        # k twice: one of them; held: none (a live job holds the key); the one without.
        assert queue.count_where(wanted, action="retry") == 2
        assert queue.count_where(wanted, action="cancel") == 1
        assert queue.retry_where(wanted, limit=10) == 2
        assert queue.retry_where(wanted, limit=10) == 0
    assert statuses_of(engine, [*ids, live_holder.id]) == {
        ids[0]: "pending",
        ids[1]: "failed",
        ids[2]: "failed",
        ids[3]: "pending",
        live_holder.id: "pending",
    }


def test_reprioritize_where_changes_pending_jobs_that_have_another_priority(
    executor: Executor, engine: Engine
) -> None:
    made = make_jobs(executor)
    with executor.begin() as queue:
        already = queue.enqueue("t", priority=150)
        others = queue.enqueue_many([{"job_type": "t", "priority": 30}] * 4)
    wanted = JobFilter(job_types=["t"])
    with executor.begin() as queue:
        assert queue.count_where(wanted, action="reprioritize") == 6
        assert queue.count_where(wanted, action="reprioritize", priority=150) == 5

    def reprioritize_chunk() -> int:
        with executor.begin() as queue:
            return int(queue.reprioritize_where(wanted, 150, limit=2))

    assert chunks(reprioritize_chunk) == [2, 2, 1, 0]
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, priority FROM jobs"))
        priorities: dict[uuid.UUID, int] = {job_id: priority for job_id, priority in rows}
    assert {priorities[job_id] for job_id in [made["pending"], already.id, *others]} == {150}
    assert {priorities[made[s]] for s in STATUSES if s != "pending"} == {100}


def test_delete_where_deletes_pending_and_finished_jobs_never_held_ones(
    executor: Executor, engine: Engine
) -> None:
    made = make_jobs(executor)
    with executor.begin() as queue:
        assert queue.count_where(JobFilter(everything=True), action="delete") == 4
        assert queue.delete_where(JobFilter(everything=True), limit=3) == 3
        assert queue.delete_where(JobFilter(everything=True), limit=3) == 1
        assert queue.delete_where(JobFilter(everything=True), limit=3) == 0
    assert statuses_of(engine, made.values()) == {
        made["claimed"]: "claimed",
        made["running"]: "running",
    }


def test_age_filters_count_from_creation_and_finish(executor: Executor, engine: Engine) -> None:
    old = make_jobs(executor, "old")
    new = make_jobs(executor, "new")
    backdate(engine, "created_at", "3 days", old.values())
    backdate(engine, "completed_at", "3 days", [old["completed"], old["failed"]])
    two_days_ago = datetime.now(timezone.utc) - timedelta(days=2)
    with executor.begin() as queue:
        assert queue.count_where(JobFilter(older_than=timedelta(days=2))) == 6
        assert queue.count_where(JobFilter(created_before=two_days_ago)) == 6
        assert queue.count_where(JobFilter(finished_before=two_days_ago)) == 2
        finished = JobFilter(finished_before=two_days_ago)
        assert queue.count_where(finished, action="delete") == 2
        assert queue.delete_where(finished) == 2
        assert queue.cancel_where(JobFilter(older_than=timedelta(days=2))) == 3
    assert set(statuses_of(engine, new.values()).values()) == set(STATUSES)
    assert statuses_of(engine, old.values()) == {
        old["pending"]: "cancelled",
        old["claimed"]: "cancelled",
        old["running"]: "cancelled",
        old["cancelled"]: "cancelled",
    }


def test_filters_combine_and_everything_matches_every_job_of_the_action(
    executor: Executor, engine: Engine
) -> None:
    made = make_jobs(executor, "a")
    make_jobs(executor, "b")
    with executor.begin() as queue:
        both = JobFilter(job_types=["a", "b"], statuses=["pending", "running"])
        assert queue.count_where(both, action="cancel") == 4
        only_a = JobFilter(job_types=["a"], statuses=[JobStatus.RUNNING])
        assert queue.cancel_where(only_a) == 1
        assert queue.count_where(JobFilter(everything=True), action="cancel") == 5
        assert queue.count_where(JobFilter()) == 12
        assert queue.cancel_where(JobFilter(everything=True)) == 5
    assert statuses_of(engine, [made["running"]]) == {made["running"]: "cancelled"}


@pytest.mark.parametrize(
    ("action", "job_filter", "message"),
    [
        ("cancel", JobFilter(), "JobFilter(everything=True)"),
        ("delete", JobFilter(), "every waiting, pending, completed, failed or cancelled job"),
        ("cancel", JobFilter(everything=True, job_types=["a"]), "leave out its other"),
        ("cancel", JobFilter(statuses=["failed"]), "cancel changes only waiting, pending, claimed"),
        ("retry", JobFilter(statuses=["pending"]), "retry changes only failed jobs"),
        ("reprioritize", JobFilter(statuses=["running"]), "changes only pending jobs"),
        ("delete", JobFilter(statuses=["claimed"]), "include 'claimed'"),
        ("cancel", JobFilter(statuses=["paused"]), "'paused' is not a job status"),
        ("cancel", JobFilter(statuses="pending"), "write ['pending']"),
        ("cancel", JobFilter(statuses=[]), "statuses is empty"),
        ("cancel", JobFilter(job_types="email"), "write ['email']"),
        ("cancel", JobFilter(job_types=[]), "job_types is empty"),
        ("cancel", JobFilter(job_types=[""]), "job_type must not be empty"),
        ("cancel", JobFilter(job_types=["x" * 51]), "at most 50"),
        ("cancel", JobFilter(created_before=datetime(2030, 1, 1)), "no time zone"),
        ("cancel", JobFilter(created_before="2030-01-01"), "must be a datetime"),  # type: ignore[arg-type]
        ("cancel", JobFilter(older_than=timedelta(0)), "older_than must be positive"),
        ("cancel", JobFilter(older_than=timedelta(days=40000)), "created_before"),
        ("cancel", JobFilter(older_than=3600), "must be a timedelta"),  # type: ignore[arg-type]
        (
            "cancel",
            JobFilter(finished_before=datetime.now(timezone.utc)),
            "finished_before matches finished jobs only",
        ),
        ("retry", JobFilter(error_contains=""), "error_contains must not be empty"),
        ("retry", JobFilter(error_contains="a\x00b"), "NUL"),
        ("retry", JobFilter(error_contains="x" * 1001), "at most 1000"),
        ("cancel", JobFilter(everything=1), "everything must be True or False"),  # type: ignore[arg-type]
        ("cancel", {"job_types": ["a"]}, "must be a JobFilter"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    executor: Executor, engine: Engine, action: str, job_filter: Any, message: str
) -> None:
    make_jobs(executor)
    before = all_rows(engine)
    with executor.begin() as queue:
        act = {
            "cancel": queue.cancel_where,
            "retry": queue.retry_where,
            "delete": queue.delete_where,
            "reprioritize": lambda f: queue.reprioritize_where(f, 1),
        }[action]
        with pytest.raises(InvalidJobError) as refused:
            act(job_filter)
        assert message in str(refused.value)
        if job_filter != JobFilter():
            # The dry run checks the filter as the action does (an empty one may be counted).
            with pytest.raises(InvalidJobError) as refused_count:
                queue.count_where(job_filter, action=action)
            assert str(refused_count.value) == str(refused.value)
    assert all_rows(engine) == before


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: q.cancel_where(JobFilter(everything=True), limit=0), "at least 1"),
        (lambda q: q.cancel_where(JobFilter(everything=True), limit=True), "must be an int"),
        (lambda q: q.reprioritize_where(JobFilter(everything=True), 2**31), "int32"),
        (lambda q: q.reprioritize_where(JobFilter(everything=True), "high"), "must be an int"),
        (lambda q: q.count_where(JobFilter(), action="pause"), "action must be one of"),
        (lambda q: q.count_where(JobFilter(), priority=3), "action='reprioritize'"),
    ],
)
def test_bad_limits_priorities_and_actions_are_refused(
    executor: Executor, engine: Engine, call: Callable[[Any], Any], message: str
) -> None:
    make_jobs(executor)
    before = all_rows(engine)
    with executor.begin() as queue, pytest.raises(InvalidJobError, match=message):
        call(queue)
    assert all_rows(engine) == before


def test_a_chunk_skips_a_job_another_transaction_is_writing(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        ids = queue.enqueue_many([{"job_type": "t"}] * 4)
    wanted = JobFilter(job_types=["t"])
    with row_locked(engine, ids[0]):
        with executor.begin() as queue:
            # A chunk that waited for the lock would fail here rather than hang the run.
            execute(queue, f"SET LOCAL statement_timeout = '{GUARD}'")
            assert queue.count_where(wanted, action="cancel") == 4
            assert queue.cancel_where(wanted, limit=10) == 3
        assert statuses_of(engine, [ids[0]]) == {ids[0]: "pending"}
    with executor.begin() as queue:
        assert queue.cancel_where(wanted, limit=10) == 1
    assert set(statuses_of(engine, ids).values()) == {"cancelled"}


def test_a_filter_keeps_its_own_copy_of_the_lists_it_was_given() -> None:
    types = ["a"]
    job_filter = JobFilter(job_types=types, statuses=["pending"])
    types.append("b")
    assert job_filter.job_types == ("a",) and job_filter.statuses == ("pending",)
    assert hash(job_filter) == hash(JobFilter(job_types=("a",), statuses=("pending",)))


def test_every_status_is_in_exactly_one_group_a_chunk_takes() -> None:
    grouped = [status for group in INDEXED_GROUPS for status in group]
    assert sorted(grouped) == sorted(JobStatus)
