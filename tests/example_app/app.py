"""A small FastAPI shop: placing an order enqueues its receipt in the same transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sqla_jobqueue import Cancel, JobContext, JobMixin, JobQueue, Registry


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
def send_receipt(ctx: JobContext) -> dict[str, int]:
    order = ctx.session.get(Order, ctx.data["order_id"])
    if order is None:
        raise Cancel(f"order {ctx.data['order_id']} no longer exists")
    # ... render and send the e-mail ...
    order.receipt_sent = True  # committed with the job's completion
    return {"order_id": order.id}


SessionLocal = sessionmaker(expire_on_commit=False)  # bound to the engine at start-up


def get_session() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


app = FastAPI()


class NewOrder(BaseModel):
    email: str


@app.post("/orders", status_code=201)
def place_order(
    order: NewOrder, session: Annotated[Session, Depends(get_session)]
) -> dict[str, int]:
    placed = Order(email=order.email)
    session.add(placed)
    session.flush()  # gives the order its id
    registry.enqueue(JobQueue(session, Job), "send_receipt", {"order_id": placed.id})
    session.commit()  # the order and its job exist together, or neither does
    return {"id": placed.id}
