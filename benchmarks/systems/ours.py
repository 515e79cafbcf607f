"""sqla_jobqueue through its public API: ``JobQueue`` in a SQLAlchemy ``Session``.

Processing uses :class:`sqla_jobqueue.Worker` when the package has one; until then it
falls back to a loop of ``JobQueue.claim`` / ``start`` / ``complete`` (one commit for the
claim of a batch, one for each start and one for each completion), which the report
labels as such.

The worker is built as a user builds one: ``Worker(engine, registry, concurrency=c,
batch_size=b)`` with the swept settings only, everything else at its default
(maintenance on, the default ``poll_interval``, LISTEN on); the latency's "polling"
variant turns LISTEN off and nothing else.

The clock of a drain (the same for every system, see :mod:`benchmarks.systems`):

``start``
    The wall time at which the child was released (``go()`` returned), connected.
``first``
    The wall time of the first handler call in this process (``None`` if it ran none).
``end``
    The wall time at which the drain loop, asking the database, saw no job left
    (``REMAINING_SQL`` returned false): after the last completion had committed. The loop
    asks once its worker finished no job for one tick (``TICK`` seconds), so the end is
    late by at most about a tick and a round trip.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from sqla_jobqueue import JobQueue
from sqla_jobqueue.database import sqlalchemy_url

__all__ = [
    "ARCHIVE_TABLE",
    "add_finished",
    "archive_model",
    "archive_sizes",
    "claim_plans",
    "claim_timing",
    "create_archive",
    "drain",
    "enqueue_bulk",
    "enqueue_single",
    "install",
    "prefill",
    "prune_cli",
    "stats_timing",
]

JOB_TYPE = "noop"
STALL_SECONDS = 60.0
"""A worker that finishes no job for this long is stopped and its run marked incomplete."""
TICK = 0.005
"""Seconds between two looks of a drain loop at its worker's handler count."""
IDLE_ASK = 0.02
"""Before its first handler call, a drain loop asks the database at most this often
whether jobs are left (a worker still starting would otherwise ask every tick)."""


def _engine(conninfo: str, pool_size: int = 2, prepared: bool = True) -> Any:
    """An engine on ``conninfo``; with ``prepared`` false, psycopg prepares no statement
    (``prepare_threshold=None``), as behind PgBouncer in transaction mode."""
    connect_args: dict[str, Any] = {} if prepared else {"prepare_threshold": None}
    return create_engine(
        sqlalchemy_url(conninfo), pool_size=pool_size, max_overflow=4, connect_args=connect_args
    )


def install(conninfo: str) -> None:
    from sqla_jobqueue.alembic import upgrade

    engine = _engine(conninfo)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def enqueue_single(conninfo: str, n: int) -> float:
    engine = _engine(conninfo)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as warm:
        warm.execute(text("SELECT 1"))
    start = time.perf_counter()
    for i in range(n):
        with factory.begin() as session:
            JobQueue(session).enqueue(JOB_TYPE, {"i": i})
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def enqueue_bulk(conninfo: str, n: int, batch: int) -> float:
    engine = _engine(conninfo)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as warm:
        warm.execute(text("SELECT 1"))
    start = time.perf_counter()
    for first in range(0, n, batch):
        specs = [
            {"job_type": JOB_TYPE, "data": {"i": i}} for i in range(first, min(n, first + batch))
        ]
        with factory.begin() as session:
            JobQueue(session).enqueue_many(specs)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def prefill(conninfo: str, n: int) -> None:
    enqueue_bulk(conninfo, n, 5_000)
    engine = _engine(conninfo)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE jobs"))
    engine.dispose()


def worker_available() -> bool:
    """Whether this sqla_jobqueue has a ``Worker`` (it is being built beside the benchmarks)."""
    try:
        from sqla_jobqueue.handlers import Registry  # noqa: F401
        from sqla_jobqueue.worker import Worker  # noqa: F401
    except ImportError:
        return False
    return True


def enqueue_timed(conninfo: str, n: int, gap: float) -> list[tuple[float, float]]:
    """Enqueue ``n`` jobs ``gap`` seconds apart, each carrying its enqueue time."""
    engine = _engine(conninfo)
    factory = sessionmaker(engine, expire_on_commit=False)
    sent = []
    for _ in range(n):
        stamp = time.time()
        with factory.begin() as session:
            JobQueue(session).enqueue(JOB_TYPE, {"t": stamp})
        sent.append((stamp, time.time()))
        time.sleep(gap)
    engine.dispose()
    return sent


REMAINING_SQL = (
    "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'pending') "
    "OR EXISTS (SELECT 1 FROM jobs WHERE status IN ('claimed', 'running'))"
)
"""Whether any job is left. One EXISTS per partial index: ``status IN (all three)``
matches neither, and its plan, a sequential scan, walks every finished row before the
first live one."""


def _remaining(engine: Any) -> bool:
    with engine.connect() as connection:
        return bool(connection.execute(text(REMAINING_SQL)).scalar())


def worker_options(params: dict[str, Any]) -> dict[str, Any]:
    """The settings a drain gives ``Worker`` / ``AsyncWorker``: the swept ones
    (``concurrency``, ``batch_size``) and, for the latency's polling variant only,
    ``listen=False``; for the table-size measurement only (``params["pruner"]`` false),
    ``retention=None``, so that the workers' own pruner leaves the backdated history of
    the table alone (that measurement prunes it itself, with the command); for the
    scaling measurement through PgBouncer, ``listen=<the server's own URL>``
    (``params["listen_url"]``). Everything else is left at the default a user gets."""
    options: dict[str, Any] = {
        "concurrency": int(params.get("concurrency", 1)),
        "batch_size": int(params.get("batch", 10)),
    }
    if not params.get("listen_notify", True):
        options["listen"] = False
    if params.get("pruner", True) is False:
        options["retention"] = None
    if params.get("listen_url"):
        options["listen"] = str(params["listen_url"])
    return options


def _drain_with_worker(
    conninfo: str, params: dict[str, Any], go: Callable[[], None]
) -> dict[str, Any]:
    """Run :class:`sqla_jobqueue.Worker` until no job is left (or, for latency, until
    ``expect`` jobs were seen); return ``start``, ``first``, ``end`` (see the module)."""
    import itertools

    from sqla_jobqueue.handlers import JobContext, Registry
    from sqla_jobqueue.worker import Worker

    options = worker_options(params)
    progress_updates = int(params.get("progress_updates", 0))
    latency = bool(params.get("latency", False))
    expect = int(params.get("expect", 0))
    counter = itertools.count()
    seen: list[tuple[float, float]] = []
    done = [0]
    first: list[float] = []

    def noop(ctx: JobContext) -> None:
        if not first:
            first.append(time.time())
        if latency:
            seen.append((float(ctx.data["t"]), time.time()))
        for step in range(progress_updates):
            ctx.progress((step + 1) * 100 // (progress_updates + 1))
        done[0] = next(counter) + 1

    registry = Registry()
    registry.register(JOB_TYPE, noop)
    prepared = bool(params.get("prepared", True))
    engine = _engine(conninfo, pool_size=options["concurrency"] + 4, prepared=prepared)
    worker = Worker(engine, registry, **options)
    # Connected before the release, as the peers are: the worker's first round and its
    # listener take these two.
    with engine.connect(), engine.connect():
        pass
    go()
    start = time.time()
    worker.start()
    stalled = False
    end: float | None = None
    last, last_change, last_ask = -1, time.monotonic(), 0.0
    asks = 0
    while True:
        time.sleep(TICK)
        if latency and len(seen) >= expect:
            break
        now = time.monotonic()
        if done[0] != last:
            # Still finishing jobs: no need to ask the database (whose server the workers
            # share) whether any are left.
            last, last_change = done[0], now
        elif not latency and (first or now - last_ask >= IDLE_ASK):
            last_ask = now
            asks += 1
            if not _remaining(engine):
                end = time.time()
                break
        if now - last_change > STALL_SECONDS:
            stalled = True
            break
    worker.stop()
    worker.join()
    engine.dispose()
    return {
        "start": start,
        "first": first[0] if first else None,
        "end": end if end is not None else time.time(),
        "processed": next(counter),
        "stalled": stalled,
        "remaining_asks": asks,
        "latencies": seen,
        "mode": f"Worker (concurrency {options['concurrency']}, batch {options['batch_size']})",
    }


def _loop(
    factory: sessionmaker[Session],
    batch: int,
    progress_updates: int,
    done: list[int],
    first: list[float],
) -> None:
    """claim a batch (commit); per job: start (commit), handler + complete (commit).
    Returns when a claim finds nothing, after its own last commit."""
    with factory() as session:
        queue = JobQueue(session, worker_id=f"bench:{os.getpid()}:{threading.get_ident()}")
        count = 0
        while True:
            with session.begin():
                jobs = queue.claim(batch_size=batch)
            if not jobs:
                break
            for job in jobs:
                with session.begin():
                    queue.start(job)
                for step in range(progress_updates):
                    with session.begin():
                        queue.update_progress(
                            job, progress=(step + 1) * 100 // (progress_updates + 1)
                        )
                with session.begin():
                    if not first:
                        first.append(time.time())  # the "handler" of this loop
                    queue.complete(job)
                count += 1
        done.append(count)


def drain(conninfo: str, params: dict[str, Any], go: Callable[[], None]) -> dict[str, Any]:
    """Drain the queue with ``Worker`` (or the ``JobQueue`` loop when there is none, or
    when ``params["loop"]``); the end of the loop is when every thread's claim found
    nothing, after its commits."""
    if worker_available() and not params.get("loop"):
        return _drain_with_worker(conninfo, params, go)
    batch = int(params.get("batch", 10))
    concurrency = int(params.get("concurrency", 1))
    progress_updates = int(params.get("progress_updates", 0))
    engine = _engine(conninfo, pool_size=concurrency + 1)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as warm:
        warm.execute(text("SELECT 1"))
    done: list[int] = []
    first: list[float] = []
    go()
    start = time.time()
    threads = [
        threading.Thread(target=_loop, args=(factory, batch, progress_updates, done, first))
        for _ in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    end = time.time()
    engine.dispose()
    return {
        "start": start,
        "first": min(first) if first else None,
        "end": end,
        "processed": sum(done),
        "mode": "JobQueue loop",
    }


def claim_timing(conninfo: str, claims: int, batch: int) -> list[float]:
    """Seconds taken by each of ``claims`` claims of ``batch`` jobs (each then completed)."""
    engine = _engine(conninfo)
    factory = sessionmaker(engine, expire_on_commit=False)
    timings: list[float] = []
    with factory() as session:
        queue = JobQueue(session, worker_id=f"bench-claim:{os.getpid()}")
        for _ in range(claims):
            with session.begin():
                started = time.perf_counter()
                jobs = queue.claim(batch_size=batch)
                timings.append(time.perf_counter() - started)
            with session.begin():
                for job in jobs:
                    queue.complete(job)
    engine.dispose()
    return timings


HISTORY_FAILED_EVERY = 10
"""Every 10th finished row of :func:`add_finished` failed (unless it was cancelled)."""
HISTORY_CANCELLED_EVERY = 50
"""Every 50th finished row of :func:`add_finished` was cancelled."""
HISTORY_CHUNK = 1_000_000
"""Rows :func:`add_finished` inserts per transaction."""

_ADD_FINISHED_SQL = """
INSERT INTO {table} (id, job_type, data, priority, status, attempts, progress, worker_id,
                  claimed_at, started_at, completed_at, created_at, run_at, last_error)
SELECT (lpad(to_hex((extract(epoch FROM r.created_at) * 1000)::bigint), 12, '0') || '7'
        || substr(r.h, 1, 3) || substr('89ab', 1 + (r.g % 4)::int, 1) || substr(r.h, 4, 15)
       )::uuid,
       'noop', jsonb_build_object('i', r.g), 100, r.status,
       CASE r.status WHEN 'completed' THEN 1 WHEN 'failed' THEN 3 ELSE 0 END,
       CASE r.status WHEN 'completed' THEN 100 ELSE 0 END,
       CASE WHEN r.status <> 'cancelled' THEN 'bench-history' END,
       CASE WHEN r.status <> 'cancelled' THEN r.done - interval '400 milliseconds' END,
       CASE WHEN r.status <> 'cancelled' THEN r.done - interval '390 milliseconds' END,
       r.done, r.created_at, r.created_at,
       CASE WHEN r.status = 'failed' THEN 'RuntimeError: benchmark history' END
FROM (
    SELECT g, md5(g::text || random()::text) AS h,
           CASE WHEN g % :cancelled = 0 THEN 'cancelled'
                WHEN g % :failed = 0 THEN 'failed' ELSE 'completed' END AS status,
           d.done, d.done - interval '500 milliseconds' * (1 + g % 7) AS created_at
    FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
    CROSS JOIN LATERAL (
        SELECT CAST(:t0 AS timestamptz) - interval '1 second'
               - CAST(:span AS interval) * ((CAST(:n AS bigint) - g)::float8 / :n) AS done
    ) AS d
) AS r
"""


def add_finished(
    conninfo: str, n: int, days: float = 30.0, archive: bool = False
) -> dict[str, Any]:
    """Insert ``n`` finished jobs, the way a long-running queue accumulates them: into
    the job table, or with ``archive`` into the archive table :data:`ARCHIVE_TABLE`
    (:func:`create_archive` first makes it and the day partitions the rows need).

    Their ``completed_at`` spreads evenly over the ``days`` before the call (oldest rows
    first in the table, as a queue writes them), so that pruning has old rows to delete;
    one in :data:`HISTORY_CANCELLED_EVERY` was cancelled and one in
    :data:`HISTORY_FAILED_EVERY` of the rest failed. Ids are version-7 UUIDs of their
    ``created_at``, as :func:`sqla_jobqueue.ids.new_job_id` makes them. Rows go in by
    :data:`HISTORY_CHUNK` per transaction.

    Returns ``seconds`` (the inserts) and ``marker``: the epoch seconds of the database
    clock at the start, after every row's ``completed_at``.
    """
    engine = _engine(conninfo)
    table = ARCHIVE_TABLE if archive else "jobs"
    try:
        with engine.begin() as connection:
            t0 = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
        if archive:
            create_archive(engine, t0 - timedelta(days=days, seconds=2), t0)
        started = time.perf_counter()
        for first in range(1, n + 1, HISTORY_CHUNK):
            with engine.begin() as connection:
                connection.execute(
                    text(_ADD_FINISHED_SQL.format(table=table)),
                    {
                        "first": first,
                        "last": min(n, first + HISTORY_CHUNK - 1),
                        "n": n,
                        "t0": t0,
                        "span": timedelta(days=days),
                        "cancelled": HISTORY_CANCELLED_EVERY,
                        "failed": HISTORY_FAILED_EVERY,
                    },
                )
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return {"seconds": seconds, "marker": t0.timestamp()}


def claim_plans(conninfo: str, claims: int, batch: int) -> dict[str, Any] | None:
    """The database's side of ``claims`` calls of ``JobQueue.claim(batch_size=batch)``:
    ``auto_explain`` (analyze and buffers on) sends this client each claim's plan as a
    notice. Returns the executor's ms of each claim (``server_ms``, planning not included)
    and the plan of the median one, or ``None`` where the role may not load
    ``auto_explain``. Each claimed batch is completed, outside the captured transaction."""
    # One connection: the settings and the notice handler stay on it.
    engine = create_engine(sqlalchemy_url(conninfo), pool_size=1, max_overflow=0)
    factory = sessionmaker(engine, expire_on_commit=False)
    captured: list[str] = []
    capturing = [False]

    def on_notice(diag: Any) -> None:
        message = diag.message_primary or ""
        if capturing[0] and message.startswith("duration:"):
            captured.append(message)

    plans: list[tuple[float, str]] = []
    try:
        with factory() as session:
            raw = session.connection().connection.dbapi_connection
            assert raw is not None
            try:
                for statement in (
                    "LOAD 'auto_explain'",
                    "SET auto_explain.log_min_duration = 0",
                    "SET auto_explain.log_analyze = on",
                    "SET auto_explain.log_buffers = on",
                    "SET auto_explain.log_level = notice",
                ):
                    session.execute(text(statement))
                session.commit()
            except DBAPIError:  # no auto_explain for this role: no plan
                session.rollback()
                return None
            raw.add_notice_handler(on_notice)
            queue = JobQueue(session, worker_id=f"bench-plan:{os.getpid()}")
            for _ in range(claims):
                captured.clear()
                capturing[0] = True
                with session.begin():
                    jobs = queue.claim(batch_size=batch)
                capturing[0] = False
                for message in captured:
                    if "status='claimed'" in message.replace(" ", ""):
                        ms = float(message.split()[1])
                        plans.append((ms, message))
                with session.begin():
                    for job in jobs:
                        queue.complete(job)
    finally:
        engine.dispose()
    if not plans:
        return None
    ordered = sorted(plans, key=lambda p: p[0])
    return {"server_ms": [ms for ms, _ in plans], "plan": ordered[len(ordered) // 2][1]}


def stats_timing(conninfo: str, repeats: int) -> dict[str, Any]:
    """Seconds of ``JobQueue(session).stats()`` and of ``stats(exact=True)``, ``repeats``
    times each (a session and a transaction of their own every time, connected before),
    and the finished counts each gave."""
    engine = _engine(conninfo)
    factory = sessionmaker(engine, expire_on_commit=False)
    out: dict[str, Any] = {}
    try:
        with factory.begin() as warm:
            warm.execute(text("SELECT 1"))
        for label, exact in (("estimated", False), ("exact", True)):
            seconds: list[float] = []
            stats = None
            for _ in range(repeats):
                with factory.begin() as session:
                    started = time.perf_counter()
                    stats = JobQueue(session).stats(exact=exact)
                    seconds.append(time.perf_counter() - started)
            assert stats is not None
            out[label] = {
                "seconds": seconds,
                "estimated": bool(getattr(stats, "estimated", False)),
                "finished": {s: stats.total(s) for s in ("completed", "failed", "cancelled")},
            }
    finally:
        engine.dispose()
    return out


def prune_cli(conninfo: str, older_than: str, batch_size: int) -> dict[str, Any]:
    """Run ``sqla-jobqueue prune --older-than OLDER_THAN --batch-size N --json
    --database-url URL`` in this process (:func:`sqla_jobqueue.cli.main`, the console
    script's own entry point) and time each of its transactions: from the moment its
    ``Session`` began one on its connection to the moment that one had committed.

    Returns the command's exit code and JSON, ``start`` and ``end`` (epoch seconds around
    the command) and ``transactions``: ``[begin, commit]`` epoch seconds of each.
    """
    import contextlib
    import io
    import json

    from sqlalchemy import event

    from sqla_jobqueue.cli import main

    spans: list[list[float]] = []
    began: dict[int, float] = {}

    def after_begin(session: Session, transaction: Any, connection: Any) -> None:
        began[id(session)] = time.time()

    def after_commit(session: Session) -> None:
        start = began.pop(id(session), None)
        if start is not None:
            spans.append([start, time.time()])

    event.listen(Session, "after_begin", after_begin)
    event.listen(Session, "after_commit", after_commit)
    argv = ["prune", "--older-than", older_than, "--batch-size", str(batch_size), "--json",
            "--database-url", conninfo]  # fmt: skip
    captured = io.StringIO()
    start = time.time()
    try:
        with contextlib.redirect_stdout(captured):
            code = main(argv)
    finally:
        end = time.time()
        event.remove(Session, "after_begin", after_begin)
        event.remove(Session, "after_commit", after_commit)
    lines = [line for line in captured.getvalue().splitlines() if line.startswith("{")]
    return {
        "exit": code,
        "output": json.loads(lines[-1]) if lines else None,
        "start": start,
        "end": end,
        "transactions": spans,
    }


ARCHIVE_TABLE = "jobs_archive"
"""The archive table of the table_size measurement's archive variant."""


def archive_model() -> type[Any]:
    """A :class:`sqla_jobqueue.JobArchiveMixin` model of :data:`ARCHIVE_TABLE`, in a
    metadata of its own (the benchmark's schema is the package's migrations)."""
    from sqlalchemy.orm import DeclarativeBase

    from sqla_jobqueue import JobArchiveMixin

    class ArchiveBase(DeclarativeBase):
        pass

    class JobArchive(JobArchiveMixin, ArchiveBase):
        __tablename__ = ARCHIVE_TABLE

    return JobArchive


def create_archive(engine: Any, first: Any, last: Any) -> int:
    """Create the archive table and the day partitions (``Partition(day).create``) that
    hold ``completed_at`` from ``first`` to ``last``; returns how many partitions."""
    from sqla_jobqueue.archive import partition_days

    model = archive_model()
    table = model.__table__
    table.metadata.create_all(engine)
    days = partition_days(first, last)
    with engine.begin() as connection:
        for day in days:
            connection.execute(text(day.create(table)))
    return len(days)


def archive_sizes(conninfo: str) -> dict[str, Any]:
    """MB of the archive with its indexes (every partition), its partitions and rows
    (the planner's estimate); ``None`` when there is no archive table."""
    import psycopg

    with psycopg.connect(conninfo) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (ARCHIVE_TABLE,)).fetchone()
        if not exists or exists[0] is None:
            return {"archive_mb": None, "partitions": 0, "rows": 0}
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0), count(*), "
            "coalesce(sum(c.reltuples), 0) FROM pg_inherits i JOIN pg_class c "
            "ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (ARCHIVE_TABLE,),
        ).fetchone()
    assert row is not None
    return {"archive_mb": float(row[0]) / 2**20, "partitions": int(row[1]), "rows": float(row[2])}
