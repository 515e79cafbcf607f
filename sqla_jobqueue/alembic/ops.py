"""Alembic operations that install, replace and drop a job table's database objects.

In a revision, call them through the functions of :mod:`sqla_jobqueue.alembic`, which
autogenerate writes and type checkers know::

    import sqla_jobqueue.alembic

    sqla_jobqueue.alembic.create_job_queue("jobs")   # claim function + NOTIFY trigger
    sqla_jobqueue.alembic.replace_job_queue("jobs", from_version=1, version=2)
    sqla_jobqueue.alembic.drop_job_queue("jobs")
    sqla_jobqueue.alembic.grant_job_queue("jobs", enqueuer="app_web", worker="app_worker")
    sqla_jobqueue.alembic.revoke_job_queue("jobs", enqueuer="app_web", worker="app_worker")

Importing :mod:`sqla_jobqueue.alembic` also registers them on Alembic's ``op``
(``op.create_job_queue(...)``), as older revisions call them; Alembic's type stubs for
``op`` cannot list them, so a strictly type-checked revision uses the functions.

Each operation names the *version* of the SQL it installs, and shipped versions never
change, so a revision renders the same SQL after any library upgrade. Every operation is
reversible, which is what autogenerate needs to write the downgrade.

:func:`migrating_alone` guards the migration transaction an ``env.py`` runs (the packaged
one does): one migration of a database at a time, and a ``lock_timeout`` so that a
migration on a busy table fails fast with :class:`MigrationLockTimeout` instead of
waiting behind a worker's transaction with every other query queued behind it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from alembic import op
from alembic.operations import MigrateOperation, Operations
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement
from sqlalchemy.sql.compiler import DDLCompiler

from ..grants import CURRENT_GRANTS_VERSION, JobQueueRoles, grant_statements, revoke_statements
from ..model import default_claim_function_name
from ..sql import (
    CURRENT_VERSION,
    QueueObjects,
    install_statements,
    retire_statements,
    uninstall_statements,
)

__all__ = [
    "CreateJobQueueOp",
    "DropJobQueueOp",
    "GrantJobQueueOp",
    "JobQueueGrantsOp",
    "JobQueueOp",
    "ReplaceJobQueueOp",
    "RevokeJobQueueOp",
    "create_job_queue",
    "drop_job_queue",
    "grant_job_queue",
    "replace_job_queue",
    "revoke_job_queue",
]

_FALLBACK_SCHEMA = "public"


class JobQueueOp(MigrateOperation):
    """What the three operations share: the table they serve and the SQL version."""

    def __init__(
        self,
        table_name: str,
        *,
        schema: str | None = None,
        function_name: str | None = None,
        version: int = CURRENT_VERSION,
    ) -> None:
        self.table_name = table_name
        self.schema = schema
        self.function_name = function_name or default_claim_function_name(table_name)
        self.version = version

    def objects(self, operations: Operations) -> QueueObjects:
        """The objects this operation touches, with the schema resolved."""
        schema = self.schema
        if schema is None:
            dialect = operations.get_context().dialect
            schema = dialect.default_schema_name or _FALLBACK_SCHEMA
        return QueueObjects(schema=schema, table=self.table_name, claim_function=self.function_name)

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments that recreate this operation, in rendering order."""
        return {
            "schema": self.schema,
            "function_name": self.function_name,
            "version": self.version,
        }

    verb: ClassVar[str]
    """The name of the operation on ``op`` (and the first item of its diff tuple)."""

    def to_diff_tuple(self) -> tuple[Any, ...]:
        """What ``alembic check`` reports: the verb, the table and the arguments."""
        return (self.verb, self.table_name, *self.arguments().values())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments().items())
        return f"{type(self).__name__}({self.table_name!r}, {args})"


@Operations.register_operation("create_job_queue")
class CreateJobQueueOp(JobQueueOp):
    """Install the claim function and the enqueue NOTIFY trigger for a job table."""

    verb = "create_job_queue"

    @classmethod
    def create_job_queue(
        cls,
        operations: Operations,
        table_name: str,
        *,
        schema: str | None = None,
        function_name: str | None = None,
        version: int = CURRENT_VERSION,
    ) -> None:
        """Install the job-queue objects of ``version`` for ``table_name``.

        The table must exist. The claim function is ``claim_job_batch`` for a table named
        ``jobs`` and ``claim_<table>_batch`` otherwise, unless ``function_name`` is given.
        """
        operations.invoke(
            cls(table_name, schema=schema, function_name=function_name, version=version)
        )

    def reverse(self) -> DropJobQueueOp:
        return DropJobQueueOp(self.table_name, **self.arguments())


@Operations.register_operation("drop_job_queue")
class DropJobQueueOp(JobQueueOp):
    """Remove the objects that :class:`CreateJobQueueOp` installed."""

    verb = "drop_job_queue"

    @classmethod
    def drop_job_queue(
        cls,
        operations: Operations,
        table_name: str,
        *,
        schema: str | None = None,
        function_name: str | None = None,
        version: int = CURRENT_VERSION,
    ) -> None:
        """Drop the job-queue objects of ``version`` for ``table_name`` (before the table)."""
        operations.invoke(
            cls(table_name, schema=schema, function_name=function_name, version=version)
        )

    def reverse(self) -> CreateJobQueueOp:
        return CreateJobQueueOp(self.table_name, **self.arguments())


@Operations.register_operation("replace_job_queue")
class ReplaceJobQueueOp(JobQueueOp):
    """Replace installed job-queue objects of one version with those of another."""

    verb = "replace_job_queue"

    def __init__(
        self,
        table_name: str,
        *,
        from_version: int,
        schema: str | None = None,
        function_name: str | None = None,
        version: int = CURRENT_VERSION,
    ) -> None:
        super().__init__(table_name, schema=schema, function_name=function_name, version=version)
        self.from_version = from_version

    @classmethod
    def replace_job_queue(
        cls,
        operations: Operations,
        table_name: str,
        *,
        from_version: int,
        schema: str | None = None,
        function_name: str | None = None,
        version: int = CURRENT_VERSION,
    ) -> None:
        """Move the job-queue objects of ``table_name`` from ``from_version`` to ``version``.

        The objects are replaced in place, so grants on the claim function survive;
        ``from_version`` is what the downgrade goes back to.
        """
        operations.invoke(
            cls(
                table_name,
                from_version=from_version,
                schema=schema,
                function_name=function_name,
                version=version,
            )
        )

    def arguments(self) -> dict[str, Any]:
        return {**super().arguments(), "from_version": self.from_version}

    def reverse(self) -> ReplaceJobQueueOp:
        return ReplaceJobQueueOp(
            self.table_name,
            schema=self.schema,
            function_name=self.function_name,
            from_version=self.version,
            version=self.from_version,
        )


def create_job_queue(
    table_name: str,
    *,
    schema: str | None = None,
    function_name: str | None = None,
    version: int = CURRENT_VERSION,
) -> None:
    """Install the job-queue objects of ``version`` for ``table_name`` in this migration.

    Parameters
    ----------
    table_name:
        The job table, which must exist.
    schema:
        Its schema; ``None`` is the migration connection's current schema.
    function_name:
        The claim function: ``claim_job_batch`` for a table named ``jobs`` and
        ``claim_<table>_batch`` otherwise, unless given.
    version:
        The version of the shipped SQL to install.
    """
    op.invoke(
        CreateJobQueueOp(table_name, schema=schema, function_name=function_name, version=version)
    )


def drop_job_queue(
    table_name: str,
    *,
    schema: str | None = None,
    function_name: str | None = None,
    version: int = CURRENT_VERSION,
) -> None:
    """Drop what :func:`create_job_queue` installed, before the table is dropped.

    The parameters are those of :func:`create_job_queue`.
    """
    op.invoke(
        DropJobQueueOp(table_name, schema=schema, function_name=function_name, version=version)
    )


def replace_job_queue(
    table_name: str,
    *,
    from_version: int,
    schema: str | None = None,
    function_name: str | None = None,
    version: int = CURRENT_VERSION,
) -> None:
    """Move the job-queue objects of ``table_name`` from ``from_version`` to ``version``.

    They are replaced in place, so grants on the claim function survive; the other
    parameters are those of :func:`create_job_queue`.
    """
    op.invoke(
        ReplaceJobQueueOp(
            table_name,
            from_version=from_version,
            schema=schema,
            function_name=function_name,
            version=version,
        )
    )


class JobQueueGrantsOp(MigrateOperation):
    """What granting and revoking share: the table, the roles and the privileges' version.

    The roles are those of :class:`~sqla_jobqueue.grants.JobQueueRoles` except the
    migrator: the role that runs the migrations owns what they create.
    """

    verb: ClassVar[str]
    """The name of the operation on ``op`` (and the first item of its diff tuple)."""

    def __init__(
        self,
        table_name: str,
        *,
        enqueuer: str | None = None,
        worker: str | None = None,
        monitor: str | None = None,
        operator: str | None = None,
        schema: str | None = None,
        function_name: str | None = None,
        version: int = CURRENT_GRANTS_VERSION,
    ) -> None:
        self.table_name = table_name
        self.roles = JobQueueRoles(
            enqueuer=enqueuer, worker=worker, monitor=monitor, operator=operator
        )
        self.schema = schema
        self.function_name = function_name or default_claim_function_name(table_name)
        self.version = version

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments that recreate this operation, in rendering order."""
        named = {kind.value: role for kind, role in self.roles.named().items()}
        return {
            **named,
            "schema": self.schema,
            "function_name": self.function_name,
            "version": self.version,
        }

    def statement_arguments(self) -> dict[str, Any]:
        """The arguments of :func:`~sqla_jobqueue.grants.grant_statements` (and revoke)."""
        return {
            "schema": self.schema,
            "claim_function": self.function_name,
            "version": self.version,
        }

    def to_diff_tuple(self) -> tuple[Any, ...]:
        """The verb, the table and the arguments."""
        return (self.verb, self.table_name, *self.arguments().values())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments().items())
        return f"{type(self).__name__}({self.table_name!r}, {args})"


@Operations.register_operation("grant_job_queue")
class GrantJobQueueOp(JobQueueGrantsOp):
    """Give each named role its least privileges on a job table (see
    :mod:`sqla_jobqueue.grants`)."""

    verb = "grant_job_queue"

    @classmethod
    def grant_job_queue(
        cls,
        operations: Operations,
        table_name: str,
        *,
        enqueuer: str | None = None,
        worker: str | None = None,
        monitor: str | None = None,
        operator: str | None = None,
        schema: str | None = None,
        function_name: str | None = None,
        version: int = CURRENT_GRANTS_VERSION,
    ) -> None:
        """Grant the privileges of ``version`` on ``table_name`` to the named roles."""
        operations.invoke(
            cls(
                table_name,
                enqueuer=enqueuer,
                worker=worker,
                monitor=monitor,
                operator=operator,
                schema=schema,
                function_name=function_name,
                version=version,
            )
        )

    def reverse(self) -> RevokeJobQueueOp:
        return RevokeJobQueueOp(self.table_name, **self.arguments())


@Operations.register_operation("revoke_job_queue")
class RevokeJobQueueOp(JobQueueGrantsOp):
    """Take back what :class:`GrantJobQueueOp` gave the same roles."""

    verb = "revoke_job_queue"

    @classmethod
    def revoke_job_queue(
        cls,
        operations: Operations,
        table_name: str,
        *,
        enqueuer: str | None = None,
        worker: str | None = None,
        monitor: str | None = None,
        operator: str | None = None,
        schema: str | None = None,
        function_name: str | None = None,
        version: int = CURRENT_GRANTS_VERSION,
    ) -> None:
        """Revoke the privileges of ``version`` on ``table_name`` from the named roles."""
        operations.invoke(
            cls(
                table_name,
                enqueuer=enqueuer,
                worker=worker,
                monitor=monitor,
                operator=operator,
                schema=schema,
                function_name=function_name,
                version=version,
            )
        )

    def reverse(self) -> GrantJobQueueOp:
        return GrantJobQueueOp(self.table_name, **self.arguments())


def grant_job_queue(
    table_name: str,
    *,
    enqueuer: str | None = None,
    worker: str | None = None,
    monitor: str | None = None,
    operator: str | None = None,
    schema: str | None = None,
    function_name: str | None = None,
    version: int = CURRENT_GRANTS_VERSION,
) -> None:
    """Give each named role its least privileges on ``table_name`` in this migration.

    Parameters
    ----------
    table_name:
        The job table; run this after :func:`create_job_queue`, as the table's owner.
    enqueuer, worker, monitor, operator:
        The roles that play each part (see :mod:`sqla_jobqueue.grants`); at least one.
    schema:
        The table's schema; ``None`` leaves the names to the ``search_path``.
    function_name:
        The claim function, as given to :func:`create_job_queue`.
    version:
        The version of the privileges: a revision grants the same ones after any
        library upgrade.
    """
    op.invoke(
        GrantJobQueueOp(
            table_name,
            enqueuer=enqueuer,
            worker=worker,
            monitor=monitor,
            operator=operator,
            schema=schema,
            function_name=function_name,
            version=version,
        )
    )


def revoke_job_queue(
    table_name: str,
    *,
    enqueuer: str | None = None,
    worker: str | None = None,
    monitor: str | None = None,
    operator: str | None = None,
    schema: str | None = None,
    function_name: str | None = None,
    version: int = CURRENT_GRANTS_VERSION,
) -> None:
    """Take back what :func:`grant_job_queue` gave (the downgrade of a grant); the
    parameters are the same."""
    op.invoke(
        RevokeJobQueueOp(
            table_name,
            enqueuer=enqueuer,
            worker=worker,
            monitor=monitor,
            operator=operator,
            schema=schema,
            function_name=function_name,
            version=version,
        )
    )


class _Verbatim(ExecutableDDLElement):
    """A statement that reaches the database, or the ``--sql`` script, exactly as written.

    A ``text()`` construct compiled by a ``pyformat`` dialect (psycopg, psycopg2) doubles
    every ``%``; offline, that doubled text is what Alembic writes, and a function body
    with ``RAISE '... %'`` no longer compiles. This element compiles to its text unchanged,
    and runs online without parameters, so the driver never reads its ``%`` either.
    """

    def __init__(self, statement: str) -> None:
        self.statement = statement


@compiles(_Verbatim)
def _compile_verbatim(element: _Verbatim, compiler: DDLCompiler, **kw: Any) -> str:
    return element.statement


def _run(operations: Operations, statements: list[str]) -> None:
    for statement in statements:
        operations.execute(_Verbatim(statement), execution_options={"no_parameters": True})


@Operations.implementation_for(CreateJobQueueOp)
def _create_job_queue(operations: Operations, operation: CreateJobQueueOp) -> None:
    _run(operations, install_statements(operation.objects(operations), operation.version))


@Operations.implementation_for(DropJobQueueOp)
def _drop_job_queue(operations: Operations, operation: DropJobQueueOp) -> None:
    _run(operations, uninstall_statements(operation.objects(operations), operation.version))


@Operations.implementation_for(ReplaceJobQueueOp)
def _replace_job_queue(operations: Operations, operation: ReplaceJobQueueOp) -> None:
    # Every install.sql creates with CREATE OR REPLACE, so installing the target version
    # over the old one keeps grants on the claim function. Going back, what the newer
    # versions added goes first (a trigger may name a column the revision drops next).
    objects = operation.objects(operations)
    for newer in range(operation.from_version, operation.version, -1):
        _run(operations, retire_statements(objects, newer))
    _run(operations, install_statements(objects, operation.version))


@Operations.implementation_for(GrantJobQueueOp)
def _grant_job_queue(operations: Operations, operation: GrantJobQueueOp) -> None:
    _run(
        operations,
        grant_statements(operation.table_name, operation.roles, **operation.statement_arguments()),
    )


@Operations.implementation_for(RevokeJobQueueOp)
def _revoke_job_queue(operations: Operations, operation: RevokeJobQueueOp) -> None:
    _run(
        operations,
        revoke_statements(operation.table_name, operation.roles, **operation.statement_arguments()),
    )
