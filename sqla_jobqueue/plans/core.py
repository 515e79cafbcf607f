"""What a plan is, and what both queues know.

A plan is a generator that checks its arguments (raising the errors of
:mod:`sqla_jobqueue.errors` before anything is written), yields requests — a
:class:`~sqla_jobqueue.statements.Bound` statement to execute (answered with its
``Result``), :class:`CanCopy`, :class:`Copy`, :class:`Add`, :class:`Isolation` — and returns
the method's value.
:class:`QueueCore` holds what every plan reads: the model, its statements, the worker id and
the payload limit.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Generator, Iterable
from typing import Any, Generic, NamedTuple, TypeVar, cast

from sqlalchemy import Connection, Table

from .. import validation as check
from ..errors import InvalidJobError, ModelError
from ..model import Job, JobMixin, is_job_table
from ..statements import Bound, JobStatements

__all__ = [
    "Add",
    "CanCopy",
    "Copy",
    "Isolation",
    "JobRef",
    "Plan",
    "QueueCore",
    "Request",
    "default_worker_id",
    "isolation_of",
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


class Isolation(NamedTuple):
    """Ask the isolation level of the session's transaction, as SQLAlchemy knows it without
    a query: answered with :func:`isolation_of` of the session's connection."""


Request = Bound | CanCopy | Copy | Add | Isolation
Plan = Generator[Request, Any, T]
"""A method's logic: yields requests, receives their answers, returns its value."""


def isolation_of(connection: Connection) -> str | None:
    """The isolation level ``connection``'s transactions run at, as SQLAlchemy knows it
    without a query (``"READ COMMITTED"``, ``"REPEATABLE READ"``, ``"SERIALIZABLE"``...).

    That is the ``isolation_level`` execution option of the connection, its engine or its
    session, else the engine's default: the ``isolation_level`` given to ``create_engine``,
    or what the server answered on the engine's first connection (its
    ``default_transaction_isolation``, for the role and database). With ``AUTOCOMMIT`` each
    statement runs alone at that default. A level set in SQL (``SET TRANSACTION``, ``SET
    SESSION CHARACTERISTICS``) is not seen; ``None`` when SQLAlchemy does not know.
    """
    chosen = connection.get_execution_options().get("isolation_level")
    if chosen is None or chosen == "AUTOCOMMIT":
        return connection.default_isolation_level
    return str(chosen)


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
