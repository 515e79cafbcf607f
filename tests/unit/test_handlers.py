"""Registry, Handler, Snooze/Cancel and JobContext without a database."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from sqla_jobqueue import Backoff, Cancel, JobContext, Registry, Retry, Snooze
from sqla_jobqueue.errors import InvalidJobError
from sqla_jobqueue.handlers import Handler


def context(data: dict[str, Any] | str | None = None) -> JobContext:
    return JobContext(
        job_id=uuid.uuid4(),
        job_type="t",
        data={} if data is None else data,
        attempt=1,
        max_attempts=3,
        worker_id="w",
    )


def test_decorator_registers_with_settings_and_returns_the_function() -> None:
    registry = Registry()
    backoff = Backoff(base=timedelta(seconds=1))

    @registry.handler("send", max_attempts=5, backoff=backoff, timeout=timedelta(seconds=9))
    def send(ctx: JobContext) -> None:
        return None

    spec = registry["send"]
    assert send.__name__ == "send" and spec.function is send
    assert (spec.max_attempts, spec.backoff, spec.timeout) == (5, backoff, timedelta(seconds=9))
    assert "send" in registry and registry.job_types == ["send"] and len(registry) == 1


def test_registry_from_a_mapping_of_functions_and_handlers() -> None:
    def a(ctx: JobContext) -> None:
        return None

    registry = Registry({"a": a, "b": Handler("b", a, max_attempts=9)})
    assert list(registry) == ["a", "b"]
    assert registry["a"].max_attempts == 3 and registry["b"].max_attempts == 9
    with pytest.raises(InvalidJobError, match="names a Handler of 'b'"):
        Registry({"c": Handler("b", a)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"job_type": ""}, "job_type"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": timedelta(0)}, "timeout"),
        ({"backoff": 5}, "must be a Backoff"),
        ({"function": "not callable"}, "not callable"),
    ],
)
def test_bad_handler_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"job_type": "x", "function": lambda ctx: None, **kwargs}
    with pytest.raises(InvalidJobError, match=message):
        Handler(**settings)


def test_a_type_has_one_handler_and_unknown_types_are_a_key_error() -> None:
    registry = Registry({"x": lambda ctx: None})
    with pytest.raises(InvalidJobError, match="already has a handler"):
        registry.register("x", lambda ctx: None)
    with pytest.raises(KeyError, match="no handler registered for job type 'y'"):
        registry["y"]


def test_snooze_and_cancel_carry_their_reason() -> None:
    snooze = Snooze(after=timedelta(minutes=5), reason="rate limited")
    assert (snooze.after, snooze.reason, str(snooze)) == (
        timedelta(minutes=5), "rate limited", "rate limited",
    )  # fmt: skip
    assert str(Snooze()) == "snoozed for 0:00:00"
    with pytest.raises(InvalidJobError, match="Snooze after"):
        Snooze(after=timedelta(seconds=-1))
    assert Cancel("gone").reason == "gone"
    assert Cancel().reason == "cancelled by its handler"


def test_the_former_names_still_work_and_say_what_they_are_now() -> None:
    with pytest.warns(DeprecationWarning, match="Retry is now Snooze"):
        former = Retry(timedelta(minutes=1))
    assert isinstance(former, Snooze) and former.after == timedelta(minutes=1)
    registry = Registry()
    backoff = Backoff(base=timedelta(seconds=3))
    with pytest.warns(DeprecationWarning, match="retry= is now backoff="):
        registry.register("old", lambda ctx: None, retry=backoff)
    assert registry["old"].backoff == backoff


def test_progress_is_coalesced_until_taken() -> None:
    ctx = context()
    assert ctx.take_progress() is None
    ctx.progress(10, "download")
    ctx.progress(20)
    ctx.event()
    ctx.event(4)
    assert ctx.take_progress() == (20, "download", 5)
    assert ctx.take_progress() is None  # nothing new to write
    ctx.event(2)
    assert ctx.take_progress() == (20, "download", 2)  # events are a delta
    ctx.give_back_events(2)
    assert ctx.take_progress() == (20, "download", 2)


def test_progress_and_events_are_checked() -> None:
    ctx = context()
    for bad in (101, -1, True, 50.5, "50", None):
        with pytest.raises(InvalidJobError):
            ctx.progress(bad)  # type: ignore[arg-type]
    assert ctx.take_progress() is None  # nothing was recorded
    ctx.progress(50.0)  # type: ignore[arg-type]
    assert ctx.take_progress() == (50, None, 0)
    with pytest.raises(InvalidJobError, match="zero or more"):
        ctx.event(-1)
    with pytest.raises(InvalidJobError):
        ctx.progress(5, "x" * 101)


def test_data_given_as_json_text_is_decoded_once() -> None:
    ctx = context('{"a": [1, 2]}')
    assert ctx.data == {"a": [1, 2]}
    assert ctx.data is ctx.data


def test_a_context_without_a_session_factory_says_so() -> None:
    ctx = context()
    assert not ctx.uses_session
    with pytest.raises(RuntimeError, match=r"ctx\.session is not available here"):
        _ = ctx.session
