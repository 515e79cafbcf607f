"""Backoff arithmetic as the worker relies on it: growth, cap and jitter bounds."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from sqla_jobqueue import Backoff
from sqla_jobqueue.errors import InvalidJobError


def test_delays_grow_by_the_factor_up_to_the_cap() -> None:
    backoff = Backoff(base=timedelta(seconds=2), factor=3, cap=timedelta(seconds=60), jitter=0)
    assert [backoff.delay(n).total_seconds() for n in range(1, 6)] == [2, 6, 18, 54, 60]
    assert backoff.delay(10_000) == timedelta(seconds=60)  # no overflow far out


def test_jitter_only_shortens_within_bounds() -> None:
    backoff = Backoff(base=timedelta(seconds=10), factor=2, jitter=0.5)
    shortest, longest = backoff.bounds(2)
    assert (shortest, longest) == (timedelta(seconds=10), timedelta(seconds=20))
    rng = random.Random(7)
    draws = [backoff.delay(2, rng) for _ in range(200)]
    assert all(shortest <= d <= longest for d in draws)
    assert len(set(draws)) > 100  # actually spread out


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": timedelta(seconds=-1)},
        {"factor": 0.5},
        {"cap": timedelta(seconds=1)},
        {"jitter": 1.5},
    ],
)
def test_bad_backoff_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidJobError):
        Backoff(**kwargs)  # type: ignore[arg-type]
