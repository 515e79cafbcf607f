"""The shop's tests: a route enqueues a job; the test runs it now, in its own transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from sqla_jobqueue import JobStatus
from sqla_jobqueue.testing import enqueued, run_jobs
from tests.example_app.app import Base, Job, Order, app, get_session, registry


@pytest.fixture
def shop_engine(empty_database_url: URL) -> Iterator[Engine]:
    """The application's test database, with its schema (yours comes from your migrations)."""
    engine = create_engine(empty_database_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(shop_engine: Engine) -> Iterator[Session]:
    """A session in a transaction that is rolled back after the test.

    The application's own ``session.commit()`` only releases a savepoint inside it.
    """
    connection = shop_engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    transaction.rollback()
    connection.close()


@pytest.fixture
def client(session: Session) -> Iterator[TestClient]:
    """The application, with its sessions replaced by the test's."""
    app.dependency_overrides[get_session] = lambda: session
    with TestClient(app) as client:
        yield client
    app.dependency_overrides.clear()


def test_placing_an_order_enqueues_its_receipt_and_the_receipt_is_sent(
    client: TestClient, session: Session
) -> None:
    response = client.post("/orders", json={"email": "ada@example.com"})
    assert response.status_code == 201
    order_id = response.json()["id"]

    (job,) = enqueued(session, Job, job_type="send_receipt")
    assert (job.data, job.max_attempts) == ({"order_id": order_id}, 5)

    (ran,) = run_jobs(session, registry, Job)
    assert ran.status == JobStatus.COMPLETED, ran.last_error
    assert ran.result == {"order_id": order_id}
    order = session.get(Order, order_id)
    assert order is not None and order.receipt_sent


def test_a_receipt_for_an_order_that_is_gone_is_cancelled(
    client: TestClient, session: Session
) -> None:
    order_id = client.post("/orders", json={"email": "bob@example.com"}).json()["id"]
    order = session.get(Order, order_id)
    session.delete(order)

    (ran,) = run_jobs(session, registry, Job)
    assert (ran.status, ran.last_error) == (
        JobStatus.CANCELLED,
        f"order {order_id} no longer exists",
    )


def test_nothing_a_test_did_is_left_behind(shop_engine: Engine, client: TestClient) -> None:
    client.post("/orders", json={"email": "eve@example.com"})
    with Session(shop_engine) as other:
        assert enqueued(other, Job) == []
        assert other.scalars(select(Order)).all() == []
