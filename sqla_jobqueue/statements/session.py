"""Settings of a worker's own sessions and transactions: bounded waits, and READ COMMITTED
on the connections it keeps.

They do not depend on a job table: each is built once, here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import String, func, select, text

from .base import Bound, param

__all__ = [
    "LOCK_NOT_AVAILABLE",
    "bound_waits",
    "gave_up_on_a_lock",
    "pin_read_committed",
    "unpin_read_committed",
]

LOCK_NOT_AVAILABLE = "55P03"
"""The SQLSTATE of a statement that waited past its ``lock_timeout`` (or ``NOWAIT``)."""


def gave_up_on_a_lock(error: BaseException) -> bool:
    """Whether a driver error (``DBAPIError``) is a wait past ``lock_timeout``."""
    return getattr(getattr(error, "orig", None), "sqlstate", None) == LOCK_NOT_AVAILABLE


def _local_setting(name: str, value: Any) -> Any:
    """``name`` set to ``value`` until the end of the transaction; a NULL value keeps what
    the session has (a limit a DBA set on the role stays)."""
    return func.set_config(name, func.coalesce(value, func.current_setting(name)), True)


_BOUND_WAITS = select(
    _local_setting("lock_timeout", param("p_lock_timeout", String())),
    _local_setting("idle_in_transaction_session_timeout", param("p_idle_timeout", String())),
)
# Only when the session's default is another level: a session left as it was carries no
# state of the worker's (through a transaction pooler, nothing leaks to other clients).
_PIN = text(
    "SELECT set_config('default_transaction_isolation', 'read committed', false) "
    "WHERE current_setting('default_transaction_isolation') <> 'read committed'"
)
_UNPIN = text("RESET default_transaction_isolation")


def _milliseconds(duration: timedelta | None) -> str | None:
    if duration is None:
        return None
    if duration <= timedelta(0):
        return "0"  # no limit
    return f"{max(1, round(duration.total_seconds() * 1000))}ms"


def bound_waits(lock_timeout: timedelta | None, idle_timeout: timedelta | None) -> Bound:
    """Until the end of the current transaction (as ``SET LOCAL`` would): a statement that
    waits longer than ``lock_timeout`` for a lock fails with ``LockNotAvailable``, and the
    server ends the session when the transaction sits idle longer than ``idle_timeout`` (a
    process stopped mid-transaction, by SIGSTOP or a debugger, then frees what it locked).
    ``None`` leaves that setting as the session has it; zero sets no limit."""
    params = {"p_lock_timeout": _milliseconds(lock_timeout),
              "p_idle_timeout": _milliseconds(idle_timeout)}  # fmt: skip
    return Bound(_BOUND_WAITS, params)


def pin_read_committed() -> Bound:
    """Every later transaction of the session runs at READ COMMITTED, whatever the
    database's or role's ``default_transaction_isolation`` (for an autocommit connection a
    worker keeps: above READ COMMITTED, concurrent claims and heartbeats fail with
    serialization errors). A session already at READ COMMITTED is left as it is."""
    return Bound(_PIN, {})


def unpin_read_committed() -> Bound:
    """Undo :func:`pin_read_committed`, before the connection goes back to a shared pool."""
    return Bound(_UNPIN, {})
