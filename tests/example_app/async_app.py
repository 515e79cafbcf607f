"""The shop of app.py on asyncio: an ``AsyncSession`` per request, and an ``AsyncWorker``
running beside the application, started and stopped by its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_jobqueue import AsyncJobContext, AsyncJobQueue, AsyncWorker, Cancel, JobMixin, Registry


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    receipt_sent: Mapped[bool] = mapped_column(default=False)


class Job(JobMixin, Base):
    __tablename__ = "shop_jobs"


registry = Registry()


@registry.handler("send_receipt", max_attempts=5)
async def send_receipt(ctx: AsyncJobContext) -> dict[str, int]:
    order = await ctx.session.get(Order, ctx.data["order_id"])
    if order is None:
        raise Cancel(f"order {ctx.data['order_id']} no longer exists")
    # ... render and send the e-mail (await your mail client) ...
    order.receipt_sent = True  # committed with the job's completion
    return {"order_id": order.id}


class PaymentDeclined(Exception):
    """The payment provider refused the charge."""


class Payments:
    """The payment provider's client; this stand-in accepts every charge."""

    async def charge(self, email: str) -> None:
        """Charge the customer, or raise :class:`PaymentDeclined`."""


def get_payments() -> Payments:
    return Payments()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:  # closing it rolls back whatever was not committed
        yield session


router = APIRouter()


class NewOrder(BaseModel):
    email: str


@router.post("/orders", status_code=201)
async def place_order(
    order: NewOrder,
    session: Annotated[AsyncSession, Depends(get_session)],
    payments: Annotated[Payments, Depends(get_payments)],
) -> dict[str, int]:
    placed = Order(email=order.email)
    session.add(placed)
    await session.flush()  # gives the order its id
    await registry.enqueue(AsyncJobQueue(session, Job), "send_receipt", {"order_id": placed.id})
    try:
        await payments.charge(order.email)
    except PaymentDeclined as declined:
        raise HTTPException(status_code=402, detail=str(declined)) from None
    await session.commit()  # the order and its job exist together, or neither does
    return {"id": placed.id}


def create_app(database_url: str | URL, *, run_worker: bool = True) -> FastAPI:
    """The shop on the database of ``database_url`` (``postgresql+psycopg://...``).

    Its lifespan opens the engine and, unless ``run_worker`` is false, runs an
    ``AsyncWorker`` on the same event loop until the application stops.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(database_url)
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:
            if run_worker:
                # Claims once started; on exit, stops claiming and lets running
                # handlers finish (within its grace_period) before the engine closes.
                async with AsyncWorker(engine, registry, model=Job):
                    yield
            else:
                yield
        finally:
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    return app
