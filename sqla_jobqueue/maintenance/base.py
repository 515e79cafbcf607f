"""What the maintenance duties share: their model, their config and its checks."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from ..errors import InvalidJobError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

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
    """A duty for one job model, run every ``config.interval``.

    A round is one or more short transactions, each :meth:`transaction`; the sync and the
    asyncio worker run the same transactions (the asyncio one through ``run_sync``).
    """

    name: str

    def __init__(self, model: type[Any], config: C) -> None:
        self.model = model
        self.config = config

    @property
    def interval(self) -> float:
        """Seconds between rounds."""
        return self.config.interval.total_seconds()

    def transaction(self, connection: Connection) -> int | None:
        """One transaction of a round, inside it: the jobs changed, or ``None`` when
        another worker holds the duty's lock."""
        raise NotImplementedError

    def wants_another(self, changed: int, transactions: int) -> bool:
        """Whether the round goes on with another transaction (by default it does not)."""
        return False

    def run_once(self, engine: Engine) -> int | None:
        """One round on ``engine``: the jobs changed, ``None`` when another worker holds
        the duty's lock."""
        total: int | None = None
        transactions = 0
        while True:
            with engine.begin() as connection:
                changed = self.transaction(connection)
            transactions += 1
            if changed is None:
                return total
            total = (total or 0) + changed
            if not self.wants_another(changed, transactions):
                return total

    async def run_once_async(self, engine: AsyncEngine) -> int | None:
        """:meth:`run_once` on an ``AsyncEngine``."""
        total: int | None = None
        transactions = 0
        while True:
            async with engine.begin() as connection:
                changed = await connection.run_sync(self.transaction)
            transactions += 1
            if changed is None:
                return total
            total = (total or 0) + changed
            if not self.wants_another(changed, transactions):
                return total
