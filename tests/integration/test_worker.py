"""The workers in-process, against a real PostgreSQL: claiming, outcomes, progress.

The tests of worker behaviour run on the sync ``Worker`` and on the ``AsyncWorker`` (the
``start_worker`` fixture); the handlers are plain ``def`` ones, which the AsyncWorker runs
on threads. Those that use ``ctx.session`` run on the sync worker only: a plain handler
under the AsyncWorker has no session (its async handlers' session is tested in
test_async_worker.py)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, JobStatus
from sqla_jobqueue.errors import InvalidJobError, JobQueueError
from sqla_jobqueue.handlers import JobContext, Registry
from sqla_jobqueue.listener import APPLICATION_NAME
from sqla_jobqueue.worker import Worker, load_registry
from tests.helpers import (
    WAIT,
    StartWorker,
    fast_worker,
    job_table,
    statuses,
    unstarted_worker,
    wait_for,
)
from tests.integration.rounds import complete_and_claim, write_progress


@pytest.fixture
def registry() -> Registry:
    return Registry()


def test_jobs_of_several_types_run_in_priority_order_with_results(
    start_worker: StartWorker, session_factory: sessionmaker[Session], registry: Registry
) -> None:
    order: list[str] = []

    @registry.handler("alpha")
    def alpha(ctx: JobContext) -> dict[str, Any]:
        order.append(ctx.data["name"])
        return {"name": ctx.data["name"], "attempt": ctx.attempt}

    @registry.handler("beta")
    def beta(ctx: JobContext) -> str:
        order.append(ctx.data["name"])
        return str(ctx.data["name"]).upper()

    specs = [("alpha", "low", 10), ("beta", "high", 200), ("alpha", "mid", 100),
             ("beta", "mid2", 100), ("alpha", "top", 300)]  # fmt: skip
    with session_factory.begin() as session:
        queue = JobQueue(session)
        ids = {name: registry.enqueue(queue, t, {"name": name}, priority=p).id
               for t, name, p in specs}  # fmt: skip

    with start_worker(registry, concurrency=1):
        wait_for(lambda: statuses(session_factory) == {"completed": 5}, what="all completed")

    assert order == ["top", "high", "mid", "mid2", "low"]
    with session_factory() as session:
        queue = JobQueue(session)
        assert queue.get(ids["top"]).result == {"name": "top", "attempt": 1}
        assert queue.get(ids["high"]).result == "HIGH"
        job = queue.get(ids["low"])
        assert (job.status, job.progress, job.attempts) == (JobStatus.COMPLETED, 100, 1)
        assert job.started_at is not None and job.completed_at is not None


def test_progress_is_visible_from_another_session_while_the_job_runs(
    start_worker: StartWorker, session_factory: sessionmaker[Session], registry: Registry
) -> None:
    proceed = threading.Event()

    @registry.handler("long")
    def long(ctx: JobContext) -> None:
        ctx.progress(40, "halfway")
        ctx.event(3)
        ctx.event()
        assert proceed.wait(WAIT)

    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("long").id

    def seen() -> Job | None:
        with session_factory() as session:
            job = JobQueue(session).get(job_id)
            return job if job.progress == 40 and job.events_count == 4 else None

    with start_worker(registry):
        job = wait_for(seen, what="progress 40 written while running")
        assert job.status == JobStatus.RUNNING
        assert job.current_stage == "halfway"
        proceed.set()
        wait_for(lambda: statuses(session_factory) == {"completed": 1})


def test_progress_of_running_jobs_is_written_and_a_job_taken_away_is_abandoned(
    start_worker: StartWorker, session_factory: sessionmaker[Session], registry: Registry
) -> None:
    proceed = threading.Event()
    contexts: dict[int, JobContext] = {}

    @registry.handler("long")
    def long(ctx: JobContext) -> None:
        n = ctx.data["n"]
        contexts[n] = ctx
        ctx.progress(10 * (n + 1), stage=f"step {n}")
        ctx.event(n)
        assert proceed.wait(WAIT)

    with session_factory.begin() as session:
        queue = JobQueue(session)
        ids = [queue.enqueue("long", {"n": n}).id for n in range(3)]

    def progress() -> dict[Any, tuple[int, str | None, int]]:
        with session_factory() as session:
            jobs = session.scalars(select(Job).where(Job.id.in_(ids))).all()
            return {job.id: (job.progress, job.current_stage, job.events_count) for job in jobs}

    expected = {ids[n]: (10 * (n + 1), f"step {n}", n) for n in range(3)}
    with start_worker(registry, concurrency=3):
        wait_for(lambda: progress() == expected, what="the progress of all three jobs")
        with session_factory.begin() as session:
            JobQueue(session).cancel(ids[2])
        contexts[2].progress(99)
        wait_for(lambda: contexts[2].abandoned, what="the cancelled job's context abandoned")
        assert not contexts[0].abandoned and not contexts[1].abandoned
        proceed.set()
        wait_for(lambda: statuses(session_factory) == {"completed": 2, "cancelled": 1})
    assert progress()[ids[2]] == expected[ids[2]]


def test_many_jobs_complete_once_each_with_several_workers(
    start_worker: StartWorker, session_factory: sessionmaker[Session], registry: Registry
) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    @registry.handler("noop")
    def noop(ctx: JobContext) -> None:
        with lock:
            seen.append(str(ctx.job_id))

    with session_factory.begin() as session:
        registry.enqueue_many(JobQueue(session), [{"job_type": "noop"}] * 500)

    with start_worker(registry, concurrency=4), start_worker(registry, concurrency=8):
        wait_for(lambda: statuses(session_factory) == {"completed": 500})
    assert len(seen) == 500 == len(set(seen))


def test_load_registry_finds_a_registry_by_import_path() -> None:
    import tests.integration.test_worker as here

    here.example_registry = Registry({"x": lambda ctx: None})  # type: ignore[attr-defined]
    assert load_registry("tests.integration.test_worker:example_registry") is (
        here.example_registry  # type: ignore[attr-defined]
    )
    with pytest.raises(InvalidJobError, match=r"package\.module:attribute"):
        load_registry("no_colon")
    with pytest.raises(InvalidJobError, match="cannot import"):
        load_registry("no.such.module:registry")
    with pytest.raises(InvalidJobError, match="not a Registry"):
        load_registry("tests.integration.test_worker:WAIT")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_worker_rejects_bad_settings_before_running(kind: str, registry: Registry) -> None:
    registry.register("x", lambda ctx: None)
    with pytest.raises(InvalidJobError, match="no handler registered"):
        unstarted_worker(kind, registry, job_types=["y"])
    with pytest.raises(InvalidJobError, match="concurrency"):
        unstarted_worker(kind, registry, concurrency=0)
    with pytest.raises(InvalidJobError, match="stale_timeout"):
        unstarted_worker(kind, registry, heartbeat_interval=10, stale_timeout=20)
    with pytest.raises(InvalidJobError, match="no handlers"):
        unstarted_worker(kind, Registry())


# ctx.session is the sync worker's: a plain handler under the AsyncWorker has none.
@pytest.mark.parametrize(
    ("start_worker", "through_session"),
    [("sync", True), ("sync", False), ("async", False)],
    ids=["sync-ctx.session", "sync-batched", "async-batched"],
    indirect=["start_worker"],
)
def test_a_stale_worker_cannot_complete_a_job_rescued_and_claimed_by_another(
    engine: Engine,
    session_factory: sessionmaker[Session],
    start_worker: StartWorker,
    through_session: bool,
) -> None:
    writes = Table("writes", MetaData(), Column("attempt", Integer), Column("worker", String(100)))
    writes.metadata.create_all(engine)
    release = threading.Event()
    registry = Registry()

    @registry.handler("hold")
    def hold(ctx: JobContext) -> str:
        if through_session:
            ctx.session.execute(writes.insert().values(attempt=ctx.attempt, worker=ctx.worker_id))
        if ctx.attempt == 1:
            assert release.wait(WAIT)  # the "pause": this worker stops heartbeating it
        return ctx.worker_id

    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("hold").id

    with start_worker(registry, concurrency=1, maintenance=False) as stale:
        wait_for(lambda: stale.running_jobs == [job_id], what="the first worker runs the job")
        with session_factory.begin() as session:
            # As if its heartbeat had stopped an hour ago, then a rescue round ran.
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(heartbeat_at=func.statement_timestamp() - timedelta(hours=1))
            )
            assert JobQueue(session).recover_stale(timedelta(minutes=1)) == 1
        with start_worker(registry, concurrency=1, maintenance=False) as rescuer:
            wait_for(lambda: rescuer.stats.completed == 1, what="the second worker completes it")
        release.set()
        wait_for(lambda: stale.stats.lost == 1, what="the stale worker's outcome discarded")
        assert stale.stats.completed == 0

    with session_factory() as session:
        done = JobQueue(session).get(job_id)
        rows = session.execute(select(writes.c.attempt, writes.c.worker)).all()
    assert (done.status, done.attempts, done.result) == (JobStatus.COMPLETED, 2, rescuer.worker_id)
    # The stale attempt's write was rolled back with its refused completion.
    assert rows == ([(2, rescuer.worker_id)] if through_session else [])


def test_a_long_job_of_a_live_worker_is_never_rescued(
    start_worker: StartWorker, session_factory: sessionmaker[Session], registry: Registry
) -> None:
    release = threading.Event()
    registry.register("long", lambda ctx: release.wait(WAIT) and None)
    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("long").id

    def ran_past_stale_timeout() -> bool:
        with session_factory() as session:
            age = session.execute(
                select(func.statement_timestamp() - Job.started_at).where(Job.id == job_id)
            ).scalar_one()
        return age is not None and age > timedelta(seconds=6)

    # heartbeats every 0.2s; a rescue round every 0.1s rescues what is 5s stale (never
    # less on a loaded machine: a live worker's job must not be rescued by a slow beat)
    options: dict[str, Any] = {
        "heartbeat_interval": 0.2,
        "stale_timeout": 5,
        "rescue_interval": 0.1,
    }
    with start_worker(registry, **options):
        wait_for(ran_past_stale_timeout, what="the job to run past its stale timeout")
        with session_factory() as session:
            running = JobQueue(session).get(job_id)
        assert (running.status, running.attempts) == (JobStatus.RUNNING, 1)
        release.set()
        wait_for(lambda: statuses(session_factory) == {"completed": 1})


def test_killed_connections_do_not_stop_the_worker(
    start_worker: StartWorker, session_factory: sessionmaker[Session], registry: Registry
) -> None:
    calls: list[str] = []
    lock = threading.Lock()

    @registry.handler("step")
    def step(ctx: JobContext) -> None:
        with lock:
            calls.append(str(ctx.job_id))
        time.sleep(0.002)

    with session_factory.begin() as session:
        registry.enqueue_many(JobQueue(session), [{"job_type": "step"}] * 300)

    kill = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name IN ('victim', :listener)"
    )
    # The worker's own engine, so that only its connections are killed.
    victim = {"connect_args": {"application_name": "victim"}}
    with start_worker(registry, concurrency=4, engine_options=victim) as worker:
        for _ in range(5):
            target = len(calls) + 20
            wait_for(lambda: len(calls) > target, what="progress between kills")  # noqa: B023
            with session_factory() as session:
                assert session.execute(kill, {"listener": APPLICATION_NAME}).scalar_one() > 0
        wait_for(lambda: statuses(session_factory) == {"completed": 300}, what="all completed")
    assert worker.stats.completed == 300  # each recorded once: none double-completed
    assert len(set(calls)) == 300


def test_a_worker_on_a_database_without_the_job_table_says_to_migrate(
    start_worker: StartWorker, empty_database_url: URL, registry: Registry
) -> None:
    registry.register("x", lambda ctx: None)
    with pytest.raises(JobQueueError, match="run the migrations first"):
        start_worker(registry, url=empty_database_url).__enter__()


# ctx.session is the sync worker's: a plain handler under the AsyncWorker has none.
@pytest.mark.parametrize(
    ("start_worker", "ending"),
    [("sync", "raises"), ("sync", "ctx.session"), ("async", "raises")],
    ids=["sync-raises", "sync-ctx.session", "async-raises"],
    indirect=["start_worker"],
)
def test_a_job_deleted_while_it_runs_is_lost_and_other_jobs_still_complete(
    start_worker: StartWorker,
    session_factory: sessionmaker[Session],
    registry: Registry,
    ending: str,
) -> None:
    deleted = threading.Event()

    @registry.handler("doomed")
    def doomed(ctx: JobContext) -> str:
        assert deleted.wait(WAIT)
        if ending == "raises":
            raise RuntimeError("its failure has no row to go to")
        ctx.session.execute(select(1))
        return "done"

    registry.register("fine", lambda ctx: "ok")
    with session_factory.begin() as session:
        doomed_id = JobQueue(session).enqueue("doomed").id

    with start_worker(registry, concurrency=2) as worker:
        wait_for(lambda: worker.running_jobs == [doomed_id], what="the doomed job to run")
        with session_factory.begin() as session:  # e.g. cancelled, then pruned
            session.execute(delete(Job).where(Job.id == doomed_id))
        deleted.set()
        wait_for(lambda: worker.stats.lost == 1, what="the outcome of the deleted job dropped")
        with session_factory.begin() as session:
            registry.enqueue_many(JobQueue(session), [{"job_type": "fine"}] * 5)
        wait_for(lambda: statuses(session_factory) == {"completed": 5}, what="the others done")
        wait_for(lambda: worker.stats.completed == 5 and not worker.running_jobs)
    assert worker.stats.lost == 1


def heartbeat_of(factory: sessionmaker[Session], job_id: Any) -> Any:
    with factory() as session:
        return session.execute(select(Job.heartbeat_at).where(Job.id == job_id)).scalar_one()


def test_heartbeats_go_on_while_the_dispatcher_is_stuck_writing(
    start_worker: StartWorker, session_factory: sessionmaker[Session], registry: Registry
) -> None:
    release = threading.Event()
    registry.register("long", lambda ctx: release.wait(WAIT) and None)
    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("long").id
    with start_worker(registry) as worker:
        wait_for(lambda: worker.running_jobs == [job_id])
        # As if the dispatcher were stuck in a slow connect or a long transaction.
        with worker.holding_write_lock():
            first = heartbeat_of(session_factory, job_id)
            wait_for(
                lambda: heartbeat_of(session_factory, job_id) > first,
                what="a heartbeat while the dispatcher holds its lock",
            )
        release.set()
        wait_for(lambda: statuses(session_factory) == {"completed": 1})


def test_jobs_claimed_by_a_round_whose_answer_was_lost_are_given_back_uncharged(
    start_worker: StartWorker, session_factory: sessionmaker[Session], registry: Registry
) -> None:
    ran: list[int] = []
    registry.register("x", lambda ctx: ran.append(ctx.attempt))
    worker = start_worker(registry, concurrency=2, maintenance=False)
    recorder = worker.worker._recorder  # both workers' rounds go through their Recorder
    real = recorder._complete_and_claim
    lost_once: list[bool] = []

    def commit_then_lose_the_answer(*args: Any) -> Any:
        answer = real(*args)
        if answer[1] and not lost_once:
            lost_once.append(True)
            raise OperationalError("claim", {}, Exception("connection lost after commit"))
        return answer

    recorder._complete_and_claim = commit_then_lose_the_answer  # type: ignore[method-assign, assignment]
    with session_factory.begin() as session:
        ids = registry.enqueue_many(JobQueue(session), [{"job_type": "x"}] * 2)
    with worker:
        wait_for(lambda: statuses(session_factory) == {"completed": 2}, what="both completed")
    assert lost_once
    with session_factory() as session:
        queue = JobQueue(session)
        assert {queue.get(job_id).attempts for job_id in ids} == {1}
    assert ran == [1, 1]


# Sync only: the completion through ctx.session is the sync worker's (an async handler's
# timeout cancels it instead: test_async_worker.py).
def test_a_timeout_and_the_commit_of_its_completion_exclude_each_other(
    engine: Engine, session_factory: sessionmaker[Session], registry: Registry
) -> None:
    locked = threading.Event()
    returning = threading.Event()

    @registry.handler("late", timeout=timedelta(seconds=0.5))
    def late(ctx: JobContext) -> str:
        ctx.session.execute(select(1))
        assert locked.wait(WAIT)
        returning.set()
        return "done"

    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("late").id
    with fast_worker(engine, registry, maintenance=False) as worker:
        wait_for(lambda: worker.running_jobs == [job_id], what="the job to run")
        with session_factory.begin() as blocker:
            # The handler's completion waits on this lock while its timeout passes.
            blocker.execute(select(Job.id).where(Job.id == job_id).with_for_update())
            locked.set()
            assert returning.wait(WAIT)
            wait_for(
                lambda: worker._dispatch.active[job_id].timed_out, what="the timeout to be declared"
            )
        wait_for(lambda: job_id not in worker.running_jobs, what="the outcome recorded")
        with session_factory() as session:
            job = JobQueue(session).get(job_id)
    # Whatever won, the worker's account agrees with the table.
    assert worker.stats.lost == 0
    if job.status == JobStatus.COMPLETED:
        assert worker.stats.completed == 1
    else:
        assert (job.status, worker.stats.failed) == (JobStatus.PENDING, 1)
        assert "TimeoutError" in (job.last_error or "")


# Sync only: Worker.start(timeout=...) is the sync worker's (the AsyncWorker is awaited).
def test_a_worker_that_cannot_start_in_time_stops_trying(registry: Registry) -> None:
    registry.register("x", lambda ctx: None)
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/nowhere")
    worker = Worker(engine, registry, listen=False)
    try:
        with pytest.raises(JobQueueError, match="did not start within"):
            worker.start(timeout=0.5)
        assert worker.join(WAIT)  # not left retrying in the background
    finally:
        worker.stop(graceful=False)
        engine.dispose()


def test_the_round_statement_asks_psycopg_for_binary_arrays_exactly_where_it_means_to(
    engine: Engine,
) -> None:
    from sqla_jobqueue.statements import ClaimPosition, JobStatements, driver_sql
    from sqla_jobqueue.statements.execution import _ARRAY_PARAMS

    statements = JobStatements.of(job_table())
    after = ClaimPosition(1, datetime.now(timezone.utc), uuid.uuid4())
    rounds = [
        statements.complete_and_claim("w", [], [], [], [], [], 1, job_types, position).statement
        for job_types in (None, ["x"])
        for position in (None, after)
    ]
    assert len(set(map(id, rounds))) == 4
    with engine.connect() as connection:
        for statement in rounds:
            values = {"p_ids": [], "p_attempts": [], "p_results": [], "p_stages": [],
                      "p_events": [], "p_limit": 1, "p_worker_id": "w",
                      "p_job_types": ["x"], "p_after_priority": 1,
                      "p_after_created_at": None, "p_after_id": None}  # fmt: skip
            sql, compiled = driver_sql(connection.dialect, statement)
            compiled.construct_params(values)
            used = [name for name in _ARRAY_PARAMS if f"%({name})" in sql]
            assert used, "the statement has array parameters"
            for name in used:
                assert f"%({name})s" not in sql
            # Nothing else was rewritten: every binary placeholder is one of the arrays.
            assert sql.count(")b") == sum(sql.count(f"%({name})b") for name in used)
            assert {"p_ids", "p_results", "p_stages", "p_events"} <= set(used)


def test_a_round_claims_in_priority_order_and_writes_each_completion_its_own_values(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        queue = JobQueue(session)
        jobs = [queue.enqueue("x", {"i": i}, priority=p) for i, p in enumerate([30, 150, 100])]
        low, high, mid = (job.id for job in jobs)
        plain = queue.enqueue("x", {"i": 3}, priority=10).id
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection:
        _, claimed = complete_and_claim(connection, [], [], [], [], [], 3, None)
        assert [job.id for job in claimed] == [high, mid, low]
        done, claimed = complete_and_claim(
            connection, [high, mid, low], [1, 1, 1], ['{"a": 1}', None, None],
            [None, "", "last"], [0, 0, 2], 1, None,
        )  # fmt: skip
        assert sorted(done) == sorted([high, mid, low])
        assert [job.id for job in claimed] == [plain]
        # Nothing to write but the completion: the arrays travel as NULL.
        done, _ = complete_and_claim(connection, [plain], [1], [None], [None], [0], 0, None)
        assert done == [plain]
    with session_factory() as session:
        rows = {job.id: job for job in session.scalars(select(Job))}
    written = {k: (rows[k].result, rows[k].current_stage, rows[k].events_count) for k in rows}
    assert written == {
        high: ({"a": 1}, None, 0),
        mid: (None, "", 0),
        low: (None, "last", 2),
        plain: (None, None, 0),
    }
    assert {job.status for job in rows.values()} == {JobStatus.COMPLETED.value}


def test_a_progress_write_sets_a_percent_of_zero_and_leaves_what_was_not_reported(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        JobQueue(session).enqueue("x")
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection:
        _, (job,) = complete_and_claim(connection, [], [], [], [], [], 1, None)
        assert write_progress(connection, [job.id], [1], [50], ["a"], [2]) == {job.id}
        assert write_progress(connection, [job.id], [1], [0], [None], [0]) == {job.id}
        assert write_progress(connection, [job.id], [2], [70], [None], [0]) == set()
    with session_factory() as session:
        row = session.get(Job, job.id)
        assert row is not None
        assert (row.progress, row.current_stage, row.events_count) == (0, "a", 2)


# ctx.session is the sync worker's: a plain handler under the AsyncWorker has none.
@pytest.mark.parametrize(
    ("start_worker", "uses_session"),
    [("sync", False), ("sync", True), ("async", False)],
    ids=["sync-batched", "sync-ctx.session", "async-batched"],
    indirect=["start_worker"],
)
def test_progress_reported_just_before_completion_is_kept(
    start_worker: StartWorker, session_factory: sessionmaker[Session], uses_session: bool
) -> None:
    registry = Registry()

    @registry.handler("quick")
    def quick(ctx: JobContext) -> None:
        ctx.progress(30, stage="reading")
        ctx.event(4)
        ctx.progress(90, stage="writing")
        ctx.event()
        if uses_session:
            ctx.session.execute(select(1))

    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("quick").id
    # A progress interval far longer than the job: only the completion can write it.
    with start_worker(registry, progress_interval=60):
        wait_for(lambda: statuses(session_factory).get("completed") == 1)
    with session_factory() as session:
        job = JobQueue(session).get(job_id)
    assert (job.current_stage, job.events_count, job.progress) == ("writing", 5, 100)


# ctx.session is the sync worker's: a plain handler under the AsyncWorker has none.
@pytest.mark.parametrize(
    ("start_worker", "ending"),
    [
        ("sync", "returns"),
        ("sync", "ctx.session"),
        ("sync", "raises"),
        ("async", "returns"),
        ("async", "raises"),
    ],
    ids=["sync-returns", "sync-ctx.session", "sync-raises", "async-returns", "async-raises"],
    indirect=["start_worker"],
)
def test_a_job_cancelled_while_it_runs_counts_as_cancelled_and_the_stop_line_is_readable(
    start_worker: StartWorker,
    session_factory: sessionmaker[Session],
    registry: Registry,
    caplog: pytest.LogCaptureFixture,
    ending: str,
) -> None:
    cancelled = threading.Event()

    @registry.handler("long")
    def long(ctx: JobContext) -> str:
        assert cancelled.wait(WAIT)
        if ending == "raises":
            raise RuntimeError("its failure has nowhere to go")
        if ending == "ctx.session":
            ctx.session.execute(select(1))
        return "done"

    with session_factory.begin() as session:
        job_id = JobQueue(session).enqueue("long").id
    caplog.set_level("INFO", logger="sqla_jobqueue.worker")
    with start_worker(registry) as worker:
        wait_for(lambda: worker.running_jobs == [job_id], what="the job to run")
        with session_factory.begin() as session:  # as sqla-jobqueue cancel does
            JobQueue(session).cancel(job_id)
        cancelled.set()
        wait_for(lambda: not worker.running_jobs, what="the outcome to be settled")
    assert (worker.stats.cancelled, worker.stats.lost) == (1, 0)
    assert statuses(session_factory) == {"cancelled": 1}
    assert "was cancelled while it ran" in caplog.text
    summary = "0 completed, 0 failed, 0 snoozed, 1 cancelled, 0 lost"
    assert str(worker.stats) == summary
    assert f"worker {worker.worker_id} stopped: {summary}" in caplog.text
