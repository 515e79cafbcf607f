"""``grants``: print the SQL that gives each database role its least privileges.

It needs no database: it prints the statements of :mod:`sqla_jobqueue.grants` for the
``--model``'s table, to be run by the table's owner (``psql -f``, or pasted into a
migration; ``sqla_jobqueue.alembic.grant_job_queue`` runs the same statements).
"""

from __future__ import annotations

import click

from ..grants import CURRENT_GRANTS_VERSION, JobQueueRoles, grant_statements, revoke_statements
from ..model import claim_function_name
from ..worker.settings import job_table
from .exits import EXIT_OK, BadInput
from .imports import job_model
from .output import echo, print_json
from .params import POSITIVE_INT

__all__ = ["grants"]


@click.command()
@click.option("--enqueuer", metavar="ROLE", help="the role that enqueues jobs (your web app)")
@click.option("--worker", metavar="ROLE", help="the role that runs workers")
@click.option("--monitor", metavar="ROLE", help="a read-only role: status, watch, list, show")
@click.option("--operator", metavar="ROLE", help="the role that cancels, retries, recovers, prunes")
@click.option("--migrator", metavar="ROLE", help="the role that owns the table and migrates it")
@click.option(
    "--model",
    metavar="MODULE:CLASS",
    help="your JobMixin model, if not sqla_jobqueue.Job (table jobs)",
)
@click.option("--revoke", is_flag=True, help="print the REVOKE statements that undo the grants")
@click.option(
    "--grants-version",
    "version",
    type=POSITIVE_INT,
    default=CURRENT_GRANTS_VERSION,
    metavar="N",
    help=f"the version of the privileges (default {CURRENT_GRANTS_VERSION}, this release's)",
)
@click.option("--json", "as_json", is_flag=True, help="print the statements as a JSON list")
def grants(
    enqueuer: str | None,
    worker: str | None,
    monitor: str | None,
    operator: str | None,
    migrator: str | None,
    model: str | None,
    revoke: bool,
    version: int,
    as_json: bool,
) -> int:
    """Print the GRANT statements of least-privilege roles on the job table.

    Name a role for each part someone plays; run the output as the table's owner.
    """
    table = job_table(job_model(model))
    try:
        roles = JobQueueRoles(enqueuer, worker, monitor, operator, migrator)
        write = revoke_statements if revoke else grant_statements
        statements = write(
            table.name,
            roles,
            schema=table.schema,
            claim_function=claim_function_name(table),
            version=version,
        )
    except ValueError as error:
        raise BadInput(str(error)) from None
    if as_json:
        print_json(statements)
    else:
        for statement in statements:
            echo(f"{statement};")
    return EXIT_OK
