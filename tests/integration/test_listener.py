"""LISTEN/NOTIFY wake-up: an idle worker is woken by an enqueue, and survives losing the
listener connection; on the sync ``Worker`` and on the ``AsyncWorker``."""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import JobQueue, Registry
from sqla_jobqueue.listener import APPLICATION_NAME
from tests.helpers import StartWorker, statuses, wait_for


def test_notify_wakes_an_idle_worker_and_a_killed_listener_reconnects(
    start_worker: StartWorker, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry({"ping": lambda ctx: "pong"})
    # Polling once an hour: only a notification can make these jobs run during the test.
    with start_worker(registry, poll_interval=3600) as worker:
        assert worker.listener is not None
        wait_for(worker.listener.listening.is_set, what="the listener to LISTEN")
        assert worker.listener.channel == "sqla_jobqueue.public.jobs"
        with session_factory.begin() as session:
            JobQueue(session).enqueue("ping")
        wait_for(lambda: statuses(session_factory) == {"completed": 1}, what="woken by NOTIFY")

        with engine.connect() as connection:
            killed = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = :name"
                ),
                {"name": APPLICATION_NAME},
            ).scalar_one()
        assert killed == 1
        listener = worker.listener
        assert listener is not None
        wait_for(lambda: listener.reconnects == 1, what="the listener to reconnect")
        wait_for(listener.listening.is_set)
        with session_factory.begin() as session:
            JobQueue(session).enqueue("ping")
        wait_for(lambda: statuses(session_factory) == {"completed": 2}, what="woken again")


def test_without_listen_jobs_are_found_by_polling(
    start_worker: StartWorker, session_factory: sessionmaker[Session]
) -> None:
    registry = Registry({"ping": lambda ctx: "pong"})
    with start_worker(registry, listen=False, poll_interval=0.05) as worker:
        assert worker.listener is None
        with session_factory.begin() as session:
            JobQueue(session).enqueue("ping")
        wait_for(lambda: statuses(session_factory) == {"completed": 1}, what="found by polling")


def test_the_listener_connects_like_the_engine_does_not_from_its_url(
    start_worker: StartWorker, database_url: URL, session_factory: sessionmaker[Session]
) -> None:
    conninfo = database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    # The URL leads nowhere: only the creator knows the way, as with a password or SSL
    # settings given in connect_args or a connect event.
    nowhere = URL.create("postgresql+psycopg", "nobody", host="127.0.0.1", port=9,
                         database="nowhere")  # fmt: skip
    creator: dict[str, Any] = (
        {"creator": lambda: psycopg.connect(conninfo)}
        if start_worker.kind == "sync"
        else {"async_creator": lambda: psycopg.AsyncConnection.connect(conninfo)}
    )
    registry = Registry({"ping": lambda ctx: "pong"})
    with start_worker(registry, poll_interval=3600, url=nowhere, engine_options=creator) as worker:
        assert worker.listener is not None
        wait_for(worker.listener.listening.is_set, what="the listener to LISTEN")
        with session_factory.begin() as session:
            JobQueue(session).enqueue("ping")
        wait_for(lambda: statuses(session_factory) == {"completed": 1}, what="woken")
