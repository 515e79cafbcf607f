"""What a plan is, and what both queues know.

A plan is a generator that checks its arguments (raising the errors of
:mod:`sqla_jobqueue.errors` before anything is written), yields requests — a
:class:`~sqla_jobqueue.statements.Bound` statement to execute (answered with its
``Result``), :class:`CanCopy`, :class:`Copy`, :class:`Add` — and returns the method's value.
:class:`QueueCore` holds what every plan reads: the model, its statements, the worker id and
the payload limit.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Generator, Iterable
from typing import Any, Generic, NamedTuple, TypeVar, cast

from sqlalchemy import Table

from .. import validation as check
from ..errors import InvalidJobError, ModelError
from ..model import Job, JobMixin, is_job_table
from ..statements import Bound, JobStatements

__all__ = [
    "Add",
    "CanCopy",
    "Copy",
    "JobRef",
    "Plan",
    "QueueCore",
    "Request",
    "default_worker_id",
    "job_id_of",
]

J = TypeVar("J", bound=JobMixin)
T = TypeVar("T")

JobRef = uuid.UUID | JobMixin
"""A job given by its id or as a model instance (whose ``attempts`` then fences the write)."""


class CanCopy(NamedTuple):
    """Ask whether the session's connection can take a binary ``COPY`` (psycopg 3)."""


class Copy(NamedTuple):
    """Stream ``chunks`` through ``COPY`` (asked only after :class:`CanCopy` said yes)."""

    sql: str
    chunks: Iterable[bytes]


class Add(NamedTuple):
    """Add an instance to the session (no I/O)."""

    instance: object


Request = Bound | CanCopy | Copy | Add
Plan = Generator[Request, Any, T]
"""A method's logic: yields requests, receives their answers, returns its value."""


def default_worker_id() -> str:
    """``host:pid:random``, at most 100 characters: unique per process start."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class QueueCore(Generic[J]):
    """What both queues know: the model, its statements, the worker, the payload limit.

    Checks its arguments as the queues' constructors document them.
    """

    def __init__(
        self,
        model: type[J] | None,
        worker_id: str | None,
        max_payload_bytes: int,
    ) -> None:
        chosen = cast("type[J]", Job if model is None else model)
        table = getattr(chosen, "__table__", None)
        if not isinstance(table, Table) or not is_job_table(table):
            raise ModelError(
                f"{chosen!r} is not a mapped JobMixin model; map JobMixin onto your "
                "DeclarativeBase (class Job(JobMixin, Base)) or use sqla_jobqueue.Job"
            )
        if worker_id is not None:
            check.check_text(worker_id, "worker_id", 100)
        if isinstance(max_payload_bytes, bool) or not isinstance(max_payload_bytes, int):
            raise InvalidJobError("max_payload_bytes must be an int")
        if max_payload_bytes < 2:
            raise InvalidJobError(f"max_payload_bytes must be at least 2, got {max_payload_bytes}")
        self.model: type[J] = chosen
        self.table: Table = table
        self.statements = JobStatements.of(table)
        self.worker_id = worker_id
        self.max_payload_bytes = max_payload_bytes

    def _needs_worker(self, action: str) -> str:
        if self.worker_id is None:
            raise InvalidJobError(
                f"{action} needs a worker_id: create the {type(self).__name__} with one"
            )
        return self.worker_id


def job_id_of(job: JobRef) -> uuid.UUID:
    """The id of ``job``: a UUID, its text, or a job instance."""
    if isinstance(job, JobMixin):
        return job.id
    if isinstance(job, uuid.UUID):
        return job
    if isinstance(job, str):
        try:
            return uuid.UUID(job)
        except ValueError:
            pass
    raise InvalidJobError(f"{job!r} is not a job id (a UUID) or a job")
