"""Alembic operations that install, replace and drop a job table's database objects.

In a revision, call them through the functions of :mod:`sqla_jobqueue.alembic`, which
autogenerate writes and type checkers know::

    import sqla_jobqueue.alembic

    sqla_jobqueue.alembic.create_job_queue("jobs")   # claim function + NOTIFY trigger
    sqla_jobqueue.alembic.replace_job_queue("jobs", from_version=1, version=2)
    sqla_jobqueue.alembic.drop_job_queue("jobs")

Importing :mod:`sqla_jobqueue.alembic` also registers them on Alembic's ``op``
(``op.create_job_queue(...)``), as older revisions call them; Alembic's type stubs for
``op`` cannot list them, so a strictly type-checked revision uses the functions.

Each operation names the *version* of the SQL it installs, and shipped versions never
change, so a revision renders the same SQL after any library upgrade. Every operation is
reversible, which is what autogenerate needs to write the downgrade.
"""

from __future__ import annotations

from typing import Any, ClassVar

from alembic import op
from alembic.operations import MigrateOperation, Operations
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement
from sqlalchemy.sql.compiler import DDLCompiler

from ..model import default_claim_function_name
from ..sql import CURRENT_VERSION, QueueObjects, install_statements, uninstall_statements

__all__ = [
    "CreateJobQueueOp",
    "DropJobQueueOp",
    "JobQueueOp",
    "ReplaceJobQueueOp",
    "create_job_queue",
    "drop_job_queue",
    "replace_job_queue",
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
    # Every install.sql creates with CREATE OR REPLACE (and drops what it retires), so
    # installing the target version over the old one keeps grants on the claim function.
    _run(operations, install_statements(operation.objects(operations), operation.version))
