"""Smoke test of the built wheel, run by .ci/run from outside the source tree.

Usage: ``python wheel_smoke.py [POSTGRESQL_URL]``. Without a URL only what needs no database
is checked. With one, a throw-away database is created on that server, migrated by the
installed command line, given a job, and the job is run by a worker from the wheel; the
database is dropped at the end.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path

from sqlalchemy import create_engine, make_url, select, text
from sqlalchemy.orm import Session

import sqla_jobqueue
from sqla_jobqueue import Job, JobQueue, Registry, Worker

COMMAND = str(Path(sys.executable).parent / "sqla-jobqueue")


def cli(*args: str) -> str:
    done = subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"sqla-jobqueue {' '.join(args)} exited {done.returncode}:\n"
                         f"{done.stdout}{done.stderr}")  # fmt: skip
    return done.stdout + done.stderr


def check_installed_files() -> None:
    package = Path(sqla_jobqueue.__file__).resolve().parent
    assert "site-packages" in package.parts, f"imported from {package}, not the wheel"
    assert (package / "py.typed").is_file(), "py.typed is missing from the wheel"
    sql = resources.files("sqla_jobqueue.sql")
    assert any(entry.name.endswith(".sql") for entry in sql.iterdir()), "no SQL files"
    assert "usage" in cli("--help").lower()
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "migrations"
        cli("init-alembic", str(target))
        assert (target / "env.py").is_file(), "init-alembic wrote no env.py"
        assert list((target / "versions").glob("*.py")), "init-alembic wrote no revision"


def check_against(server: str) -> None:
    admin = create_engine(make_url(server).set(drivername="postgresql+psycopg"),
                          isolation_level="AUTOCOMMIT")  # fmt: skip
    name = f"ci_wheel_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        cli("migrate", "--database-url", url)
        cli("enqueue", "--database-url", url, "smoke", "--data", '{"n": 41}')
        engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
        registry = Registry()
        registry.register("smoke", lambda ctx: {"n": ctx.data["n"] + 1})
        worker = Worker(engine, registry, poll_interval=0.05).start()
        try:
            deadline = time.monotonic() + 60
            while True:
                with Session(engine) as session:
                    job = session.scalars(select(Job)).one()
                if job.status == "completed" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            worker.stop()
        assert job.status == "completed" and job.result == {"n": 42}, (job.status, job.result)
        with Session(engine) as session:
            assert JobQueue(session, Job).stats().counts == {"smoke": {"completed": 1}}
        engine.dispose()
        assert "smoke" in cli("status", "--database-url", url)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    check_installed_files()
    if len(sys.argv) > 1:
        check_against(sys.argv[1])
    print("the wheel works")


if __name__ == "__main__":
    main()
