"""What the maintenance duties share: their model, their config and its checks, and how a
round runs its transactions without ever waiting long on someone else's lock."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..errors import InvalidJobError
from ..statements.session import bound_waits, gave_up_on_a_lock

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "DUTY_IDLE_TIMEOUT",
    "DUTY_LOCK_TIMEOUT",
    "DutyBase",
    "check_batch_limit",
    "check_positive_intervals",
]

log = logging.getLogger("sqla_jobqueue.maintenance")

DUTY_LOCK_TIMEOUT = timedelta(seconds=1)
"""The longest a duty's transaction waits for a lock another transaction holds (its
``lock_timeout``, local to the transaction). Rows locked by others are skipped and never
waited for; this bounds the other waits, such as on a ``LOCK TABLE``, an ``ALTER TABLE``
or a ``CREATE INDEX`` on the job table: the round gives up and the next one tries again."""

DUTY_IDLE_TIMEOUT = timedelta(seconds=10)
"""The longest a duty's transaction may sit idle before the server ends its session: a
worker stopped mid-round (SIGSTOP, a debugger) would otherwise keep the duty's advisory
lock, and every other worker from doing the duty, until it is resumed."""


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


def check_batch_limit(config: object) -> None:
    """Refuse a config whose ``batch_limit`` is not an int of at least 1."""
    limit = getattr(config, "batch_limit")  # noqa: B009 - every batched config has one
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidJobError(
            f"{type(config).__name__}.batch_limit must be an int >= 1, got {limit!r}"
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

    def _bounded_transaction(self, connection: Connection) -> int | None:
        connection.execute(*bound_waits(DUTY_LOCK_TIMEOUT, DUTY_IDLE_TIMEOUT))
        return self.transaction(connection)

    def _gave_up_on_a_lock(self, error: DBAPIError) -> bool:
        if not gave_up_on_a_lock(error):
            return False
        log.warning(
            "%s: gave up this round on %s after waiting %gs for a lock another transaction "
            "holds (%s); the next round tries again",
            self.name,
            self.model.__table__.fullname,
            DUTY_LOCK_TIMEOUT.total_seconds(),
            str(error.orig).strip().splitlines()[0],
        )
        return True

    def wants_another(self, changed: int, transactions: int) -> bool:
        """Whether the round goes on with another transaction (by default it does not)."""
        return False

    def run_once(self, engine: Engine) -> int | None:
        """One round on ``engine``: the jobs changed, ``None`` when another worker holds
        the duty's lock or when a lock held by another transaction kept the round waiting
        longer than :data:`DUTY_LOCK_TIMEOUT` before it changed anything.

        Jobs whose rows other transactions have locked are skipped, never waited for: a
        later round handles them.
        """
        total: int | None = None
        transactions = 0
        while True:
            try:
                with engine.begin() as connection:
                    changed = self._bounded_transaction(connection)
            except DBAPIError as error:
                if self._gave_up_on_a_lock(error):
                    return total
                raise
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
            try:
                async with engine.begin() as connection:
                    changed = await connection.run_sync(self._bounded_transaction)
            except DBAPIError as error:
                if self._gave_up_on_a_lock(error):
                    return total
                raise
            transactions += 1
            if changed is None:
                return total
            total = (total or 0) + changed
            if not self.wants_another(changed, transactions):
                return total
