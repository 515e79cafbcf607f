"""``wait(job, timeout)``: the finished job, woken by the database's notification.

Each test runs on ``JobQueue`` and on ``AsyncJobQueue`` (the ``executor`` fixture). The
waits that must be woken by a notification poll only every 600 s and give up after 60 s:
a wait that returns at all was woken by the notification, not by polling.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from sqla_jobqueue import Job, JobQueue, JobStatus
from sqla_jobqueue.errors import InvalidJobError, JobNotFoundError, WaitTimeoutError
from tests.acceptance.running import base_environment, running_worker, url_text
from tests.helpers import wait_for
from tests.integration.executors import Executor

NEVER_POLL = 600.0
"""A poll interval no test lasts: only a notification ends such a wait."""

WORKER_MODULE = """
from sqla_jobqueue import JobContext, Registry

registry = Registry()


@registry.handler("double")
def double(ctx: JobContext) -> dict[str, int]:
    return {"doubled": ctx.data["n"] * 2}


@registry.handler("refuse")
def refuse(ctx: JobContext) -> None:
    raise ValueError("refused on purpose")
"""


def enqueue(executor: Executor, job_type: str = "double", **options: Any) -> uuid.UUID:
    with executor.begin() as queue:
        job_id: uuid.UUID = queue.enqueue(job_type, {"n": 21}, **options).id
    return job_id


def awaited(engine: Engine, job_id: uuid.UUID) -> bool:
    with engine.connect() as connection:
        query = text("SELECT awaited FROM jobs WHERE id = :id")
        return bool(connection.execute(query, {"id": job_id}).scalar_one())


@pytest.fixture
def in_background() -> Iterator[Callable[[Callable[[], None]], None]]:
    """Run a function on a thread; the test fails if it raised."""
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(function: Callable[[], None]) -> None:
        def run() -> None:
            try:
                function()
            except BaseException as exc:  # reported by the fixture
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def finish_once_awaited(
    engine: Engine, job_id: uuid.UUID, finish: Callable[[JobQueue[Job], uuid.UUID], Any]
) -> Callable[[], None]:
    """Once the waiter has marked the job, finish it in a transaction of another session."""

    def run() -> None:
        wait_for(lambda: awaited(engine, job_id), what="the waiter marked the job")
        with Session(engine) as session, session.begin():
            finish(JobQueue(session, worker_id="finisher"), job_id)

    return run


def complete(queue: JobQueue[Job], job_id: uuid.UUID) -> None:
    (claimed,) = queue.claim()
    assert claimed.id == job_id
    queue.complete(claimed, {"answer": 42})


def fail(queue: JobQueue[Job], job_id: uuid.UUID) -> None:
    (claimed,) = queue.claim()
    claimed.max_attempts = claimed.attempts  # its last attempt: the failure is final
    queue.session.flush()
    queue.fail(claimed, "it broke")


def cancel(queue: JobQueue[Job], job_id: uuid.UUID) -> None:
    queue.cancel(job_id)


@pytest.mark.parametrize(
    ("finish", "status"),
    [(complete, JobStatus.COMPLETED), (fail, JobStatus.FAILED), (cancel, JobStatus.CANCELLED)],
)
def test_wait_returns_the_job_once_it_finishes(
    executor: Executor,
    engine: Engine,
    in_background: Callable[[Callable[[], None]], None],
    finish: Callable[[JobQueue[Job], uuid.UUID], Any],
    status: JobStatus,
) -> None:
    job_id = enqueue(executor)
    in_background(finish_once_awaited(engine, job_id, finish))
    with executor.begin() as queue:
        job = queue.wait(job_id, timeout=60, poll_interval=NEVER_POLL)
        assert (job.id, job.status) == (job_id, status)
        if status is JobStatus.COMPLETED:
            assert job.result == {"answer": 42}


def test_a_finished_job_is_returned_at_once_without_marking_it(
    executor: Executor, engine: Engine
) -> None:
    job_id = enqueue(executor)
    with executor.begin() as queue:
        queue.cancel(job_id)
    with executor.begin() as queue:
        assert queue.wait(job_id, timeout=0).status == JobStatus.CANCELLED
    assert not awaited(engine, job_id)


def test_a_wait_that_times_out_says_where_the_job_stands(executor: Executor) -> None:
    job_id = enqueue(executor)
    with executor.begin() as queue, pytest.raises(WaitTimeoutError) as raised:
        queue.wait(job_id, timeout=0.2, poll_interval=0.05)
    assert (raised.value.job_id, raised.value.status) == (job_id, "pending")
    assert "did not finish within 0.2s; it is pending" in str(raised.value)
    # The job goes on: a worker may still run it, and a later wait still hears it.
    with executor.begin() as queue:
        assert queue.get(job_id).status == JobStatus.PENDING


def test_the_connection_goes_back_to_the_pool_without_its_listen(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        job_id = JobQueue(session).enqueue("double").id
    with Session(engine) as session, pytest.raises(WaitTimeoutError):
        JobQueue(session).wait(job_id, timeout=0.1, poll_interval=0.05)
    # The pool hands out the connection the wait used (the only one it has made).
    assert isinstance(engine.pool, QueuePool) and engine.pool.checkedin() == 1
    with engine.connect() as connection:
        channels = connection.execute(text("SELECT count(*) FROM pg_listening_channels()"))
        assert channels.scalar_one() == 0


def test_without_the_notification_the_wait_polls(
    executor: Executor, engine: Engine, in_background: Callable[[Callable[[], None]], None]
) -> None:
    """A connection that hears nothing (a transaction pooler; here the trigger is gone)
    still sees the job finish, at its next read of the status."""
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER jobs_notify_finished ON jobs"))
    job_id = enqueue(executor)
    in_background(finish_once_awaited(engine, job_id, complete))
    with executor.begin() as queue:
        assert queue.wait(job_id, timeout=60, poll_interval=0.05).status == JobStatus.COMPLETED


def test_a_wait_that_does_not_listen_polls_and_marks_nothing(
    executor: Executor, engine: Engine, in_background: Callable[[Callable[[], None]], None]
) -> None:
    """``listen=False``, for an engine behind a transaction pooler."""
    job_id = enqueue(executor)

    def finish_once_polled() -> None:
        with Session(engine) as session, session.begin():
            complete(JobQueue(session, worker_id="finisher"), job_id)

    with executor.begin() as queue, pytest.raises(WaitTimeoutError):
        queue.wait(job_id, timeout=0.1, poll_interval=0.05, listen=False)
    assert not awaited(engine, job_id)
    in_background(finish_once_polled)
    with executor.begin() as queue:
        job = queue.wait(job_id, timeout=60, poll_interval=0.05, listen=False)
        assert job.status == JobStatus.COMPLETED
    assert not awaited(engine, job_id)


def test_waiting_for_a_job_that_does_not_exist(executor: Executor) -> None:
    missing = uuid.uuid4()
    with executor.begin() as queue, pytest.raises(JobNotFoundError) as raised:
        queue.wait(missing, timeout=1)
    assert raised.value.job_id == missing


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": -1}, "timeout must be zero or more seconds, got -1"),
        ({"timeout": float("inf")}, "timeout must be zero or more seconds, got inf"),
        ({"timeout": "5"}, "timeout must be a number of seconds or a timedelta, got str"),
        ({"timeout": 1, "poll_interval": 0}, "poll_interval must be more than 0 seconds"),
    ],
)
def test_bad_arguments_are_refused_before_the_job_is_marked(
    executor: Executor, engine: Engine, options: dict[str, Any], message: str
) -> None:
    job_id = enqueue(executor)
    with executor.begin() as queue, pytest.raises(InvalidJobError, match=message):
        queue.wait(job_id, **options)
    assert not awaited(engine, job_id)


def test_waiting_on_jobs_a_worker_process_runs(
    executor: Executor, database_url: URL, tmp_path: Path
) -> None:
    """The web request's case: enqueue, commit, wait for the result of a real worker."""
    (tmp_path / "waited_jobs.py").write_text(WORKER_MODULE)
    env = base_environment(DATABASE_URL=url_text(database_url))
    with running_worker("waited_jobs:registry", env=env, cwd=tmp_path) as worker:
        worker.stderr_line(" started: ")
        for _ in range(3):
            job_id = enqueue(executor, "double")
            with executor.begin() as queue:
                job = queue.wait(job_id, timeout=60, poll_interval=NEVER_POLL)
            assert (job.status, job.result) == (JobStatus.COMPLETED, {"doubled": 42})
        job_id = enqueue(executor, "refuse", max_attempts=1)
        with executor.begin() as queue:
            job = queue.wait(job_id, timeout=60, poll_interval=NEVER_POLL)
        assert job.status == JobStatus.FAILED
        assert "refused on purpose" in (job.last_error or "")
        assert worker.stop().returncode == 0
