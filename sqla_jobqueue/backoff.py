"""Retry delays: exponential backoff with jitter.

A failed attempt that may be retried goes back to ``pending`` with ``run_at`` pushed into
the future by the delay computed here; nothing sleeps. The delay of attempt *n* (counted
from 1) is ``min(cap, base * factor ** (n - 1))``, shortened by up to ``jitter`` of itself
at random so that jobs that failed together do not all come back together.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, func, literal
from sqlalchemy.orm import InstrumentedAttribute

from .errors import InvalidJobError

__all__ = ["DEFAULT_BACKOFF", "Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter.

    Parameters
    ----------
    base:
        Delay after the first failed attempt.
    factor:
        Growth per further attempt (1 gives a constant delay).
    cap:
        Longest delay.
    jitter:
        Fraction (0..1) by which a delay may be shortened at random.
    """

    base: timedelta = timedelta(seconds=2)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.base < timedelta(0):
            raise InvalidJobError(f"Backoff base must be zero or more, got {self.base}")
        if not math.isfinite(self.factor) or self.factor < 1:
            raise InvalidJobError(f"Backoff factor must be at least 1, got {self.factor}")
        if self.cap < self.base:
            raise InvalidJobError(f"Backoff cap {self.cap} is shorter than its base {self.base}")
        if not 0 <= self.jitter <= 1:
            raise InvalidJobError(f"Backoff jitter must be between 0 and 1, got {self.jitter}")

    def bounds(self, attempt: int) -> tuple[timedelta, timedelta]:
        """The shortest and longest delay after failed attempt ``attempt`` (from 1)."""
        exponent = max(attempt, 1) - 1
        try:
            raw = self.base.total_seconds() * self.factor**exponent
        except OverflowError:
            raw = math.inf
        longest = min(self.cap.total_seconds(), raw)
        return timedelta(seconds=longest * (1 - self.jitter)), timedelta(seconds=longest)

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """A delay after failed attempt ``attempt``, drawn within :meth:`bounds`."""
        shortest, longest = self.bounds(attempt)
        draw = (rng or random).random()
        return shortest + (longest - shortest) * draw

    def sql_delay(
        self, attempts: ColumnElement[int] | InstrumentedAttribute[int]
    ) -> ColumnElement[Any]:
        """The same delay as a SQL interval, computed from the row's ``attempts``."""
        cap = self.cap.total_seconds()
        exponent = func.greatest(attempts - 1, 0)
        # Capping the exponent first keeps power() finite for any attempts count.
        max_exponent = (
            math.log(cap / self.base.total_seconds(), self.factor) + 1
            if (self.base.total_seconds() > 0 and self.factor > 1)
            else 0
        )
        grown = literal(self.base.total_seconds(), Float) * func.power(
            literal(self.factor, Float), func.least(exponent, literal(math.ceil(max_exponent)))
        )
        seconds = func.least(literal(cap, Float), grown) * (
            1 - literal(self.jitter, Float) * func.random()
        )
        return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


DEFAULT_BACKOFF = Backoff()
"""The backoff used when neither the handler nor the caller chooses one."""
