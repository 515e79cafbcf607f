"""A worker's claim resumes after the last job it claimed, without losing sight of the
jobs that sort before that position."""

from __future__ import annotations

import json
import threading
import uuid

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue, Priority
from sqla_jobqueue.handlers import JobContext, Registry
from sqla_jobqueue.statements import ClaimPosition
from tests.helpers import WAIT, fast_worker, wait_for
from tests.integration.rounds import complete_and_claim


def _enqueue(factory: sessionmaker[Session], name: str, priority: int) -> uuid.UUID:
    with factory.begin() as session:
        return JobQueue(session).enqueue("noop", {"name": name}, priority=priority).id


def _claim(engine: Engine, limit: int, after: ClaimPosition | None) -> list[str]:
    with engine.connect() as connection, connection.begin():
        _, claimed = complete_and_claim(connection, [], [], [], [], [], limit, None, after)
    return [json.loads(row.data)["name"] for row in claimed]


def test_a_resumed_claim_takes_higher_then_later_then_lower_priorities(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    ids = {}
    for name in ("a1", "a2", "a3", "a4"):
        ids[name] = _enqueue(session_factory, name, Priority.DISCOVERED)
    _enqueue(session_factory, "low", Priority.BACKFILL)
    _enqueue(session_factory, "high", Priority.EXPLICIT)
    with session_factory() as session:
        a2 = session.get(Job, ids["a2"])
        assert a2 is not None
        position = ClaimPosition(a2.priority, a2.created_at, a2.id)

    assert _claim(engine, 2, position) == ["high", "a3"]
    assert _claim(engine, 10, position) == ["a4", "low"]
    # The jobs before the position were left for a claim from the start.
    assert _claim(engine, 10, position) == []
    assert _claim(engine, 10, None) == ["a1", "a2"]


def test_a_busy_worker_still_claims_a_job_that_sorts_before_its_position(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    """A job due before the worker's position (a retry, a rescued job, a late commit) waits
    at most about ``poll_interval``, not until the queue behind the position is drained."""
    fillers = 400
    done_before_old: list[int] = []
    filler_started = threading.Event()
    old_ran = threading.Event()
    finished: list[int] = []
    registry = Registry()

    @registry.handler("noop")
    def noop(ctx: JobContext) -> None:
        if ctx.data["name"] == "old":
            done_before_old.append(len(finished))
            old_ran.set()
            return
        filler_started.set()
        if not old_ran.is_set():
            old_ran.wait(0.01)
        finished.append(1)

    with session_factory.begin() as session:
        JobQueue(session).enqueue_many(
            [{"job_type": "noop", "data": {"name": f"f{i}"}} for i in range(fillers)]
        )
    with fast_worker(engine, registry, concurrency=1, poll_interval=0.05):
        assert filler_started.wait(WAIT)
        # A job that sorts before every filler, enqueued after the worker moved past them.
        with session_factory.begin() as session:
            old = JobQueue(session).enqueue("noop", {"name": "old"})
            session.execute(
                text("UPDATE jobs SET created_at = created_at - interval '1 hour' WHERE id = :id"),
                {"id": old.id},
            )
        assert old_ran.wait(WAIT)
        wait_for(lambda: len(finished) == fillers, what="every filler")
    # Without the periodic restart the old job would run after all 400 fillers (4 s of
    # them at 10 ms each); with it, within a few poll intervals of 50 ms.
    assert done_before_old[0] < fillers // 2
