"""Every lifecycle statement of a job table, built once per table: the one place SQL is written.

:meth:`JobStatements.of` builds (and caches) the statements of one mapped job table as
SQLAlchemy Core with named bind parameters, so that each has one fixed text the driver
prepares once. Each method returns a :class:`Bound` statement, its parameters filled in from
values that the caller has checked already; the caller only executes it:
:class:`~sqla_jobqueue.JobQueue` on a ``Session``, :class:`~sqla_jobqueue.AsyncJobQueue` on
an ``AsyncSession``, the worker, the maintenance duties and :mod:`sqla_jobqueue.testing.jobs` on
their connections.

One module per concept, composed by :class:`JobStatements`:

- :mod:`~sqla_jobqueue.statements.fence`: the holder fence (:func:`holder_fence`), the one
  definition of "this worker still holds this attempt of this job", and the stale condition;
- :mod:`~sqla_jobqueue.statements.enqueue`: one job, a page of jobs, the ``COPY`` stream;
- :mod:`~sqla_jobqueue.statements.claim`: the repository's claim and the worker's round;
- :mod:`~sqla_jobqueue.statements.transitions`: the changes of one job;
- :mod:`~sqla_jobqueue.statements.held`: the jobs a worker holds (heartbeats, batched
  progress, release, give back);
- :mod:`~sqla_jobqueue.statements.maintenance`: rescue and prune;
- :mod:`~sqla_jobqueue.statements.reads`: get, listing, counts, probe;
- :mod:`~sqla_jobqueue.statements.bulk`: count, cancel, retry, re-prioritise and delete the
  jobs that match a filter, a chunk at a time;
- :mod:`~sqla_jobqueue.statements.waiting`: marking a job awaited, reading its status;
- :mod:`~sqla_jobqueue.statements.controls`: pausing, resuming and limiting job types;
- :mod:`~sqla_jobqueue.statements.session`: settings of a worker's own sessions and
  transactions (bounded waits, READ COMMITTED);
- :mod:`~sqla_jobqueue.statements.execution`: running a statement on the driver
  (:func:`driver_sql`) or loading models with it (:func:`loading`).
"""

from __future__ import annotations

import functools

from sqlalchemy import Table

from .base import Bound
from .bulk import BulkCriteria, BulkStatements
from .claim import Claimed, ClaimPosition, ClaimStatements, claim_candidates
from .controls import ControlStatements
from .enqueue import EnqueueStatements, copy_data
from .execution import driver_rows, driver_sql, loading
from .fence import holder_fence, stale_condition
from .held import HeldStatements
from .maintenance import MaintenanceStatements
from .reads import ReadStatements
from .transitions import TransitionStatements
from .waiting import WaitStatements

__all__ = [
    "Bound",
    "BulkCriteria",
    "ClaimPosition",
    "Claimed",
    "JobStatements",
    "claim_candidates",
    "copy_data",
    "driver_rows",
    "driver_sql",
    "holder_fence",
    "loading",
    "stale_condition",
]


class JobStatements(
    EnqueueStatements,
    ClaimStatements,
    TransitionStatements,
    HeldStatements,
    MaintenanceStatements,
    ReadStatements,
    WaitStatements,
    BulkStatements,
    ControlStatements,
):
    """The statements of one job table. Get them with :meth:`of`, which builds them once.

    Parameters
    ----------
    table:
        The job table (``Model.__table__``).
    """

    @classmethod
    def of(cls, table: Table) -> JobStatements:
        """The statements of ``table``, built on first use and kept."""
        return _statements_of(table)


@functools.cache
def _statements_of(table: Table) -> JobStatements:
    return JobStatements(table)
