"""Helpers for tests.

- :mod:`sqla_jobqueue.testing.jobs` (its names are here too): :func:`enqueued` and
  :func:`run_jobs`, jobs in your application's tests, in the test's own transaction;
- :mod:`sqla_jobqueue.testing.server`: a PostgreSQL for tests, found or started the way
  the project's own suite does, and throw-away databases on it;
- :mod:`sqla_jobqueue.testing.pgbouncer`: a real PgBouncer in transaction mode in front of
  it, for tests of code that must work behind a pooler.

Nothing here imports pytest.
"""

from __future__ import annotations

from .jobs import RUNAWAY_ATTEMPTS, enqueued, run_jobs

__all__ = ["RUNAWAY_ATTEMPTS", "enqueued", "run_jobs"]
