"""Bad input gets a clear InvalidJobError and nothing is written, on both executors."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sqla_jobqueue.errors import InvalidJobError, ModelError
from tests.integration.executors import Executor


def snapshot(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT * FROM jobs ORDER BY id")).all())


BAD_ENQUEUES: list[tuple[str, dict[str, Any], str]] = [
    ("empty type", {"job_type": ""}, "must not be empty"),
    ("long type", {"job_type": "x" * 51}, "at most 50"),
    ("type not str", {"job_type": 7}, "must be a string"),
    ("data a set", {"job_type": "t", "data": {"ids": {1, 2}}}, r"data\['ids'\] is of type set"),
    ("data bytes", {"job_type": "t", "data": {"b": [b"x"]}}, r"data\['b'\]\[0\] is of type bytes"),
    ("data object", {"job_type": "t", "data": {"o": object()}}, "JSON-serialisable"),
    ("data NaN", {"job_type": "t", "data": {"x": math.nan}}, "NaN"),
    ("data Decimal NaN", {"job_type": "t", "data": {"x": Decimal("NaN")}}, "NaN"),
    ("data infinity", {"job_type": "t", "data": {"x": [math.inf]}}, "NaN or an infinity"),
    ("data NUL", {"job_type": "t", "data": {"x": "a\x00b"}}, "NUL"),
    ("key NUL", {"job_type": "t", "data": {"a\x00": 1}}, "NUL"),
    ("data not object", {"job_type": "t", "data": [1, 2]}, "JSON object"),
    ("data too big", {"job_type": "t", "data": {"blob": "x" * 70_000}}, "over the limit"),
    ("priority too high", {"job_type": "t", "priority": 2**31}, "int32"),
    ("priority too low", {"job_type": "t", "priority": -(2**31) - 1}, "int32"),
    ("priority not int", {"job_type": "t", "priority": 1.5}, "must be an int"),
    ("max_attempts zero", {"job_type": "t", "max_attempts": 0}, "at least 1"),
    ("naive run_at", {"job_type": "t", "run_at": datetime(2030, 1, 1)}, "no time zone"),
    ("run_at string", {"job_type": "t", "run_at": "tomorrow"}, "datetime or a timedelta"),
    ("unique_key long", {"job_type": "t", "unique_key": "k" * 256}, "at most 255"),
]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [case[1:] for case in BAD_ENQUEUES],
    ids=[case[0] for case in BAD_ENQUEUES],
)
def test_bad_enqueue_is_refused_before_writing(
    executor: Executor, engine: Engine, arguments: dict[str, Any], message: str
) -> None:
    with executor.begin() as queue:
        queue.enqueue("existing")
    before = snapshot(engine)
    options = dict(arguments)  # the case is shared by both executors' runs
    job_type = options.pop("job_type")
    with executor.begin() as queue:
        with pytest.raises(InvalidJobError, match=message):
            queue.enqueue(job_type, **options)
        with pytest.raises(InvalidJobError, match=message):
            queue.enqueue_many([{"job_type": "fine"}, {"job_type": job_type, **options}])
    assert snapshot(engine) == before


def test_escaped_backslash_before_u0000_is_not_a_nul(executor: Executor) -> None:
    with executor.begin() as queue:
        job = queue.enqueue("t", {"path": "C:\\u0000dir"})
        assert job.data == {"path": "C:\\u0000dir"}


def test_payload_limit_is_configurable(executor: Executor) -> None:
    with executor.begin(max_payload_bytes=100) as queue:
        with pytest.raises(InvalidJobError, match="over the limit of 100"):
            queue.enqueue("t", {"x": "y" * 100})
        executor.beside(queue, max_payload_bytes=200_000).enqueue("t", {"x": "y" * 100_000})


def test_enqueue_many_rejects_unknown_keys_and_non_mappings(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin() as queue:
        with pytest.raises(InvalidJobError, match=r"job #1 has unknown keys \['priorty'\]"):
            queue.enqueue_many([{"job_type": "a"}, {"job_type": "b", "priorty": 3}])
        with pytest.raises(InvalidJobError, match="job #0 must be a mapping"):
            queue.enqueue_many(["a"])
        with pytest.raises(InvalidJobError, match="job #0 has no job_type"):
            queue.enqueue_many([{"data": {}}])
    assert snapshot(engine) == []


def test_bad_claim_and_progress_arguments(executor: Executor, engine: Engine) -> None:
    with executor.begin() as queue:
        queue.enqueue("t")
        with pytest.raises(InvalidJobError, match="heartbeat needs a worker_id"):
            queue.heartbeat()
    before = snapshot(engine)
    with executor.begin(worker_id="w") as queue:
        for size in (0, -1):
            with pytest.raises(InvalidJobError, match="batch_size must be at least 1"):
                queue.claim(batch_size=size)
        with pytest.raises(InvalidJobError, match="list of job types"):
            queue.claim("t")
        with pytest.raises(InvalidJobError, match="job_types is empty"):
            queue.claim([])
    assert snapshot(engine) == before
    with executor.begin(worker_id="w") as queue:
        (job,) = queue.claim()
        queue.start(job)
    before = snapshot(engine)
    with executor.begin(worker_id="w") as queue:
        for progress in (-1, 101, 250):
            with pytest.raises(InvalidJobError, match="between 0 and 100"):
                queue.update_progress(job.id, progress)
        with pytest.raises(InvalidJobError, match="stage is 101 characters"):
            queue.update_progress(job.id, 10, "s" * 101)
        with pytest.raises(InvalidJobError, match="events must be zero or more"):
            queue.update_progress(job.id, events=-1)
        with pytest.raises(InvalidJobError, match="result must be JSON-serialisable"):
            queue.complete(job.id, {"x": object()})
        with pytest.raises(InvalidJobError, match="run_again_in must be zero or more"):
            queue.fail(job.id, "e", run_again_in=timedelta(seconds=-1))
        with pytest.raises(InvalidJobError, match="timeout must be positive"):
            queue.recover_stale(timedelta(0))
        with pytest.raises(InvalidJobError, match="is not a job id"):
            queue.get("not-a-uuid")
        with pytest.raises(InvalidJobError, match="is not a job id"):
            queue.cancel("nope")
    assert snapshot(engine) == before


@pytest.mark.parametrize("model", [dict, int], ids=["dict", "int"])
def test_a_class_that_is_not_a_job_model_is_refused(executor: Executor, model: type) -> None:
    with pytest.raises(ModelError, match="JobMixin"), executor.begin(model=model):
        pass
