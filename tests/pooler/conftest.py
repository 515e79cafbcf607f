"""A real PgBouncer in transaction mode in front of the test's database.

PgBouncer is found on ``PATH`` (Debian's ``pgbouncer`` package puts it in ``/usr/sbin``;
``.ci/run`` installs it when it is missing). Without it the tests are skipped, except under
``CI=true``, where a missing PgBouncer fails them: CI never passes them silently.
"""

from __future__ import annotations

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
import pytest
from sqlalchemy.engine import URL

from sqla_jobqueue.database import libpq_conninfo

POOL_SIZE = 4
"""Server connections PgBouncer opens to the database, at most."""


@dataclass(frozen=True)
class Bouncer:
    """A running PgBouncer: ``url`` goes through it to the test's database."""

    url: URL
    admin: str
    """A libpq connection string to PgBouncer's admin console."""
    database: str

    def server_connections(self) -> int:
        """How many server connections PgBouncer holds for the database now (``SHOW POOLS``:
        active, idle, used, tested and logging in)."""
        with psycopg.connect(self.admin, autocommit=True, prepare_threshold=None) as console:
            cursor = console.cursor()
            cursor.execute("SHOW POOLS")
            names = [column.name for column in cursor.description or ()]
            total = 0
            for row in cursor.fetchall():
                pool = dict(zip(names, row, strict=True))
                if pool["database"] == self.database:
                    total += sum(int(pool[k]) for k in names if k.startswith("sv_"))
            return total


def _binary() -> str | None:
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as(host: str) -> list[str]:
    """PgBouncer refuses to run as root: as root, it switches with ``-u`` to the owner of
    the server's socket directory when it connects through one (only that user may enter
    the embedded server's), else to ``postgres`` (or ``nobody``)."""
    if os.geteuid() != 0:
        return []
    if host.startswith("/"):
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
        if owner != "root":
            return ["-u", owner]
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["-u", user]
    pytest.fail("running as root with neither a postgres nor a nobody user to run PgBouncer as")


def _where_the_server_listens(url: URL) -> tuple[str, int]:
    """The server's TCP address, or its socket directory when it listens on none (the
    embedded server), and its port, as the server itself says."""
    conninfo = libpq_conninfo(url)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        address, port, sockets = connection.execute(
            "SELECT host(inet_server_addr()), current_setting('port'), "
            "current_setting('unix_socket_directories')"
        ).fetchone() or (None, "5432", "")
    if address is None:
        address = str(sockets).split(",")[0].strip()
    return str(address), int(port)


@pytest.fixture
def pgbouncer(database_url: URL) -> Iterator[Bouncer]:
    binary = _binary()
    if binary is None:
        message = "pgbouncer is not on PATH (apt-get install -y pgbouncer)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI=true requires it", pytrace=False)
        pytest.skip(message)
    # Not under pytest's base directory, which only root may enter.
    directory = Path(tempfile.mkdtemp(prefix="sqla-jobqueue-pgbouncer-"))
    directory.chmod(0o777)
    user = database_url.username or "postgres"
    port = _free_port()
    host, server_port = _where_the_server_listens(database_url)
    (directory / "userlist.txt").write_text(f'"{user}" "{database_url.password or ""}"\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={host} port={server_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'userlist.txt'}\n"
        f"admin_users = {user}\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\n"
        f"max_db_connections = {POOL_SIZE}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 1000\nserver_reset_query =\nquery_wait_timeout = 10\n"
        f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
    )
    for path in directory.iterdir():
        path.chmod(0o666)
    process = subprocess.Popen([binary, *_run_as(host), str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)  # fmt: skip

    url = database_url.difference_update_query(["host", "port"]).set(host="127.0.0.1", port=port)
    admin = f"host=127.0.0.1 port={port} dbname=pgbouncer user={user}"
    try:
        _wait_until_it_answers(url, process, directory)
        yield Bouncer(url, admin, str(database_url.database))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_until_it_answers(url: URL, process: subprocess.Popen[bytes], directory: Path) -> None:
    conninfo = (
        f"host=127.0.0.1 port={url.port} dbname={url.database} user={url.username or 'postgres'}"
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(conninfo, prepare_threshold=None, connect_timeout=2) as probe:
                probe.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                log = directory / "pgbouncer.log"
                shown = log.read_text() if log.exists() else ""
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"PgBouncer did not start: {output}{shown}", pytrace=False)
            time.sleep(0.05)
