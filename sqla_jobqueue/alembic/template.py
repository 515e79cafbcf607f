"""The Alembic environment shipped with sqla_jobqueue, and how to use or copy it.

The environment is the package ``sqla_jobqueue.alembic_templates``. It can be used in place
(:func:`upgrade`, which is what ``sqla-jobqueue migrate`` runs) or copied into a project
that has no Alembic set-up yet (:func:`copy_template`, ``sqla-jobqueue init-alembic``).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

__all__ = ["TEMPLATE_DIRECTORY", "copy_template", "package_config", "upgrade"]

TEMPLATE_DIRECTORY = Path(str(resources.files("sqla_jobqueue.alembic_templates")))
"""The installed Alembic environment: ``env.py``, ``script.py.mako`` and ``versions/``."""

_INI = """\
# Alembic configuration written by `sqla-jobqueue init-alembic`.
[alembic]
script_location = {script_location}
prepend_sys_path = .
# The database to migrate: DATABASE_URL when it is set, else sqlalchemy.url below. With
# neither, `alembic upgrade` stops without connecting anywhere. For example:
# sqlalchemy.url = postgresql+psycopg://USER:PASSWORD@HOST:5432/DBNAME

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""


def package_config(connection: Connection | Engine | None = None) -> Config:
    """An Alembic :class:`~alembic.config.Config` for the installed environment.

    ``connection`` (a Connection or an Engine) is handed to ``env.py`` through
    ``config.attributes["connection"]``; without it ``env.py`` reads ``DATABASE_URL``.
    """
    config = Config()
    config.set_main_option("script_location", str(TEMPLATE_DIRECTORY))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection | Engine, revision: str = "head") -> None:
    """Run the packaged migrations (the ``jobs`` table and its claim function)."""
    command.upgrade(package_config(connection), revision)


def copy_template(directory: str | Path, *, ini_path: str | Path | None = None) -> Path:
    """Copy the environment into ``directory`` and write an ``alembic.ini`` beside it.

    Refuses to overwrite: ``directory`` must not exist or be empty, and the ini file must
    not exist. Returns the path of the ini file written.
    """
    target = Path(directory)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty; choose a new directory")
    ini = Path(ini_path) if ini_path is not None else target.parent / "alembic.ini"
    if ini.exists():
        raise FileExistsError(f"{ini} exists; remove it or pass another ini path")
    shutil.copytree(
        TEMPLATE_DIRECTORY,
        target,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "__init__.py", "*.pyc"),
    )
    try:
        location = target.resolve().relative_to(ini.resolve().parent)
    except ValueError:
        location = target.resolve()
    ini.write_text(_INI.format(script_location=location.as_posix()), encoding="utf-8")
    return ini
