"""A real PgBouncer in transaction mode in front of the test's database
(:mod:`sqla_jobqueue.testing.pgbouncer`).

PgBouncer is found on ``PATH`` (Debian's ``pgbouncer`` package puts it in ``/usr/sbin``;
``.ci/run`` installs it when it is missing). Without it the tests are skipped, except under
``CI=true``, where a missing PgBouncer fails them: CI never passes them silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import URL

from sqla_jobqueue.testing.pgbouncer import PgBouncerError, find_pgbouncer, run_pgbouncer

POOL_SIZE = 4
"""Server connections PgBouncer opens to the database, at most."""


@dataclass(frozen=True)
class Bouncer:
    """The test's PgBouncer: ``url`` goes through it to the test's database."""

    url: URL
    server_connections: Callable[[], int]


@pytest.fixture
def pgbouncer(database_url: URL) -> Iterator[Bouncer]:
    if find_pgbouncer() is None:
        message = "pgbouncer is not on PATH (apt-get install -y pgbouncer)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI=true requires it", pytrace=False)
        pytest.skip(message)
    database = str(database_url.database)
    try:
        with run_pgbouncer(database_url, pool_size=POOL_SIZE, query_wait_timeout=10) as running:
            yield Bouncer(running.url(database_url), lambda: running.server_connections(database))
    except PgBouncerError as error:
        pytest.fail(str(error), pytrace=False)
