"""Helpers shared by the worker tests: waiting for a condition, counting statuses, a worker
with short intervals."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, Table
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue
from sqla_jobqueue.handlers import Registry
from sqla_jobqueue.worker import Worker

WAIT = 30.0


def wait_for(condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


def statuses(factory: sessionmaker[Session]) -> dict[str, int]:
    """How many jobs of every type are in each status."""
    with factory() as session:
        counts = JobQueue(session).stats().counts
    total: dict[str, int] = {}
    for by_status in counts.values():
        for status, n in by_status.items():
            total[status] = total.get(status, 0) + n
    return total


def fast_worker(engine: Engine, registry: Registry, **options: Any) -> Worker:
    """A worker with short intervals; a live worker's jobs are never stale within 5s."""
    options.setdefault("poll_interval", 0.05)
    options.setdefault("heartbeat_interval", 0.2)
    options.setdefault("stale_timeout", 5)
    options.setdefault("progress_interval", 0.05)
    return Worker(engine, registry, **options)


def job_table(model: Any = Job) -> Table:
    """The job model's table, typed as the ``Table`` it is (``__table__`` is a FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table
