"""Least-privilege roles of a job table: who needs which privileges, as SQL statements.

Five kinds of database role use a job table, and each gets exactly what its statements
touch, column by column where that is what least privilege means:

``enqueuer`` (the web application)
    ``INSERT`` of the columns a job is enqueued with (``id``, ``job_type``, ``data``,
    ``priority``, ``max_attempts``, ``run_at``, ``unique_key``, since version 3
    ``depends_on`` and since version 4 ``concurrency_key``: a job cannot be written as
    running or finished; the insert trigger, as the table's owner, makes a job that
    depends on others ``waiting``), ``SELECT`` of
    the columns that say which job holds a ``unique_key`` and where it stands (``id``,
    ``job_type``, ``status``, ``unique_key``, ``created_at``, ``run_at``): ``INSERT …
    RETURNING`` and ``ON CONFLICT`` read them; and ``UPDATE`` of ``awaited`` alone, to
    wait for a job (``JobQueue.wait``) or make jobs depend on it. Never ``data``,
    ``result`` or ``last_error`` of any job, never ``DELETE``: an enqueuer that waits
    for results is a monitor too.
``worker``
    ``SELECT`` of the table (it runs what it claims), ``UPDATE`` of the columns that record
    a job's state and progress (never what was asked: ``job_type``, ``data``, ``priority``,
    ``unique_key``, ``created_at``), ``DELETE`` (its pruning duty) and ``EXECUTE`` on the
    claim function and (version 3) the settle function and (version 4) the limited claim
    function, and ``SELECT`` of the controls table (claims pass over paused types) and,
    since version 4, ``UPDATE`` of its ``rate_tokens`` and ``rate_refilled_at``: a claim of
    a limited type locks its row and takes tokens from its rate limit's bucket. A worker
    whose handlers enqueue jobs is an enqueuer too.
``monitor`` (``status``, ``watch``, ``list``, ``show``)
    ``SELECT`` of the table and its controls table, nothing else.
``operator`` (``cancel``, ``retry``, ``recover``, ``prune``, and the monitor's reads)
    ``SELECT``, ``UPDATE`` of the state columns those four write (and ``awaited``),
    ``DELETE``, ``EXECUTE`` on the settle function (cancelling a job settles the jobs
    that depend on it), and ``SELECT``, ``INSERT``, ``UPDATE`` of the controls table
    (``pause``, ``resume``, ``limit``).
``migrator``
    Owns the table and its functions, so that it can alter, replace and drop them
    (``ALTER … OWNER TO``); it is the role that runs the migrations.

The installed functions but one are ``SECURITY INVOKER``: the claim function runs with its
caller's privileges, which is why the worker's table privileges cover what it does; the
NOTIFY trigger's function needs no privilege of the enqueuer (PostgreSQL checks
``EXECUTE`` on a trigger function when the trigger is created, not when it fires); since
version 3 it runs as the table's owner (``SECURITY DEFINER``), to make the jobs just
inserted with ``depends_on`` wait, and touches no other row. Every
role also needs ``USAGE`` on the table's schema, which ``public`` grants to everyone.

:func:`grant_statements` and :func:`revoke_statements` write the statements for one
table; ``sqla_jobqueue.alembic.grant_job_queue`` runs them in a migration and
``sqla-jobqueue grants`` prints them. Like the installed SQL, the privileges of a version
never change: a revision that names version N grants the same privileges after any
library upgrade.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace

from sqlalchemy.dialects.postgresql.base import PGDialect

from .model import default_claim_function_name
from .sql import MAX_IDENTIFIER_LENGTH, QueueObjects, controls_table_name

__all__ = [
    "CURRENT_GRANTS_VERSION",
    "JobQueueRoles",
    "RoleKind",
    "RolePrivileges",
    "grant_statements",
    "privileges",
    "revoke_statements",
]

CURRENT_GRANTS_VERSION = 4
"""The version of the roles' privileges that this release grants."""

_preparer = PGDialect().identifier_preparer  # type: ignore[no-untyped-call]


class RoleKind(str, enum.Enum):
    """The kinds of database role that use a job table."""

    ENQUEUER = "enqueuer"
    WORKER = "worker"
    MONITOR = "monitor"
    OPERATOR = "operator"
    MIGRATOR = "migrator"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RolePrivileges:
    """What one kind of role may do on a job table.

    ``select``, ``insert`` and ``update`` name columns; ``None`` is the whole table and an
    empty tuple nothing. ``owns`` means the role owns the table and its functions.
    """

    select: tuple[str, ...] | None = ()
    insert: tuple[str, ...] | None = ()
    update: tuple[str, ...] | None = ()
    delete: bool = False
    execute_claim_function: bool = False
    execute_settle_function: bool = False
    controls: tuple[str, ...] = ()
    """Privileges on the controls table (``SELECT``, ``INSERT``, ``UPDATE``)."""
    owns: bool = False


_WRITTEN_BY_WORKERS = (
    "status",
    "worker_id",
    "claimed_at",
    "started_at",
    "heartbeat_at",
    "completed_at",
    "attempts",
    "max_attempts",  # a snoozed job gets its attempt back
    "run_at",
    "progress",
    "current_stage",
    "events_count",
    "last_error",
    "result",
)
_WRITTEN_BY_OPERATORS = (
    "status",
    "worker_id",
    "claimed_at",
    "started_at",
    "heartbeat_at",
    "completed_at",
    "attempts",
    "run_at",
    "progress",  # retry starts over at 0
    "last_error",  # recover says why a job came back
)


def _version_1() -> dict[RoleKind, RolePrivileges]:
    return {
        RoleKind.ENQUEUER: RolePrivileges(
            select=("id", "job_type", "status", "unique_key", "created_at", "run_at"),
            insert=("id", "job_type", "data", "priority", "max_attempts", "run_at", "unique_key"),
        ),
        RoleKind.WORKER: RolePrivileges(
            select=None, update=_WRITTEN_BY_WORKERS, delete=True, execute_claim_function=True
        ),
        RoleKind.MONITOR: RolePrivileges(select=None),
        RoleKind.OPERATOR: RolePrivileges(select=None, update=_WRITTEN_BY_OPERATORS, delete=True),
        RoleKind.MIGRATOR: RolePrivileges(owns=True),
    }


def _version_2() -> dict[RoleKind, RolePrivileges]:
    """Version 1, and the rescue (a worker's duty, an operator's ``recover``) counts the
    crashes of the jobs it takes back and gives an attempt more to those that ran beside
    others."""
    roles = _version_1()
    worker, operator = roles[RoleKind.WORKER], roles[RoleKind.OPERATOR]
    roles[RoleKind.WORKER] = replace(worker, update=(*(worker.update or ()), "crashes"))
    roles[RoleKind.OPERATOR] = replace(
        operator, update=(*(operator.update or ()), "max_attempts", "crashes")
    )
    return roles


def _version_3() -> dict[RoleKind, RolePrivileges]:
    """Version 2, and whoever may enqueue or act on jobs may wait for one and make jobs
    depend on it (both mark it ``awaited``); whoever finishes jobs settles the jobs that
    depend on them (the settle function, which the finishing trigger calls)."""
    roles = _version_2()
    for kind in (RoleKind.ENQUEUER, RoleKind.OPERATOR):
        granted = roles[kind]
        roles[kind] = replace(granted, update=(*(granted.update or ()), "awaited"))
    enqueuer = roles[RoleKind.ENQUEUER]
    roles[RoleKind.ENQUEUER] = replace(enqueuer, insert=(*(enqueuer.insert or ()), "depends_on"))
    for kind in (RoleKind.WORKER, RoleKind.OPERATOR):
        roles[kind] = replace(roles[kind], execute_settle_function=True)
    # Every claim reads the paused types; operators pause and resume them.
    for kind in (RoleKind.WORKER, RoleKind.MONITOR):
        roles[kind] = replace(roles[kind], controls=("SELECT",))
    roles[RoleKind.OPERATOR] = replace(
        roles[RoleKind.OPERATOR], controls=("SELECT", "INSERT", "UPDATE")
    )
    return roles


def _version_4() -> dict[RoleKind, RolePrivileges]:
    """Version 3, and limits: an enqueuer gives a job its ``concurrency_key``; a worker
    runs the limited claim function (with the claim function's ``EXECUTE``), which locks
    the controls rows of limited types and writes their rate limits' buckets."""
    roles = _version_3()
    enqueuer = roles[RoleKind.ENQUEUER]
    roles[RoleKind.ENQUEUER] = replace(
        enqueuer, insert=(*(enqueuer.insert or ()), "concurrency_key")
    )
    roles[RoleKind.WORKER] = replace(
        roles[RoleKind.WORKER], controls=("SELECT", "UPDATE (rate_tokens, rate_refilled_at)")
    )
    return roles


_VERSIONS: dict[int, dict[RoleKind, RolePrivileges]] = {
    1: _version_1(),
    2: _version_2(),
    3: _version_3(),
    4: _version_4(),
}


def privileges(kind: RoleKind | str, version: int = CURRENT_GRANTS_VERSION) -> RolePrivileges:
    """What a role of ``kind`` may do on a job table in the privileges of ``version``."""
    if version not in _VERSIONS:
        raise ValueError(
            f"sqla_jobqueue knows the privileges of versions {sorted(_VERSIONS)}, not "
            f"{version}; upgrade sqla_jobqueue to run this revision"
        )
    return _VERSIONS[version][RoleKind(kind)]


@dataclass(frozen=True)
class JobQueueRoles:
    """The database roles that play each part for one job table; ``None`` for a part
    nobody plays. One role may play several parts: it gets the privileges of each.

    Raises
    ------
    ValueError
        When a name is empty or longer than PostgreSQL's 63 bytes.
    """

    enqueuer: str | None = None
    worker: str | None = None
    monitor: str | None = None
    operator: str | None = None
    migrator: str | None = None

    def __post_init__(self) -> None:
        for kind, name in self.named().items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"the {kind} role must be a role name, got {name!r}")
            if "\x00" in name or len(name.encode()) > MAX_IDENTIFIER_LENGTH:
                raise ValueError(
                    f"the {kind} role {name!r} is not a PostgreSQL role name (at most "
                    f"{MAX_IDENTIFIER_LENGTH} bytes, no NUL)"
                )
        if not self.named():
            raise ValueError(
                "name at least one role: enqueuer, worker, monitor, operator, migrator"
            )

    def named(self) -> dict[RoleKind, str]:
        """The parts someone plays, and who, in the order of :class:`RoleKind`."""
        given = {field.name: getattr(self, field.name) for field in fields(self)}
        return {kind: given[kind.value] for kind in RoleKind if given[kind.value] is not None}


def _objects(table: str, schema: str | None, claim_function: str | None) -> QueueObjects:
    return QueueObjects(
        schema=schema or "",
        table=table,
        claim_function=claim_function or default_claim_function_name(table),
    )


def _name(schema: str | None, name: str) -> str:
    quoted = _preparer.quote(name)
    return quoted if schema is None else f"{_preparer.quote(schema)}.{quoted}"


def _columns(privilege: str, columns: tuple[str, ...] | None) -> list[str]:
    if columns is None:
        return [privilege]
    if not columns:
        return []
    return [f"{privilege} ({', '.join(_preparer.quote(c) for c in columns)})"]


def _table_privileges(granted: RolePrivileges) -> list[str]:
    return [
        *_columns("SELECT", granted.select),
        *_columns("INSERT", granted.insert),
        *_columns("UPDATE", granted.update),
        *(["DELETE"] if granted.delete else []),
    ]


def grant_statements(
    table: str,
    roles: JobQueueRoles,
    *,
    schema: str | None = None,
    claim_function: str | None = None,
    version: int = CURRENT_GRANTS_VERSION,
) -> list[str]:
    """The statements that give each role of ``roles`` its privileges on a job table.

    Parameters
    ----------
    table:
        The job table's name.
    roles:
        Who plays which part.
    schema:
        The table's schema; ``None`` leaves the names unqualified (the ``search_path``
        finds them, as it found the table when it was created).
    claim_function:
        The claim function's name, by default that of :func:`create_job_queue`.
    version:
        The version of the privileges to grant.
    """
    objects = _objects(table, schema, claim_function)
    qualified_table = _name(schema, table)
    statements = []
    for kind, role in roles.named().items():
        granted = privileges(kind, version)
        grantee = _preparer.quote(role)
        if granted.owns:
            statements += [
                f"ALTER TABLE {qualified_table} OWNER TO {grantee}",
                f"ALTER FUNCTION {_claim_signature(objects, schema)} OWNER TO {grantee}",
                f"ALTER FUNCTION {_name(schema, objects.notify_function)}() OWNER TO {grantee}",
            ]
            if version >= 3:
                function = _name(schema, objects.finished_function)
                statements += [
                    f"ALTER TABLE {_name(schema, controls_table_name(table))} OWNER TO {grantee}",
                    f"ALTER FUNCTION {function}() OWNER TO {grantee}",
                    f"ALTER FUNCTION {_settle_signature(objects, schema)} OWNER TO {grantee}",
                ]
            if version >= 4:
                statements.append(
                    f"ALTER FUNCTION {_limited_claim_signature(objects, schema)} OWNER TO {grantee}"
                )
            continue
        statements.append(
            f"GRANT {', '.join(_table_privileges(granted))} ON TABLE {qualified_table} TO {grantee}"
        )
        if granted.execute_claim_function:
            statements += [
                f"GRANT EXECUTE ON FUNCTION {signature} TO {grantee}"
                for signature in _claim_signatures(objects, schema, version)
            ]
        if granted.execute_settle_function:
            statements.append(
                f"GRANT EXECUTE ON FUNCTION {_settle_signature(objects, schema)} TO {grantee}"
            )
        if granted.controls:
            controls = _name(schema, controls_table_name(table))
            statements.append(
                f"GRANT {', '.join(granted.controls)} ON TABLE {controls} TO {grantee}"
            )
    return statements


def revoke_statements(
    table: str,
    roles: JobQueueRoles,
    *,
    schema: str | None = None,
    claim_function: str | None = None,
    version: int = CURRENT_GRANTS_VERSION,
) -> list[str]:
    """The statements that take back what :func:`grant_statements` gave (the parameters
    are the same).

    Ownership is not taken back: a migrator keeps what it owns until another role is
    made the owner, so ``roles`` may not name one.
    """
    if roles.migrator is not None:
        raise ValueError(
            "ownership cannot be revoked: make another role the owner instead "
            f"(grant_statements with migrator=...), not {roles.migrator!r}"
        )
    objects = _objects(table, schema, claim_function)
    qualified_table = _name(schema, table)
    statements = []
    for kind, role in roles.named().items():
        granted = privileges(kind, version)
        grantee = _preparer.quote(role)
        if granted.execute_claim_function:
            statements += [
                f"REVOKE EXECUTE ON FUNCTION {signature} FROM {grantee}"
                for signature in _claim_signatures(objects, schema, version)
            ]
        if granted.execute_settle_function:
            statements.append(
                f"REVOKE EXECUTE ON FUNCTION {_settle_signature(objects, schema)} FROM {grantee}"
            )
        if granted.controls:
            controls = _name(schema, controls_table_name(table))
            statements.append(
                f"REVOKE {', '.join(granted.controls)} ON TABLE {controls} FROM {grantee}"
            )
        statements.append(
            f"REVOKE {', '.join(_table_privileges(granted))} ON TABLE {qualified_table} "
            f"FROM {grantee}"
        )
    return statements


def _claim_signature(objects: QueueObjects, schema: str | None) -> str:
    return f"{_name(schema, objects.claim_function)}(varchar, varchar[], integer)"


def _limited_claim_signature(objects: QueueObjects, schema: str | None) -> str:
    return (
        f"{_name(schema, objects.limited_claim_function)}"
        "(varchar, varchar[], integer, varchar, boolean)"
    )


def _claim_signatures(objects: QueueObjects, schema: str | None, version: int) -> list[str]:
    """The claim functions a worker executes: since version 4, the claim function calls
    the limited claim function, as the worker's claims of limited types do."""
    signatures = [_claim_signature(objects, schema)]
    if version >= 4:
        signatures.append(_limited_claim_signature(objects, schema))
    return signatures


def _settle_signature(objects: QueueObjects, schema: str | None) -> str:
    return f"{_name(schema, objects.settle_function)}(uuid, integer)"
