"""``WorkerSettings.check``: how ``sqla-jobqueue worker`` checks its options before any
database exists, and what a :class:`Worker` runs with."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from sqla_jobqueue.errors import ConfigurationError, InvalidJobError, ModelError
from sqla_jobqueue.handlers import JobContext, Registry
from sqla_jobqueue.model import Priority
from sqla_jobqueue.worker import Worker, WorkerSettings

registry = Registry()


@registry.handler("a")
def handle_a(ctx: JobContext) -> None:
    pass


@registry.handler("b")
def handle_b(ctx: JobContext) -> None:
    pass


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"concurrency": 0}, InvalidJobError, "concurrency must be at least 1"),
        ({"batch_size": -1}, InvalidJobError, "batch_size must be at least 1"),
        ({"job_types": ["a", "c"]}, InvalidJobError, "no handler registered for job types"),
        ({"poll_interval": 0}, InvalidJobError, "poll_interval must be positive"),
        ({"grace_period": -1}, InvalidJobError, "grace_period must be zero or more"),
        ({"stale_timeout": 20}, InvalidJobError, "at least three heartbeat intervals"),
        (
            {"heartbeat_interval": timedelta(seconds=10), "stale_timeout": 29},
            InvalidJobError,
            "at least three heartbeat intervals",
        ),
        ({"retention": 0}, InvalidJobError, "retention must be positive"),
        ({"model": Priority}, ModelError, "is not a mapped JobMixin model"),
    ],
)
def test_bad_settings_are_refused_without_a_database(
    settings: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        WorkerSettings.check(registry, **settings)


def test_an_empty_registry_is_refused() -> None:
    with pytest.raises(InvalidJobError, match="the registry has no handlers"):
        WorkerSettings.check(Registry())


def test_the_settings_a_worker_runs_with() -> None:
    settings = WorkerSettings.check(registry, concurrency=4, batch_size=10, stale_timeout=60)
    assert settings.job_types == ["a", "b"], "every type of the registry by default"
    assert settings.batch_size == 4, "a claim never takes more jobs than there are slots"
    assert settings.rescue_interval == 15.0, "a quarter of the stale timeout by default"
    assert settings.worker_id.count(":") == 2, "host:pid:random by default"


@pytest.fixture
def unconnected() -> Iterator[Engine]:
    """An engine that never connects: building a Worker opens no connection."""
    engine = create_engine("postgresql+psycopg://")
    yield engine
    engine.dispose()


def test_a_worker_runs_with_what_the_check_returns(unconnected: Engine) -> None:
    options: dict[str, Any] = {
        "job_types": ["b"],
        "concurrency": 3,
        "batch_size": 2,
        "poll_interval": timedelta(milliseconds=250),
        "heartbeat_interval": 2,
        "stale_timeout": timedelta(seconds=9),
        "grace_period": 0,
        "worker_id": "host:1:ab",
    }
    settings = WorkerSettings.check(registry, **options)
    worker = Worker(unconnected, registry, **options)
    assert worker.settings == settings
    assert (settings.batch_size, settings.poll_interval, settings.stale_timeout) == (2, 0.25, 9.0)


def test_a_keyword_that_is_not_a_setting_is_refused_by_name() -> None:
    registry = Registry({"t": lambda ctx: None})
    with pytest.raises(TypeError, match="concurency is not a worker setting; the settings are"):
        WorkerSettings.check(registry, concurency=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        (True, (True, None)),
        (False, (False, None)),
        (
            "postgresql://app:s3cret@db.internal:5433/shop?sslmode=require",
            (
                True,
                "host=db.internal port=5433 user=app password=s3cret dbname=shop sslmode=require",
            ),
        ),
    ],
)
def test_listen_is_on_the_engine_off_or_at_a_url_of_its_own(
    listen: object, expected: tuple[bool, str | None]
) -> None:
    settings = WorkerSettings.check(registry, listen=listen)  # type: ignore[arg-type]
    assert (settings.listen, settings.listen_conninfo) == expected


@pytest.mark.parametrize(
    ("listen", "error", "message"),
    [
        ("mysql://db/shop", ConfigurationError, "is not a PostgreSQL URL"),
        ("not a url", ConfigurationError, "is not a database URL"),
        (5432, InvalidJobError, "listen must be True, False or a database URL"),
    ],
)
def test_a_listen_that_is_no_postgresql_url_is_refused(
    listen: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        WorkerSettings.check(registry, listen=listen)  # type: ignore[arg-type]
