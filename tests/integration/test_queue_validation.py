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


def nested(levels: int) -> dict[str, Any]:
    """``levels`` dicts within each other."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


SURROGATE_IN_X = r"data\['x'\]\[0\] contains a lone surrogate '\\ud800'"

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
    ("type surrogate", {"job_type": "t\ud800"}, "job_type contains a lone surrogate"),
    ("data surrogate", {"job_type": "t", "data": {"x": ["\ud800"]}}, SURROGATE_IN_X),
    ("key surrogate", {"job_type": "t", "data": {"\udc80": 1}}, r"data key '\\udc80' contains a"),
    (
        "unique_key surrogate",
        {"job_type": "t", "unique_key": "\ud800"},
        "unique_key contains a lone surrogate",
    ),
    ("data too deep", {"job_type": "t", "data": nested(5_000)}, "more than 100 levels deep"),
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


BAD_AMONG_PLAIN: list[tuple[str, dict[str, Any], str]] = [
    ("data surrogate", {"job_type": "t", "data": {"x": ["\ud800"]}}, SURROGATE_IN_X),
    ("key surrogate", {"job_type": "t", "data": {"\ud800": 1}}, r"data key '\\ud800' contains"),
    ("type surrogate", {"job_type": "\ud800"}, "job_type contains a lone surrogate"),
    ("data too deep", {"job_type": "t", "data": nested(5_000)}, "more than 100 levels deep"),
    ("data just too deep", {"job_type": "t", "data": nested(101)}, "more than 100 levels deep"),
]


@pytest.mark.parametrize(
    ("bad", "message"),
    [case[1:] for case in BAD_AMONG_PLAIN],
    ids=[case[0] for case in BAD_AMONG_PLAIN],
)
def test_one_bad_job_among_a_thousand_plain_ones_writes_nothing(
    executor: Executor, engine: Engine, bad: dict[str, Any], message: str
) -> None:
    # 999 jobs of the kind enqueue_many loads by COPY, and one that cannot be stored.
    with executor.begin() as queue:
        queue.enqueue("existing")
    before = snapshot(engine)
    jobs: list[dict[str, Any]] = [{"job_type": "t", "data": {"n": n}} for n in range(1_000)]
    jobs[500] = bad
    with executor.begin() as queue, pytest.raises(InvalidJobError, match=message) as refused:
        queue.enqueue_many(jobs)
    assert str(refused.value).startswith("job #500: ")
    assert snapshot(engine) == before
    with executor.begin() as queue:  # the same jobs without it are all written
        assert len(queue.enqueue_many(jobs[:500] + jobs[501:])) == 999
        deepest = queue.enqueue("t", nested(100))
    assert deepest.data == nested(100)
    assert len(snapshot(engine)) == len(before) + 1_000


def test_a_result_or_stage_that_cannot_be_stored_is_refused_before_writing(
    executor: Executor, engine: Engine
) -> None:
    with executor.begin(worker_id="w") as queue:
        queue.enqueue("t")
        (job,) = queue.claim()
        queue.start(job)
    before = snapshot(engine)
    with executor.begin(worker_id="w") as queue:
        with pytest.raises(InvalidJobError, match=r"^stage contains a lone surrogate"):
            queue.update_progress(job.id, 50, "\ud800")
        with pytest.raises(InvalidJobError, match=r"^result\['x'\] contains a lone surrogate"):
            queue.complete(job.id, {"x": "\ud800"})
        with pytest.raises(InvalidJobError, match=r"^result nests dicts and lists more than 100"):
            queue.complete(job.id, nested(5_000))
    assert snapshot(engine) == before


def test_an_error_text_with_a_lone_surrogate_or_a_nul_is_stored_escaped(
    executor: Executor,
) -> None:
    """A failure's text is a diagnostic: it is stored whatever it holds (a handler's
    exception message may carry any string), with NUL and lone surrogates escaped."""
    with executor.begin(worker_id="w") as queue:
        queue.enqueue("t", max_attempts=1)
        (job,) = queue.claim()
        queue.start(job)
        failed = queue.fail(job.id, "ValueError: bad \ud800 byte \x00 here")
    assert failed.last_error == "ValueError: bad \\ud800 byte \\0 here"


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
