"""A real PgBouncer in transaction mode in front of a test's PostgreSQL.

For tests (and benchmarks) that claim to work behind a pooler: :func:`run_pgbouncer`
starts Debian's ``pgbouncer`` (found on ``PATH`` or in ``/usr/sbin``; ``apt-get install -y
pgbouncer``) on 127.0.0.1 and a free port, with ``pool_mode = transaction``, a pool of
``pool_size`` server connections, ``auth_type = trust`` and no server reset query, and
stops it on the way out::

    with run_pgbouncer(database_url, pool_size=4) as bouncer:
        engine = create_engine(bouncer.url(database_url),
                               connect_args={"prepare_threshold": None})

PgBouncer refuses to run as root: as root it is started with ``-u`` as the owner of the
server's socket directory when it connects through one (only that user may enter the
embedded server's), else as ``postgres`` or ``nobody``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL, make_url

from ..database import libpq_conninfo

__all__ = ["PgBouncer", "PgBouncerError", "find_pgbouncer", "run_pgbouncer"]

START_TIMEOUT = 30.0
"""Seconds PgBouncer has to answer a first query."""


class PgBouncerError(RuntimeError):
    """PgBouncer is missing, cannot run, or did not start; the message says why."""


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer."""

    port: int
    pool_size: int
    user: str

    def url(self, direct: URL | str) -> URL:
        """The database of ``direct`` (a URL of the server) through this PgBouncer."""
        parsed = make_url(direct).difference_update_query(["host", "port"])
        return parsed.set(host="127.0.0.1", port=self.port)

    @property
    def admin(self) -> str:
        """A libpq connection string to PgBouncer's admin console."""
        return f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={self.user}"

    def server_connections(self, database: str) -> int:
        """How many server connections PgBouncer holds for ``database`` now (``SHOW
        POOLS``: active, idle, used, tested and logging in)."""
        with psycopg.connect(self.admin, autocommit=True, prepare_threshold=None) as console:
            cursor = console.cursor()
            cursor.execute("SHOW POOLS")
            names = [column.name for column in cursor.description or ()]
            total = 0
            for row in cursor.fetchall():
                pool = dict(zip(names, row, strict=True))
                if pool["database"] == database:
                    total += sum(int(pool[k]) for k in names if k.startswith("sv_"))
            return total


def find_pgbouncer() -> str | None:
    """The ``pgbouncer`` binary, or ``None``."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


@contextlib.contextmanager
def run_pgbouncer(
    direct: URL | str, *, pool_size: int = 4, query_wait_timeout: int = 60
) -> Iterator[PgBouncer]:
    """Run PgBouncer in transaction mode in front of the server of ``direct``, for the
    ``with`` block; :class:`PgBouncerError` when it cannot."""
    binary = find_pgbouncer()
    if binary is None:
        raise PgBouncerError("pgbouncer is not installed (apt-get install -y pgbouncer)")
    url = make_url(direct)
    user = url.username or "postgres"
    host, server_port = _where_the_server_listens(url)
    # Not under a directory only root may enter: PgBouncer runs as another user.
    directory = Path(tempfile.mkdtemp(prefix="sqla-jobqueue-pgbouncer-"))
    directory.chmod(0o777)
    port = _free_port()
    (directory / "userlist.txt").write_text(f'"{user}" "{url.password or ""}"\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={host} port={server_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'userlist.txt'}\n"
        f"admin_users = {user}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\n"
        f"max_db_connections = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        f"max_client_conn = 2000\nserver_reset_query =\nquery_wait_timeout = {query_wait_timeout}\n"
        f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
    )
    for path in directory.iterdir():
        path.chmod(0o666)
    process = subprocess.Popen([binary, *_run_as(host), str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)  # fmt: skip
    bouncer = PgBouncer(port=port, pool_size=pool_size, user=user)
    try:
        _wait_until_it_answers(bouncer.url(url), process, directory)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as(host: str) -> list[str]:
    if os.geteuid() != 0:
        return []
    if host.startswith("/"):
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
        if owner != "root":
            return ["-u", owner]
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["-u", user]
    raise PgBouncerError("running as root with neither a postgres nor a nobody user to run "
                         "PgBouncer as")  # fmt: skip


def _where_the_server_listens(url: URL) -> tuple[str, int]:
    """The server's TCP address, or its socket directory when it listens on none (the
    embedded server), and its port, as the server itself says."""
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as connection:
        address, port, sockets = connection.execute(
            "SELECT host(inet_server_addr()), current_setting('port'), "
            "current_setting('unix_socket_directories')"
        ).fetchone() or (None, "5432", "")
    if address is None:
        address = str(sockets).split(",")[0].strip()
    return str(address), int(port)


def _wait_until_it_answers(url: URL, process: subprocess.Popen[bytes], directory: Path) -> None:
    conninfo = (
        f"host=127.0.0.1 port={url.port} dbname={url.database} user={url.username or 'postgres'}"
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with psycopg.connect(conninfo, prepare_threshold=None, connect_timeout=2) as probe:
                probe.execute("SELECT 1")
            return
        except psycopg.OperationalError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                log = directory / "pgbouncer.log"
                shown = log.read_text() if log.exists() else ""
                output = (
                    process.stdout.read().decode()
                    if process.stdout and process.poll() is not None
                    else ""
                )
                raise PgBouncerError(
                    f"PgBouncer did not start: {error}\n{output}{shown}"
                ) from error
            time.sleep(0.05)
