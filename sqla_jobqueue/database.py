"""Database URLs: where they come from and how SQLAlchemy wants them spelled.

A URL comes from ``--database-url``, from the ``DATABASE_URL`` environment variable, or from
an object of the application's own (:func:`url_of`): its ``Engine``, ``AsyncEngine``, URL or
a function that returns one. :func:`postgresql_url` then refuses anything but PostgreSQL
and makes the URL use psycopg 3, the driver the command line and the workers run on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigurationError

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "libpq_conninfo",
    "postgresql_url",
    "sqlalchemy_url",
    "url_from_environment",
    "url_of",
]

ENVIRONMENT_VARIABLE = "DATABASE_URL"

_ASYNC_DRIVERS = frozenset({"asyncpg", "psycopg_async"})
"""Drivers of an ``AsyncEngine``: the same server is reached through psycopg 3 instead."""


def sqlalchemy_url(url: str | URL) -> URL:
    """Make ``url`` use the psycopg 3 driver.

    ``postgres://``, ``postgresql://`` and libpq-style URLs (as printed by most tools and
    by the embedded server) become ``postgresql+psycopg://``. Other drivers are kept.
    """
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    parsed = make_url(text)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def postgresql_url(url: str | URL) -> URL:
    """``url`` as :func:`sqlalchemy_url` spells it, refused unless it names PostgreSQL.

    The drivers of an ``AsyncEngine`` (``asyncpg``, ``psycopg_async``) are replaced by
    psycopg 3, with the same host, user, password, database and query options.

    Raises
    ------
    ConfigurationError
        When ``url`` cannot be parsed or names another database (SQLite, MySQL, ...).
    """
    shown = url if isinstance(url, str) else url.render_as_string(hide_password=True)
    try:
        parsed = sqlalchemy_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"{shown!r} is not a database URL: write postgresql://USER:PASSWORD@HOST:5432/DBNAME"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigurationError(
            f"{shown!r} is not a PostgreSQL URL: sqla_jobqueue needs PostgreSQL, e.g. "
            "postgresql://USER:PASSWORD@HOST:5432/DBNAME"
        )
    if parsed.get_driver_name() in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def url_of(value: object) -> str | URL:
    """The database URL of an application's object.

    ``value`` may be an ``Engine`` or an ``AsyncEngine`` (its ``.url``, password included),
    a ``URL``, a string, a pydantic URL (as pydantic settings hold it), or a function taking
    no arguments that returns one of these. Only the URL is taken: the engine's
    ``connect_args``, ``creator``, events and pool settings are not.

    Raises
    ------
    ConfigurationError
        When ``value`` is none of these (the message says what it is).
    """
    if callable(value) and not isinstance(value, type) and not _is_url_like(value):
        function: Callable[[], object] = value
        value = function()
    if isinstance(value, Engine):
        return value.url
    # An AsyncEngine's module is loaded by whoever made one, and needs greenlet to load.
    asyncio_extension = sys.modules.get("sqlalchemy.ext.asyncio")
    if asyncio_extension is not None and isinstance(value, asyncio_extension.AsyncEngine):
        url: URL = value.url
        return url
    if isinstance(value, URL):
        return value
    if isinstance(value, str):
        return value if value.strip() else _refuse(value)
    if _is_url_like(value):
        return str(value)
    return _refuse(value)


def _is_url_like(value: object) -> bool:
    """A pydantic ``Url``/``MultiHostUrl``/``PostgresDsn``, known by its module."""
    module = type(value).__module__ or ""
    return module.split(".")[0] in ("pydantic", "pydantic_core")


def _refuse(value: object) -> NoReturn:
    what = "an empty string" if value == "" else f"a {type(value).__qualname__}"
    raise ConfigurationError(
        f"it is {what}; give an Engine, an AsyncEngine, a URL or a string, or a function "
        "returning one"
    )


def libpq_conninfo(url: str | URL) -> str:
    """``url`` (a SQLAlchemy or libpq URL) as a libpq connection string, for psycopg's own
    ``connect``: host, port, user, password, database and the query's options."""
    parsed = postgresql_url(url)
    parts = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
        **{key: value if isinstance(value, str) else ",".join(value)
           for key, value in parsed.query.items()},
    }  # fmt: skip
    return make_conninfo("", **{key: value for key, value in parts.items() if value is not None})


def url_from_environment() -> str | None:
    """The ``DATABASE_URL`` environment variable, when it is set and not empty."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    return value or None
