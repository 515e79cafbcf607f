"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from tests.helpers import StartWorker
from tests.integration.executors import Executor


@pytest.fixture(params=["sync", "async"])
def executor(
    request: pytest.FixtureRequest, engine: Engine, database_url: URL
) -> Iterator[Executor]:
    """The repository on a ``Session`` and on an ``AsyncSession``: one test body, both."""
    chosen = Executor(request.param, engine, database_url)
    yield chosen
    chosen.dispose()


@pytest.fixture(params=["sync", "async"])
def start_worker(request: pytest.FixtureRequest, engine: Engine, database_url: URL) -> StartWorker:
    """Workers of one kind, the sync ``Worker`` or the ``AsyncWorker``: one test body,
    both (plain handlers run on threads under either). A test that needs one kind only
    says so with ``@pytest.mark.parametrize("start_worker", ["sync"], indirect=True)``."""
    return StartWorker(request.param, engine, database_url)
