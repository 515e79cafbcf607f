"""Alembic operations that install, replace and drop a job table's database objects.

Importing :mod:`sqla_jobqueue.alembic` registers them on Alembic's ``op``::

    op.create_job_queue("jobs")                      # claim function + NOTIFY trigger
    op.replace_job_queue("jobs", from_version=1, version=2)
    op.drop_job_queue("jobs")

Each operation names the *version* of the SQL it installs, and shipped versions never
change, so a revision renders the same SQL after any library upgrade. Every operation is
reversible, which is what autogenerate needs to write the downgrade.
"""

from __future__ import annotations

from typing import Any, ClassVar

from alembic.operations import MigrateOperation, Operations
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement
from sqlalchemy.sql.compiler import DDLCompiler

from ..model import default_claim_function_name
from ..sql import CURRENT_VERSION, QueueObjects, install_statements, uninstall_statements

__all__ = ["CreateJobQueueOp", "DropJobQueueOp", "JobQueueOp", "ReplaceJobQueueOp"]

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
