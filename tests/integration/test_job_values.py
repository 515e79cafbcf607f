"""UUID, datetime, date, time and Decimal in a job's data and result: stored as the strings
that rebuild them, the same way through every path in and out, on both executors; handlers
read strings."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobContext, JobQueue, JobStatus, Registry
from sqla_jobqueue.errors import InvalidJobError
from tests.helpers import fast_worker, wait_for
from tests.integration.executors import Executor

ORDER = uuid.UUID("0190f2b4-7c1e-7a3b-9a4e-2f6c1d9b8e01")
DATA: dict[str, Any] = {
    "order_id": ORDER,
    "placed_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
    "ship_on": date(2026, 1, 9),
    "cut_off": time(17, 30),
    "total": Decimal("1234.50"),
    "lines": [{"sku": uuid.UUID(int=1), "price": Decimal("0.10")}],
}
STORED: dict[str, Any] = {
    "order_id": "0190f2b4-7c1e-7a3b-9a4e-2f6c1d9b8e01",
    "placed_at": "2026-01-02T03:04:05.000006+00:00",
    "ship_on": "2026-01-09",
    "cut_off": "17:30:00",
    "total": "1234.50",
    "lines": [{"sku": "00000000-0000-0000-0000-000000000001", "price": "0.10"}],
}


def stored_data(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT data FROM jobs ORDER BY id")).scalars())


def test_enqueue_stores_the_strings_and_returns_them(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        job = queue.enqueue("t", DATA)
        assert job.data == STORED
    assert stored_data(engine) == [STORED]
    with executor.begin() as queue:
        assert queue.get(job.id).data == STORED


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="plain: checked column by column, copied"),
        pytest.param({"priority": 7}, id="with settings: checked one by one, copied"),
        pytest.param({"unique_key": "k"}, id="keyed: inserted"),
    ],
)
def test_enqueue_many_stores_them_the_same_way_on_every_path(
    executor: Executor, engine: Engine, extra: dict[str, Any]
) -> None:
    with executor.begin() as queue:
        queue.enqueue_many([{"job_type": "t", "data": DATA, **extra}])
    assert stored_data(engine) == [STORED]


@pytest.mark.parametrize("in_session", [False, True], ids=["recorded", "ctx.session"])
def test_a_handler_reads_strings_and_its_result_may_hold_them_too(
    engine: Engine, session_factory: sessionmaker[Session], in_session: bool
) -> None:
    seen: list[dict[str, Any]] = []

    def charge(ctx: JobContext) -> dict[str, Any]:
        seen.append(ctx.data)
        if in_session:  # the job is then completed in the handler's own transaction
            ctx.session.execute(text("SELECT 1"))
        order = uuid.UUID(ctx.data["order_id"])
        return {"order_id": order, "charged": Decimal(ctx.data["total"]) * 2}

    registry = Registry({"charge": charge})
    with session_factory.begin() as session:
        job_id = registry.enqueue(JobQueue(session), "charge", DATA).id

    def completed() -> Job | None:
        with session_factory() as session:
            found = JobQueue(session).get(job_id)
        return found if found.status == JobStatus.COMPLETED else None

    with fast_worker(engine, registry):
        done = wait_for(completed, what="the job to complete")
    assert seen == [STORED]
    assert done.result == {"order_id": str(ORDER), "charged": "2469.00"}


def test_complete_stores_a_result_as_a_worker_does(executor: Executor) -> None:
    with executor.begin() as queue:
        queue.enqueue("t")
    with executor.begin(worker_id="w") as queue:
        (job,) = queue.claim()
        done = queue.complete(job, {"id": ORDER, "at": [date(2026, 1, 9)]})
        assert done.result == {"id": str(ORDER), "at": ["2026-01-09"]}
    with executor.begin() as queue:
        assert queue.get(job.id).result == {"id": str(ORDER), "at": ["2026-01-09"]}


def test_enqueue_many_names_the_job_and_the_place_of_a_refused_value(
    executor: Executor, engine: Engine
) -> None:
    specs: list[dict[str, Any]] = [{"job_type": "t", "data": DATA}] * 3
    specs[2] = {"job_type": "t", "data": {"lines": [{"tags": {"a"}}]}}
    with executor.begin() as queue, pytest.raises(InvalidJobError) as refused:
        queue.enqueue_many(specs)
    assert str(refused.value).startswith(
        "job #2: data must be JSON-serialisable, but data['lines'][0]['tags'] is of type set"
    )
    assert stored_data(engine) == []
