"""Claims are exclusive under contention, and an enqueue exists exactly when its transaction
commits.

The first test runs 8 claiming processes (``tests/reliability/claimer.py``, half of them on
``JobQueue`` and a ``Session``, half on ``AsyncJobQueue`` and an ``AsyncSession``) against one
queue; each records every claim in ``claims`` in the claiming transaction, so a job claimed
twice would show twice. The second enqueues jobs together with ``orders`` rows from several
threads, rolls back a seeded random third of the transactions, and lets two worker
processes drain: exactly the committed jobs run, each once.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, func, select
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import Job, JobQueue
from tests.helpers import wait_for
from tests.reliability.battery import sized
from tests.reliability.claimer import claim_errors, claims
from tests.reliability.conftest import ROOT, Spawn
from tests.reliability.worker_process import effects

pytestmark = pytest.mark.slow

CLAIMERS = 8
FAST = ("--heartbeat", "0.2", "--stale", "5")

orders = Table(
    "orders",
    MetaData(),
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("thread", Integer, nullable=False),
)
"""The domain row each enqueued job belongs to, written in the same transaction."""


@pytest.fixture
def claims_tables(engine: Engine) -> None:
    claims.metadata.create_all(engine)


@pytest.fixture
def orders_table(engine: Engine) -> None:
    orders.metadata.create_all(engine)


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# ------------------------------------------------------------- exclusive claims


def start_claimers(url: URL, logs: Path, batch: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start the claimers, the second half on asyncio; each waits at ``logs/gate``."""
    for number in range(CLAIMERS):
        kind = "async" if number >= CLAIMERS // 2 else "sync"
        log = (logs / f"claimer-{number}.log").open("wb")
        yield subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.claimer",
             url.render_as_string(hide_password=False), f"claimer-{number}-{kind}",
             "--batch", str(batch), "--ready", str(logs / f"ready-{number}"),
             "--gate", str(logs / "gate"), *(["--asyncio"] if kind == "async" else [])],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip


@pytest.mark.usefixtures("claims_tables")
@pytest.mark.parametrize("batch", [1, 10, 50])
def test_eight_processes_claim_every_job_exactly_once(
    batch: int,
    database_url: URL,
    engine: Engine,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    figures: dict[str, object],
) -> None:
    jobs = sized(3000, 60000)
    with session_factory.begin() as session:
        ids = JobQueue(session).enqueue_many([{"job_type": "claimed"}] * jobs)
    claimers = list(start_claimers(database_url, tmp_path, batch))
    try:
        wait_for(lambda: all((tmp_path / f"ready-{n}").exists() for n in range(CLAIMERS)),
                 timeout=120, what="every claimer connected")  # fmt: skip
        (tmp_path / "gate").touch()
        started = time.monotonic()
        exits = [claimer.wait(sized(120, 1800)) for claimer in claimers]
        seconds = time.monotonic() - started
    finally:
        for claimer in claimers:
            if claimer.poll() is None:
                claimer.kill()
                claimer.wait(10)
        for log in sorted(tmp_path.glob("claimer-*.log")):
            print(f"----- {log.name}:\n{log.read_text(errors='replace')[-3000:]}")
    with engine.connect() as connection:
        rows = connection.execute(select(claims.c.job_id, claims.c.claimer)).all()
    claimed = Counter(job_id for job_id, _ in rows)
    by_kind = Counter(claimer.rsplit("-", 1)[1] for _, claimer in rows)
    duplicates = sum(n - 1 for n in claimed.values())
    lost = len(set(ids) - set(claimed))
    errors = count(engine, claim_errors)
    with session_factory() as session:
        counts = JobQueue(session).stats().counts
    figures.update(jobs=jobs, processes=CLAIMERS, batch=batch, duplicates=duplicates,
                   lost=lost, errors=errors, sync_claims=by_kind["sync"],
                   async_claims=by_kind["async"], seconds=round(seconds, 1))  # fmt: skip
    assert errors == 0, "no deadlock, serialization or other error in any claimer"
    assert exits == [0] * CLAIMERS
    assert duplicates == 0
    assert lost == 0
    assert set(claimed) == set(ids)
    assert counts == {"claimed": {"completed": jobs}}


# -------------------------------------------------- enqueue with random rollbacks


@dataclass
class Planned:
    """One transaction of an enqueuing thread: its jobs' unique keys (``None``: no key),
    whether it uses ``enqueue_many``, whether it is rolled back, and how many of its keys
    were those of a rolled-back transaction."""

    keys: list[str | None]
    many: bool
    rollback: bool
    reused: int


@dataclass
class Outcome:
    """What an enqueuing thread's transactions wrote: orders and jobs, by fate."""

    committed_orders: set[uuid.UUID] = field(default_factory=set)
    committed_jobs: set[uuid.UUID] = field(default_factory=set)
    rolled_back_orders: set[uuid.UUID] = field(default_factory=set)
    rolled_back_jobs: set[uuid.UUID] = field(default_factory=set)


def plan(chance: random.Random, thread: int, transactions: int) -> list[Planned]:
    """A thread's transactions: 1 to 4 jobs, a third with a unique key, a random third
    rolled back. A key of a rolled-back transaction is used again by the thread's next
    keyed job: a rollback must leave no trace of it."""
    planned: list[Planned] = []
    free: list[str] = []
    for number in range(transactions):
        many = chance.random() < 0.5
        keys: list[str | None] = []
        reused = 0
        for position in range(chance.randint(2, 4) if many else 1):
            if chance.random() >= 1 / 3:
                keys.append(None)
            elif free:
                keys.append(free.pop())
                reused += 1
            else:
                keys.append(f"order-{thread}-{number}-{position}")
        rollback = chance.random() < 1 / 3
        if rollback:
            free.extend(key for key in keys if key is not None)
        planned.append(Planned(keys, many, rollback, reused))
    return planned


def enqueue_orders(
    factory: sessionmaker[Session], thread: int, planned: list[Planned], outcome: Outcome
) -> None:
    """Run the thread's transactions: each job with its order row, then commit or roll back."""
    for transaction in planned:
        with factory() as session:
            queue = JobQueue(session)
            order_ids = [uuid.uuid4() for _ in transaction.keys]
            if transaction.many:
                job_ids = queue.enqueue_many(
                    [{"job_type": "effect", "data": {"order": str(order)}, "unique_key": key}
                     for order, key in zip(order_ids, transaction.keys, strict=True)]
                )  # fmt: skip
            else:
                [key], [order] = transaction.keys, order_ids
                job_ids = [queue.enqueue("effect", {"order": str(order)}, unique_key=key).id]
            session.execute(orders.insert(),
                            [{"id": order, "job_id": job, "thread": thread}
                             for order, job in zip(order_ids, job_ids, strict=True)])  # fmt: skip
            if transaction.rollback:
                session.rollback()
                outcome.rolled_back_orders.update(order_ids)
                outcome.rolled_back_jobs.update(job_ids)
            else:
                session.commit()
                outcome.committed_orders.update(order_ids)
                outcome.committed_jobs.update(job_ids)


@pytest.mark.usefixtures("effects_table", "orders_table")
def test_transactional_enqueue_with_random_rollbacks_runs_exactly_the_committed_jobs(
    engine: Engine,
    session_factory: sessionmaker[Session],
    spawn: Spawn,
    figures: dict[str, object],
) -> None:
    seed = int(os.environ.get("SQLA_JOBQUEUE_CLAIMS_SEED", "0")) or random.randrange(1, 10**6)
    chance = random.Random(seed)
    threads, per_thread = sized(4, 8), sized(300, 5000)
    plans = [plan(chance, thread, per_thread) for thread in range(threads)]
    outcomes = [Outcome() for _ in range(threads)]
    started = time.monotonic()
    for _ in range(2):
        spawn("--concurrency", "4", *FAST)
    with ThreadPoolExecutor(threads, thread_name_prefix="enqueuer") as pool:
        futures = [pool.submit(enqueue_orders, session_factory, thread, plans[thread],
                               outcomes[thread])
                   for thread in range(threads)]  # fmt: skip
        for future in futures:
            future.result()
    committed_orders = set[uuid.UUID]().union(*(o.committed_orders for o in outcomes))
    committed_jobs = set[uuid.UUID]().union(*(o.committed_jobs for o in outcomes))
    rolled_back_jobs = set[uuid.UUID]().union(*(o.rolled_back_jobs for o in outcomes))
    total = len(committed_jobs)

    def drained() -> bool:
        with session_factory() as session:
            return JobQueue(session).stats().counts == {"effect": {"completed": total}}

    wait_for(drained, timeout=sized(120, 1800), what=f"{total} committed jobs completed")
    seconds = time.monotonic() - started
    with engine.connect() as connection:
        ran = connection.execute(select(effects.c.job_id)).scalars().all()
        existing = connection.execute(select(Job.id, Job.attempts)).all()
        order_rows = connection.execute(select(orders.c.id, orders.c.job_id)).all()
    attempts = {job_id: n for job_id, n in existing}
    duplicates = sum(n - 1 for n in attempts.values())
    lost = len(committed_jobs - set(ran))
    transactions = threads * per_thread
    figures.update(transactions=transactions, threads=threads, seed=seed,
                   rolled_back=sum(t.rollback for p in plans for t in p), jobs=total,
                   unique_keys=sum(k is not None for p in plans for t in p for k in t.keys),
                   keys_reused_after_rollback=sum(t.reused for p in plans for t in p),
                   ran=len(ran), lost=lost, duplicates=duplicates,
                   seconds=round(seconds, 1))  # fmt: skip
    assert set(ran) == committed_jobs, f"seed {seed}: exactly the committed jobs ran"
    assert len(ran) == len(set(ran))
    assert lost == 0
    assert duplicates == 0, f"seed {seed}: a job was claimed more than once"
    assert set(attempts) == committed_jobs, "no job of a rolled-back transaction exists"
    assert not rolled_back_jobs & set(attempts)
    assert {order for order, _ in order_rows} == committed_orders
    assert sorted(job for _, job in order_rows) == sorted(committed_jobs), (
        "every job has its order row, every order row its job, one to one"
    )
