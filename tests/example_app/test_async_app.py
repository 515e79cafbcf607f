"""The async shop's tests: requests through an ASGI client, jobs run by a real AsyncWorker.

Each test is a coroutine run by ``asyncio.run`` (with pytest-asyncio or anyio's pytest
plugin, write them as ``async def`` tests instead).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import FastAPI
from sqlalchemy import create_engine, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from sqla_jobqueue import AsyncWorker, JobStatus
from sqla_jobqueue.alembic import create_job_queue
from tests.example_app.async_app import (
    Base,
    Job,
    Order,
    PaymentDeclined,
    Payments,
    create_app,
    get_payments,
    registry,
)

WAIT = 30.0  # seconds before a wait fails the test; a pass takes a fraction of one


@pytest.fixture
def shop_url(empty_database_url: URL) -> URL:
    """The application's test database, with its schema (yours comes from your migrations).

    The worker claims through the claim function that the Alembic operation installs, so
    the schema is built as a migration builds it: tables, then ``create_job_queue``.
    """
    url = empty_database_url.set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            Base.metadata.create_all(connection)
            with Operations.context(MigrationContext.configure(connection)):
                create_job_queue(Job.__tablename__)
    finally:
        engine.dispose()
    return url


@asynccontextmanager
async def started(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The application with its lifespan entered, and a client that calls it in-process.

    ``ASGITransport`` sends requests only; the lifespan (the engine and the worker) is
    entered here, as a server would before its first request.
    """
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
            yield client


@asynccontextmanager
async def database(url: URL) -> AsyncIterator[AsyncEngine]:
    """An engine of the test's own on the shop's database, to look at what was written."""
    engine = create_async_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def orders_and_jobs(engine: AsyncEngine) -> tuple[list[Order], list[Job]]:
    async with AsyncSession(engine) as session:
        orders = await session.scalars(select(Order).order_by(Order.id))
        jobs = await session.scalars(select(Job).order_by(Job.created_at))
        return list(orders), list(jobs)


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` until it holds, leaving the loop to the worker in between."""
    deadline = time.monotonic() + WAIT
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT}s waiting for {what}")
        await asyncio.sleep(0.02)


def test_placing_an_order_commits_the_order_and_its_receipt_job_together(
    shop_url: URL,
) -> None:
    async def scenario() -> None:
        async with started(create_app(shop_url, run_worker=False)) as client:
            response = await client.post("/orders", json={"email": "ada@example.com"})
        assert response.status_code == 201
        order_id = response.json()["id"]

        async with database(shop_url) as engine:
            orders, jobs = await orders_and_jobs(engine)
        assert [(order.id, order.receipt_sent) for order in orders] == [(order_id, False)]
        (job,) = jobs
        assert (job.job_type, job.data, job.max_attempts, job.status) == (
            "send_receipt",
            {"order_id": order_id},
            5,
            JobStatus.PENDING,
        )

    asyncio.run(scenario())


class DecliningPayments(Payments):
    async def charge(self, email: str) -> None:
        raise PaymentDeclined(f"card of {email} declined")


def test_a_request_that_fails_after_enqueueing_leaves_neither_order_nor_job(
    shop_url: URL,
) -> None:
    async def scenario() -> None:
        app = create_app(shop_url, run_worker=False)
        app.dependency_overrides[get_payments] = DecliningPayments
        async with started(app) as client:
            response = await client.post("/orders", json={"email": "bob@example.com"})
        assert (response.status_code, response.json()) == (
            402,
            {"detail": "card of bob@example.com declined"},
        )

        async with database(shop_url) as engine:
            assert await orders_and_jobs(engine) == ([], [])

    asyncio.run(scenario())


def test_the_worker_run_by_the_lifespan_sends_the_receipt(shop_url: URL) -> None:
    async def scenario() -> None:
        async with database(shop_url) as engine:

            async def receipt_sent() -> bool:
                async with AsyncSession(engine) as session:
                    sent = await session.scalar(select(Order.receipt_sent))
                    return sent is True

            async with started(create_app(shop_url)) as client:
                response = await client.post("/orders", json={"email": "eve@example.com"})
                assert response.status_code == 201
                await eventually(receipt_sent, "the worker beside the app to send the receipt")
            # The lifespan has ended: the worker stopped, the job's outcome is written.
            _, (job,) = await orders_and_jobs(engine)
        order_id = response.json()["id"]
        assert (job.status, job.result) == (JobStatus.COMPLETED, {"order_id": order_id})

    asyncio.run(scenario())


def test_an_async_worker_drains_the_receipts(shop_url: URL) -> None:
    async def scenario() -> None:
        async with started(create_app(shop_url, run_worker=False)) as client:
            kept = (await client.post("/orders", json={"email": "ada@example.com"})).json()["id"]
            gone = (await client.post("/orders", json={"email": "bob@example.com"})).json()["id"]

        async with database(shop_url) as engine:
            async with AsyncSession(engine) as session, session.begin():
                await session.delete(await session.get(Order, gone))

            async def drained() -> bool:
                _, jobs = await orders_and_jobs(engine)
                return all(job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED) for job in jobs)

            async with AsyncWorker(engine, registry, model=Job):
                await eventually(drained, "the worker to run both receipts")
            orders, jobs = await orders_and_jobs(engine)

        assert [(order.id, order.receipt_sent) for order in orders] == [(kept, True)]
        assert [(job.data["order_id"], job.status, job.last_error) for job in jobs] == [
            (kept, JobStatus.COMPLETED, None),
            (gone, JobStatus.CANCELLED, f"order {gone} no longer exists"),
        ]

    asyncio.run(scenario())
