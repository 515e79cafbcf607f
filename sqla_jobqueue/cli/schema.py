"""``migrate`` and ``init-alembic``: the job table's schema."""

from __future__ import annotations

import click

from .engine import migrate as migrate_to_head
from .engine import open_database
from .exits import EXIT_OK, BadInput
from .options import DatabaseOptions, database_options, json_option
from .output import echo, print_json

__all__ = ["init_alembic", "migrate"]


@click.command()
@database_options
@json_option
def migrate(db: DatabaseOptions, as_json: bool) -> int:
    """Create or upgrade the jobs table.

    Through the packaged Alembic environment; an application with its own Alembic history
    runs its own `alembic upgrade head` instead.
    """
    with open_database(db, migrate_embedded=False) as engine:
        revision = migrate_to_head(engine)
    if as_json:
        print_json({"revision": revision})
    else:
        echo(f"The database is at revision {revision} (head).")
    return EXIT_OK


@click.command("init-alembic")
@json_option
@click.argument("directory", metavar="DIR")
@click.option("--ini", metavar="PATH", help="where to write alembic.ini (default: beside DIR)")
def init_alembic(as_json: bool, directory: str, ini: str | None) -> int:
    """Copy a ready Alembic environment to DIR.

    env.py and versions/ in DIR, alembic.ini beside it: for a project without Alembic yet.
    """
    from ..alembic import copy_template

    try:
        written = copy_template(directory, ini_path=ini)
    except FileExistsError as error:
        raise BadInput(str(error)) from None
    except OSError as error:
        # e.g. DIR is an existing file, or a parent is not writable.
        raise BadInput(f"cannot write the environment to {directory!r}: {error}") from None
    if as_json:
        print_json({"directory": str(directory), "ini": str(written)})
    else:
        echo(
            f"Wrote {written} and the environment in {directory}/. Next: add your "
            f"metadata to target_metadata in {directory}/env.py, set DATABASE_URL "
            "(or sqlalchemy.url), then run `alembic upgrade head`."
        )
    return EXIT_OK
