"""``--app module:name``: the command line takes the database from the application."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from .running import assert_one_line_error, base_environment, run_cli, url_text

APP_MODULE = """
import os

from pydantic import PostgresDsn, TypeAdapter
from sqlalchemy import create_engine

URL = {url!r}

engine = create_engine(URL)
try:  # an AsyncEngine needs greenlet (sqlalchemy[asyncio])
    from sqlalchemy.ext.asyncio import create_async_engine
except ImportError:
    async_engine = None
else:
    async_engine = create_async_engine(URL.replace("postgresql://", "postgresql+psycopg_async://"))
# pydantic wants a host; a server on a Unix socket (the embedded one) names its socket
# directory in ?host=, which libpq lets win over the placeholder.
dsn = TypeAdapter(PostgresDsn).validate_python(URL.replace("@/", "@localhost/"))
sqlite_engine = create_engine("sqlite:///app.db")
port = 5432


def database_url():
    return URL


def broken():
    raise KeyError("POSTGRES_SERVER")


class settings:
    DATABASE_URI = URL
"""


@pytest.fixture
def app_dir(tmp_path: Path, database_url: URL) -> Path:
    """A directory holding ``appdb.py``, an application module naming this test's database."""
    url = url_text(database_url.set(drivername="postgresql"))
    (tmp_path / "appdb.py").write_text(APP_MODULE.format(url=url))
    return tmp_path


@pytest.mark.parametrize(
    "name", ["engine", "async_engine", "dsn", "database_url", "settings.DATABASE_URI"]
)
def test_every_command_with_a_database_takes_it_from_the_app(
    app_dir: Path, database_url: URL, name: str
) -> None:
    env = base_environment()
    app = ["--app", f"appdb:{name}"]
    made = run_cli("enqueue", "hello", "--json", *app, env=env, cwd=app_dir)
    assert made.returncode == 0, made.stderr
    job_id = json.loads(made.stdout)["id"]
    # The same database as the one the test named: seen through DATABASE_URL too.
    seen = run_cli(
        "show", job_id, "--json", env=base_environment(DATABASE_URL=url_text(database_url))
    )
    assert json.loads(seen.stdout)["job_type"] == "hello"
    for args in (["status", "--json"], ["list", "--json"], ["cancel", job_id], ["migrate"]):
        result = run_cli(*args, *app, env=env, cwd=app_dir)
        assert result.returncode == 0, (args, result.stderr)
        assert "embedded" not in result.stderr


def test_app_beside_database_url_must_agree(app_dir: Path, database_url: URL) -> None:
    same = base_environment(DATABASE_URL=url_text(database_url))
    assert run_cli("status", "--app", "appdb:engine", env=same, cwd=app_dir).returncode == 0
    other = base_environment(DATABASE_URL="postgresql://ops:s3cret@elsewhere/prod")
    line = assert_one_line_error(
        run_cli("status", "--app", "appdb:engine", env=other, cwd=app_dir), 2
    )
    assert "DATABASE_URL names postgresql+psycopg://ops:***@elsewhere/prod" in line
    assert "s3cret" not in line and "unset DATABASE_URL or leave out --app" in line
    line = assert_one_line_error(
        run_cli(
            "status", "--app", "appdb:engine", "--database-url", url_text(database_url),
            env=base_environment(), cwd=app_dir,
        ),
        2,
    )  # fmt: skip
    assert "--app and --database-url both name a database" in line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("port", "names no database: it is a int"),
        ("sqlite_engine", "'sqlite:///app.db' is not a PostgreSQL URL"),
        ("broken", "calling --app 'appdb:broken' failed: KeyError: 'POSTGRES_SERVER'"),
        ("nothing", "'appdb' has no 'nothing'"),
    ],
)
def test_an_app_that_names_no_postgresql_gets_one_line(
    app_dir: Path, name: str, expected: str
) -> None:
    result = run_cli("status", "--app", f"appdb:{name}", env=base_environment(), cwd=app_dir)
    assert expected in assert_one_line_error(result, 2)
    assert not (app_dir / "app.db").exists()
