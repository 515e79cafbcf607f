"""A PgBouncer of the benchmark's own, in transaction mode, in front of its server.

:func:`start_pgbouncer` writes a configuration in a temporary directory, starts
``pgbouncer`` (found on ``PATH`` or in ``/usr/sbin``) on 127.0.0.1 and a free port with
``auth_type = trust``, and stops it on the way out. PgBouncer refuses to run as root: as
root it is started with ``-u`` as the owner of the server's socket directory (the embedded
server listens on a socket only its owner may enter), else as ``postgres`` or ``nobody``.
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
from sqlalchemy.engine import make_url

__all__ = ["Bouncer", "find_pgbouncer", "start_pgbouncer"]


@dataclass(frozen=True)
class Bouncer:
    """A running PgBouncer: :meth:`url` turns a server URL into one through it."""

    port: int
    pool_size: int

    def url(self, direct: str) -> str:
        """``direct`` (a libpq URI of a database on the server) through this PgBouncer."""
        parsed = make_url(direct).difference_update_query(["host", "port"])
        return parsed.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)


def find_pgbouncer() -> str | None:
    """The ``pgbouncer`` binary, or ``None``."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_address(conninfo: str) -> tuple[str, int]:
    """The server's TCP address, or its socket directory when it listens on none, and
    its port, as the server says."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT host(inet_server_addr()), current_setting('port'), "
            "current_setting('unix_socket_directories')"
        ).fetchone()
    address, port, sockets = row or (None, "5432", "")
    if address is None:
        address = str(sockets).split(",")[0].strip()
    return str(address), int(port)


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
    raise RuntimeError("running as root with no postgres or nobody user to run PgBouncer as")


@contextlib.contextmanager
def start_pgbouncer(conninfo: str, pool_size: int = 4) -> Iterator[Bouncer]:
    """Run PgBouncer (transaction mode, ``default_pool_size`` = ``max_db_connections`` =
    ``pool_size``, no server reset query) in front of the server of ``conninfo``."""
    binary = find_pgbouncer()
    if binary is None:
        raise RuntimeError("pgbouncer is not installed (apt-get install -y pgbouncer)")
    directory = Path(tempfile.mkdtemp(prefix="sqla-jobqueue-bench-pgbouncer-"))
    directory.chmod(0o777)
    user = make_url(conninfo).username or "postgres"
    port = _free_port()
    host, server_port = _server_address(conninfo)
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={host} port={server_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'userlist.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\n"
        f"max_db_connections = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 2000\nserver_reset_query =\nquery_wait_timeout = 60\n"
        f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
    )
    for path in directory.iterdir():
        path.chmod(0o666)
    process = subprocess.Popen(
        [binary, *_run_as(host), str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bouncer = Bouncer(port=port, pool_size=pool_size)
    try:
        _wait(bouncer.url(conninfo), process, directory)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait(url: str, process: subprocess.Popen[bytes], directory: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(url, prepare_threshold=None, connect_timeout=2) as probe:
                probe.execute("SELECT 1")
            return
        except psycopg.OperationalError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                log = directory / "pgbouncer.log"
                shown = log.read_text() if log.exists() else ""
                raise RuntimeError(f"PgBouncer did not start: {error}\n{shown}") from error
            time.sleep(0.05)
