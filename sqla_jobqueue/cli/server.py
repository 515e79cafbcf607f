"""``server``: the embedded PostgreSQL kept running, for workers and other terminals."""

from __future__ import annotations

import click
from sqlalchemy import create_engine

from .engine import migrate
from .exits import EXIT_OK
from .options import json_option
from .output import echo, print_json, say

__all__ = ["server"]


@click.command()
@json_option
@click.option(
    "--data-dir", metavar="DIR", help="its data directory (default: under your user data dir)"
)
@click.option("--stop", is_flag=True, help="stop it instead")
def server(as_json: bool, data_dir: str | None, stop: bool) -> int:
    """Start the embedded PostgreSQL and print its URL.

    It keeps running, migrated, for other commands and workers, until `server --stop`.
    """
    from ..embedded import embedded_server, stop_server

    if stop:
        message = stop_server(data_dir)
        if as_json:
            print_json({"message": message})
        else:
            echo(message)
        return EXIT_OK
    with embedded_server(data_dir, keep=True) as running:
        say(running.describe())
        engine = create_engine(running.url)
        try:
            migrate(engine)  # the URL printed is ready for every command and for workers
        finally:
            engine.dispose()
        url = running.url.render_as_string(hide_password=False)
        if as_json:
            print_json({"url": url, "data_dir": str(running.data_dir)})
        else:
            echo(url)
    return EXIT_OK
