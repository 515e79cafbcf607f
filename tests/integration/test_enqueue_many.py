"""enqueue_many's ways in: the plain kind of spec checked column by column and copied, any
other copyable spec checked one by one and copied, the rest inserted; same rows either way,
on both executors."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from sqla_jobqueue.errors import InvalidJobError
from tests.integration.executors import Executor, execute

COLUMNS = "id, job_type, data, priority, max_attempts, status, attempts, run_at = created_at"


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT {COLUMNS} FROM jobs ORDER BY id"))
        return [tuple(row) for row in rows]


def test_plain_specs_are_stored_as_given(executor: Executor, engine: Engine) -> None:
    specs: list[dict[str, Any]] = [
        {"job_type": "ünïcode ✓", "data": {"s": 'é\u2028\t"\\ \U0001f600', "deep": [{"k": None}]}},
        {"job_type": "t", "data": None},
        {"job_type": "t"},
        {"job_type": "t", "data": {"n": 2**40, "f": 0.5}},
    ]
    with executor.begin() as queue:
        ids = queue.enqueue_many(iter(specs))
    assert ids == sorted(ids)
    assert stored(engine) == [
        (job_id, spec["job_type"], spec.get("data") or {}, 100, 3, "pending", 0, True)
        for job_id, spec in zip(ids, specs, strict=True)
    ]


def test_settings_and_escaped_backslashes_take_the_full_checks_and_are_stored(
    executor: Executor, engine: Engine
) -> None:
    specs: list[dict[str, Any]] = [
        {"job_type": "a", "data": {"i": 0}},
        {"job_type": "a", "priority": -(2**31), "max_attempts": 2**31 - 1},
        {"job_type": "b", "data": {"path": "C:\\u0000dir"}, "priority": 150},
    ]
    with executor.begin() as queue:
        ids = queue.enqueue_many(specs)
    assert stored(engine) == [
        (ids[0], "a", {"i": 0}, 100, 3, "pending", 0, True),
        (ids[1], "a", {}, -(2**31), 2**31 - 1, "pending", 0, True),
        (ids[2], "b", {"path": "C:\\u0000dir"}, 150, 3, "pending", 0, True),
    ]


def test_a_bad_spec_after_many_plain_ones_writes_nothing_and_spares_the_transaction(
    executor: Executor, engine: Engine
) -> None:
    specs: list[dict[str, Any]] = [{"job_type": "t", "data": {"i": i}} for i in range(2_000)]
    with executor.begin() as queue:
        with pytest.raises(InvalidJobError, match="job #1500 has unknown keys"):
            queue.enqueue_many([*specs[:1500], {"job_type": "t", "dta": {}}])
        with pytest.raises(InvalidJobError, match="must be JSON-serialisable"):
            queue.enqueue_many([*specs, {"job_type": "t", "data": {"x": object()}}])
        with pytest.raises(InvalidJobError, match="over the limit"):
            queue.enqueue_many([*specs, {"job_type": "t", "data": {"x": "y" * 70_000}}])
        # In this very transaction, which the refusals left usable:
        assert execute(queue, "SELECT count(*) FROM jobs").scalar_one() == 0
        queue.enqueue_many(specs)
    assert len(stored(engine)) == 2_000


def test_due_key_less_jobs_bypass_insert_statements(executor: Executor, engine: Engine) -> None:
    """Plain and other copyable specs are streamed by COPY on the driver's connection: no
    INSERT passes through SQLAlchemy. Keyed jobs do take the INSERT."""
    with executor.recording() as statements, executor.begin() as queue:
        queue.enqueue_many([{"job_type": "t", "data": {"i": i}} for i in range(3)])
        queue.enqueue_many([{"job_type": "t", "priority": 7}])
        assert not [s for s in statements if "INSERT" in s]
        queue.enqueue_many([{"job_type": "t", "unique_key": "k"}])
        assert [s for s in statements if "INSERT" in s]
    assert len(stored(engine)) == 5
