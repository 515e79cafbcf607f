"""SQL texts shipped with sqla_jobqueue, and the names they are filled in with.

Each installed version of the job-queue objects lives in ``job_queue/v<N>/`` as an
``install.sql`` and an ``uninstall.sql``. A shipped version is never edited, so an Alembic
revision that names version N renders the same SQL after any library upgrade; a new body
is a new version, installed over the old one by ``op.replace_job_queue``. A version that
adds objects to the one before it also ships a ``retire.sql`` that removes them, run before
the older version is installed over it (a downgrade).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql.base import PGDialect

__all__ = [
    "CURRENT_VERSION",
    "MAX_IDENTIFIER_LENGTH",
    "QueueObjects",
    "available_versions",
    "controls_table_name",
    "format_table",
    "install_statements",
    "parse_comment",
    "read_sql",
    "retire_statements",
    "short_identifier",
    "uninstall_statements",
]

CURRENT_VERSION = 4
"""The version of the job-queue objects that this release installs."""

_STATEMENT_SEPARATOR = re.compile(r"^-- statement\s*$", re.MULTILINE)
_COMMENT_PREFIX = "sqla_jobqueue "
MAX_IDENTIFIER_LENGTH = 63
"""PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1)."""
_preparer = PGDialect().identifier_preparer  # type: ignore[no-untyped-call]


@cache
def read_sql(relative_path: str) -> str:
    """Return the text of a file under ``sqla_jobqueue/sql``."""
    return resources.files(__name__).joinpath(relative_path).read_text(encoding="utf-8")


def format_table(table: Table) -> str:
    """The table's name, schema-qualified when it has a schema, quoted where needed."""
    return str(_preparer.format_table(table))


def available_versions() -> list[int]:
    """The versions of the job-queue objects shipped with this release."""
    root = resources.files(__name__).joinpath("job_queue")
    return sorted(int(p.name[1:]) for p in root.iterdir() if re.fullmatch(r"v\d+", p.name))


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def short_identifier(name: str, suffix: str) -> str:
    """``name + suffix`` cut to PostgreSQL's identifier length, kept unique by a hash."""
    full = name + suffix
    if len(full.encode()) <= MAX_IDENTIFIER_LENGTH:
        return full
    digest = hashlib.sha1(full.encode()).hexdigest()[:8]
    return full[: MAX_IDENTIFIER_LENGTH - len(suffix) - 9] + "_" + digest + suffix


def controls_table_name(table_name: str) -> str:
    """The name of a job table's controls table: ``<table>_controls``."""
    return short_identifier(table_name, "_controls")


@dataclass(frozen=True)
class QueueObjects:
    """The database objects that serve one job table.

    Parameters
    ----------
    schema:
        The table's schema, resolved (never ``None``): installed functions refer to
        their table schema-qualified.
    table:
        The job table's name.
    claim_function:
        The name of the claim function, created in ``schema``.
    """

    schema: str
    table: str
    claim_function: str

    @property
    def qualified_table(self) -> str:
        return f"{_preparer.quote(self.schema)}.{_preparer.quote(self.table)}"

    @property
    def qualified_claim_function(self) -> str:
        return f"{_preparer.quote(self.schema)}.{_preparer.quote(self.claim_function)}"

    @property
    def claim_signature(self) -> str:
        return f"{self.qualified_claim_function}(varchar, varchar[], integer)"

    @property
    def limited_claim_function(self) -> str:
        """Claims jobs within the limits of their types (version 4); the claim function
        and the worker's claims of limited types call it."""
        return short_identifier(self.table, "_claim_within_limits")

    @property
    def limited_claim_signature(self) -> str:
        arguments = "varchar, varchar[], integer, varchar, boolean"
        return f"{self._qualified(self.limited_claim_function)}({arguments})"

    @property
    def notify_function(self) -> str:
        return short_identifier(self.table, "_notify_enqueued")

    @property
    def trigger(self) -> str:
        return short_identifier(self.table, "_notify_enqueued")

    @property
    def finished_function(self) -> str:
        return short_identifier(self.table, "_notify_finished")

    @property
    def finished_trigger(self) -> str:
        return short_identifier(self.table, "_notify_finished")

    @property
    def settle_function(self) -> str:
        """Settles the waiting jobs that depend on a finished job (or all of them)."""
        return short_identifier(self.table, "_settle_waiting")

    @property
    def settle_signature(self) -> str:
        return f"{self._qualified(self.settle_function)}(uuid, integer)"

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel on which enqueues of this table are announced."""
        return _channel(f"sqla_jobqueue.{self.schema}.{self.table}")

    @property
    def finished_channel(self) -> str:
        """The channel on which the ids of awaited jobs are announced when they finish."""
        return _channel(f"sqla_jobqueue.finished.{self.schema}.{self.table}")

    def comment(self, version: int) -> str:
        """The ``COMMENT ON FUNCTION`` text that records the installed version."""
        payload = {"version": version, "schema": self.schema, "table": self.table}
        return _COMMENT_PREFIX + json.dumps(payload, sort_keys=True)

    def _qualified(self, name: str) -> str:
        return f"{_preparer.quote(self.schema)}.{_preparer.quote(name)}"

    def _fill(self, template: str, version: int) -> list[str]:
        text = template.format(
            claim_function=self.qualified_claim_function,
            claim_signature=self.claim_signature,
            limited_claim_function=self._qualified(self.limited_claim_function),
            limited_claim_signature=self.limited_claim_signature,
            table=self.qualified_table,
            notify_function=self._qualified(self.notify_function),
            trigger=_preparer.quote(self.trigger),
            channel=_literal(self.channel),
            finished_function=self._qualified(self.finished_function),
            finished_trigger=_preparer.quote(self.finished_trigger),
            finished_channel=_literal(self.finished_channel),
            settle_function=self._qualified(self.settle_function),
            controls_table=self._qualified(controls_table_name(self.table)),
            settle_signature=self.settle_signature,
            settle_lock=_literal(f"sqla_jobqueue settle {self.schema}.{self.table}"),
            comment=_literal(self.comment(version)),
        )
        statements = (_strip_leading_comments(s) for s in _STATEMENT_SEPARATOR.split(text))
        return [s for s in statements if s]


def _channel(name: str) -> str:
    if len(name.encode()) <= MAX_IDENTIFIER_LENGTH:
        return name
    return "sqla_jobqueue." + hashlib.sha1(name.encode()).hexdigest()[:32]


def _strip_leading_comments(statement: str) -> str:
    lines = statement.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()


def _template(version: int, name: str) -> str:
    if version not in available_versions():
        raise ValueError(
            f"sqla_jobqueue ships job-queue versions {available_versions()}, not {version}; "
            "upgrade sqla_jobqueue to run this revision"
        )
    return read_sql(f"job_queue/v{version}/{name}.sql")


def install_statements(objects: QueueObjects, version: int = CURRENT_VERSION) -> list[str]:
    """The statements that install (or replace in place) ``version`` for a table."""
    return objects._fill(_template(version, "install"), version)


def uninstall_statements(objects: QueueObjects, version: int = CURRENT_VERSION) -> list[str]:
    """The statements that remove what ``version`` installed, in dependency order."""
    return objects._fill(_template(version, "uninstall"), version)


def retire_statements(objects: QueueObjects, version: int) -> list[str]:
    """The statements that remove what ``version`` added to the version before it (none
    for a version that only replaced bodies), so that the older one can be installed."""
    _template(version, "install")
    try:
        return objects._fill(read_sql(f"job_queue/v{version}/retire.sql"), version)
    except FileNotFoundError:
        return []


def parse_comment(comment: str | None) -> dict[str, object] | None:
    """Read back a comment written by :meth:`QueueObjects.comment`; ``None`` if not ours."""
    if not comment or not comment.startswith(_COMMENT_PREFIX):
        return None
    try:
        payload = json.loads(comment[len(_COMMENT_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None
