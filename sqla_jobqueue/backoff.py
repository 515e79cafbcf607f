"""Backoff: the delay after a failed attempt, exponential with jitter.

A failed attempt with attempts left goes back to ``pending`` with ``run_at`` pushed into
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

from sqlalchemy import ColumnElement, Float, Integer, bindparam, func

from .errors import InvalidJobError

__all__ = ["DEFAULT_BACKOFF", "Backoff", "sql_delay"]


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

    def sql_params(self) -> dict[str, float | int]:
        """The bind parameters of :func:`sql_delay` for this backoff."""
        base = self.base.total_seconds()
        cap = self.cap.total_seconds()
        # Capping the exponent first keeps power() finite for any attempts count.
        max_exponent = (
            math.log(cap / base, self.factor) + 1 if (base > 0 and self.factor > 1) else 0
        )
        return {
            "p_backoff_base": base,
            "p_backoff_factor": float(self.factor),
            "p_backoff_cap": cap,
            "p_backoff_jitter": float(self.jitter),
            "p_backoff_max_exponent": math.ceil(max_exponent),
        }


def sql_delay(attempts: ColumnElement[int]) -> ColumnElement[Any]:
    """A :class:`Backoff`'s delay as a SQL interval, computed from the row's ``attempts``;
    the backoff travels as the parameters of :meth:`Backoff.sql_params`."""

    def param(name: str, type_: Any = None) -> Any:
        return bindparam(f"p_backoff_{name}", type_=type_ or Float())

    exponent = func.least(func.greatest(attempts - 1, 0), param("max_exponent", Integer()))
    grown = param("base") * func.power(param("factor"), exponent)
    seconds = func.least(param("cap"), grown) * (1 - param("jitter") * func.random())
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


DEFAULT_BACKOFF = Backoff()
"""The backoff used when neither the handler nor the caller chooses one."""
