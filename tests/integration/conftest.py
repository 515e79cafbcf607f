"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from tests.integration.executors import Executor


@pytest.fixture(params=["sync", "async"])
def executor(
    request: pytest.FixtureRequest, engine: Engine, database_url: URL
) -> Iterator[Executor]:
    """The repository on a ``Session`` and on an ``AsyncSession``: one test body, both."""
    chosen = Executor(request.param, engine, database_url)
    yield chosen
    chosen.dispose()
