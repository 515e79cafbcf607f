"""Options that many commands share, declared once and put on a command as decorators.

``@database_options`` adds ``--database-url``, ``--app``, ``--data-dir``, ``--keep-server``
and ``--model`` and hands the command one :class:`DatabaseOptions` as ``db``;
``@json_option`` adds ``--json`` as ``as_json``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..model import JobMixin
from .imports import job_model

__all__ = ["DatabaseOptions", "database_options", "json_option"]

R = TypeVar("R")


@dataclass(frozen=True)
class DatabaseOptions:
    """Which database a command was told to use, and its job model."""

    database_url: str | None = None
    app: str | None = None
    data_dir: str | None = None
    keep_server: bool = False
    model: str | None = None

    def job_model(self) -> type[JobMixin]:
        """The ``--model`` class, or :class:`~sqla_jobqueue.model.Job`."""
        return job_model(self.model)


_DATABASE_OPTIONS = (
    click.option(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL (default: $DATABASE_URL, else the embedded PostgreSQL)",
    ),
    click.option(
        "--app",
        metavar="MODULE:NAME",
        help="take the database from your application instead: its Engine or AsyncEngine, "
        "URL or URL string, or a function returning one, e.g. myapp.db:engine",
    ),
    click.option(
        "--data-dir",
        metavar="DIR",
        help="data directory of the embedded PostgreSQL (default: under your user data dir)",
    ),
    click.option(
        "--keep-server",
        is_flag=True,
        help="leave the embedded PostgreSQL running after this command if it starts it",
    ),
    click.option(
        "--model",
        metavar="MODULE:CLASS",
        help="your JobMixin model, if not sqla_jobqueue.Job (table jobs)",
    ),
)


def database_options(command: Callable[..., R]) -> Callable[..., R]:
    """Give ``command`` the database options, passed to it as ``db``."""

    @functools.wraps(command)
    def with_database(
        *args: Any,
        database_url: str | None,
        app: str | None,
        data_dir: str | None,
        keep_server: bool,
        model: str | None,
        **kwargs: Any,
    ) -> R:
        db = DatabaseOptions(database_url, app, data_dir, keep_server, model)
        return command(*args, db=db, **kwargs)

    decorated: Callable[..., R] = with_database
    for option in reversed(_DATABASE_OPTIONS):
        decorated = option(decorated)
    return decorated


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON for machines")
"""``--json``: the command prints JSON for machines (``as_json``)."""
