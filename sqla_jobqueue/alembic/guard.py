"""A migration that runs alone and never hangs behind a busy table.

:func:`migrating_alone` (used by the packaged ``env.py``, by ``sqla-jobqueue migrate``, and
by an application's own ``env.py`` as docs/alembic.md shows) takes a per-database advisory
lock, so that two ``alembic upgrade`` runs started at once migrate once, and sets a
``lock_timeout`` (:func:`migration_lock_timeout`), so that a migration behind a worker's or
the application's transaction fails fast with what to do.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from datetime import timedelta

from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError

from ..maintenance.lock import LOCK_CLASS_ID
from ..statements.session import bound_waits, gave_up_on_a_lock

__all__ = [
    "DEFAULT_MIGRATION_LOCK_TIMEOUT",
    "MIGRATION_LOCK_KEY",
    "MIGRATION_LOCK_TIMEOUT_OPTION",
    "MIGRATION_LOCK_TIMEOUT_VARIABLE",
    "MigrationLockTimeout",
    "migrating_alone",
    "migration_lock_timeout",
]

MIGRATION_LOCK_KEY = 0
"""The second key of the advisory lock a migration holds (the first is
:data:`~sqla_jobqueue.maintenance.lock.LOCK_CLASS_ID`; maintenance duties' second keys are
hashes of duty and table). One lock per database: migrations of a database run one at a
time."""
MIGRATION_LOCK_TIMEOUT_VARIABLE = "SQLA_JOBQUEUE_MIGRATION_LOCK_TIMEOUT"
"""The environment variable that sets a migration's ``lock_timeout`` (``30s``, ``2m``, ``0``
for no limit); it wins over :data:`MIGRATION_LOCK_TIMEOUT_OPTION`."""
MIGRATION_LOCK_TIMEOUT_OPTION = "sqla_jobqueue.lock_timeout"
"""The Alembic option (in ``alembic.ini``'s ``[alembic]`` section, or
``Config.set_main_option``) that sets a migration's ``lock_timeout``."""
DEFAULT_MIGRATION_LOCK_TIMEOUT = timedelta(seconds=5)
"""How long a migration's statement waits for a lock before the migration fails, unless
configured otherwise."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m)")
_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1)}
_LONGEST_LOCK_TIMEOUT = timedelta(milliseconds=2**31 - 1)
"""PostgreSQL's largest ``lock_timeout`` (about 24 days)."""
_TAKE_MIGRATION_LOCK = select(func.pg_advisory_xact_lock(LOCK_CLASS_ID, MIGRATION_LOCK_KEY))


class MigrationLockTimeout(CommandError):
    """A migration waited longer than its ``lock_timeout`` for a lock and was rolled back.

    A :class:`~alembic.util.CommandError`, so the ``alembic`` command line prints it as one
    ``FAILED:`` line; the message says what to do.
    """


def migration_lock_timeout(config: Config | None = None) -> timedelta | None:
    """The ``lock_timeout`` a migration runs with; ``None`` waits without limit.

    From :data:`MIGRATION_LOCK_TIMEOUT_VARIABLE`, else the option
    :data:`MIGRATION_LOCK_TIMEOUT_OPTION` of ``config``, else
    :data:`DEFAULT_MIGRATION_LOCK_TIMEOUT`. A value is a number of milliseconds, seconds
    or minutes (``500ms``, ``5s``, ``1.5m``); ``0`` waits without limit.

    Raises
    ------
    CommandError
        When the value is not such a duration or is longer than PostgreSQL allows
        (about 24 days).
    """
    value = os.environ.get(MIGRATION_LOCK_TIMEOUT_VARIABLE, "").strip()
    source = MIGRATION_LOCK_TIMEOUT_VARIABLE
    if not value and config is not None:
        value = (config.get_main_option(MIGRATION_LOCK_TIMEOUT_OPTION) or "").strip()
        source = MIGRATION_LOCK_TIMEOUT_OPTION
    if not value:
        return DEFAULT_MIGRATION_LOCK_TIMEOUT
    if value == "0":
        return None
    found = _DURATION.fullmatch(value.lower())
    duration = float(found[1]) * _UNITS[found[2]] if found else None
    if duration == timedelta(0):
        return None
    if duration is None or duration > _LONGEST_LOCK_TIMEOUT:
        shown = repr(value) if len(value) <= 40 else repr(value[:37] + "...")
        raise CommandError(
            f"{source} is {shown}: write a lock timeout of at most 24 days as a number and a "
            "unit (500ms, 5s, 2m), or 0 for no limit; nothing was migrated"
        )
    return duration


def _duration_text(duration: timedelta) -> str:
    milliseconds = round(duration.total_seconds() * 1000)
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


@contextlib.contextmanager
def migrating_alone(connection: Connection, lock_timeout: timedelta | None) -> Iterator[None]:
    """Run the block (``context.run_migrations()``) as the only migration of the database,
    each of its statements waiting at most ``lock_timeout`` for a lock.

    Use it inside ``context.begin_transaction()``: it takes a transaction-level advisory
    lock, which a concurrent migration waits for, so that migration starts after this one
    committed and finds the database at head (its transaction must be READ COMMITTED to
    see that: a snapshot taken before the wait would not). The ``lock_timeout`` is local
    to the transaction and starts after that wait.

    Raises
    ------
    MigrationLockTimeout
        When a statement waited longer than ``lock_timeout`` for a lock, typically an
        ``ALTER TABLE`` or ``CREATE INDEX`` behind a worker's or the application's
        transaction on the same table; the transaction is rolled back by Alembic.
    """
    migrating = False
    try:
        connection.execute(_TAKE_MIGRATION_LOCK)
        # No limit is a lock_timeout of zero (None would keep the session's own).
        connection.execute(*bound_waits(lock_timeout or timedelta(0), None))
        migrating = True
        yield
    except DBAPIError as error:
        if not gave_up_on_a_lock(error):
            raise
        if not migrating:
            raise MigrationLockTimeout(
                "another migration of this database is running (it holds sqla_jobqueue's "
                "migration lock) and this one stopped waiting at the server's lock_timeout; "
                "nothing was migrated: run it again once that migration has finished"
            ) from None
        if lock_timeout is None:
            raise  # not a timeout of ours: a NOWAIT in the migration itself
        statement = " ".join(str(error.statement or "").split())
        shown = statement if len(statement) <= 100 else statement[:97] + "..."
        said = str(error.orig).strip().splitlines()[0]
        raise MigrationLockTimeout(
            f"the migration waited more than lock_timeout ({_duration_text(lock_timeout)}) for "
            "a lock on a table it changes, held by another transaction (a worker's or the "
            "application's), and was rolled back rather than hold up every query on that "
            f"table: run it again when the database is quieter, or allow a longer wait with "
            f"{MIGRATION_LOCK_TIMEOUT_VARIABLE}=30s (or {MIGRATION_LOCK_TIMEOUT_OPTION} in "
            f"alembic.ini; 0 waits without limit). PostgreSQL: {said}; waiting: {shown}"
        ) from None
