"""What the maintenance duties share: their model, their config and its checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

from ..errors import InvalidJobError

__all__ = ["DutyBase", "check_positive_intervals"]


class _Scheduled(Protocol):
    @property
    def interval(self) -> timedelta: ...


C = TypeVar("C", bound=_Scheduled)


def check_positive_intervals(config: object, *names: str) -> None:
    """Refuse a config whose named fields are not positive timedeltas."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, timedelta) or value <= timedelta(0):
            raise InvalidJobError(
                f"{type(config).__name__}.{name} must be a positive timedelta, got {value!r}"
            )


class DutyBase(Generic[C]):
    """A duty for one job model, run every ``config.interval``."""

    def __init__(self, model: type[Any], config: C) -> None:
        self.model = model
        self.config = config

    @property
    def interval(self) -> float:
        """Seconds between rounds."""
        return self.config.interval.total_seconds()
