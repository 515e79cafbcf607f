"""Least-privilege roles (issue 14, finding 3): each role of :mod:`sqla_jobqueue.grants`,
created for the test and connected as, can do its job and nothing more.

Roles are cluster-wide: each test creates its own with a unique name and drops it
afterwards (``DROP OWNED BY`` in the test's database first, which takes its privileges
back). Refusals are checked by SQLSTATE 42501 (insufficient privilege).
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from datetime import timedelta
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, Engine, create_engine, func, text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import sqla_jobqueue.alembic  # noqa: F401  (registers the operations on op)
from sqla_jobqueue import Job, JobQueue, JobStatus, Registry
from sqla_jobqueue.alembic import upgrade
from sqla_jobqueue.cli import main
from sqla_jobqueue.cli.live import take_snapshot
from sqla_jobqueue.errors import JobNotFoundError
from sqla_jobqueue.grants import JobQueueRoles, grant_statements, privileges
from sqla_jobqueue.sql import QueueObjects, install_statements
from sqla_jobqueue.statements.enqueue import KEY_HOLDER_COLUMNS
from tests.helpers import StartWorker, wait_for
from tests.integration.executors import Executor

INSUFFICIENT_PRIVILEGE = "42501"


class Roles:
    """Creates login roles with unique names in one database, grants them their part, and
    drops them all at the end."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.admin = create_engine(url)
        self.names: list[str] = []
        self.engines: list[Engine] = []

    def create(self, part: str) -> str:
        name = f"sqjq_{part}_{uuid.uuid4().hex[:10]}"
        with self.admin.begin() as connection:
            connection.execute(text(f'CREATE ROLE "{name}" LOGIN'))
        self.names.append(name)
        return name

    def granted(self, part: str) -> str:
        """A new role with the privileges of ``part`` on ``jobs``, granted by its owner."""
        name = self.create(part)
        self.run_as_owner(grant_statements("jobs", JobQueueRoles(**{part: name})))
        return name

    def run_as_owner(self, statements: list[str]) -> None:
        with self.admin.begin() as connection:
            run_verbatim(connection, statements)

    def url_of(self, name: str) -> URL:
        return self.url.set(username=name)

    def engine_of(self, name: str) -> Engine:
        engine = create_engine(self.url_of(name))
        self.engines.append(engine)
        return engine

    def drop(self) -> None:
        for engine in self.engines:
            engine.dispose()
        with self.admin.begin() as connection:
            for name in self.names:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n"
                    ),
                    {"n": name},
                )
                connection.execute(text(f'DROP OWNED BY "{name}"'))
                connection.execute(text(f'DROP ROLE "{name}"'))
        self.admin.dispose()


@pytest.fixture
def roles(database_url: URL) -> Iterator[Roles]:
    made = Roles(database_url)
    yield made
    made.drop()


def refused(engine: Engine, action: Callable[[Session], Any]) -> None:
    """``action`` in a session on ``engine`` fails for want of a privilege."""
    with Session(engine) as session, pytest.raises(DBAPIError) as raised:
        action(session)
    assert getattr(raised.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE, raised.value


def refused_sql(engine: Engine, *statements: str) -> None:
    """Each statement, in a transaction of its own, fails for want of a privilege."""
    for statement in statements:
        refused(engine, lambda session, s=statement: session.execute(text(s)))  # type: ignore[misc]


def run_verbatim(connection: Connection, statements: list[str]) -> None:
    """Run SQL texts as written (a function body's ``%`` is not a placeholder)."""
    for statement in statements:
        connection.execution_options(no_parameters=True).exec_driver_sql(statement)


def as_admin(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


# --------------------------------------------------------------------------- enqueuer


def test_an_enqueuer_enqueues_one_many_and_keyed_jobs(
    executor: Executor, roles: Roles, engine: Engine
) -> None:
    """The issue's case: INSERT alone could not enqueue, nor a keyed job with SELECT on
    two columns (enqueue read the live job of a key whole)."""
    name = roles.granted("enqueuer")
    as_enqueuer = Executor(executor.kind, roles.engine_of(name), roles.url_of(name))
    try:
        with as_enqueuer.begin() as queue:
            one = queue.enqueue("mail", {"to": "a"})
            later = queue.enqueue("mail", {"to": "b"}, run_at=timedelta(hours=1))
            keyed = queue.enqueue("sync", {"account": 1}, unique_key="sync:1")
            again = queue.enqueue("sync", {"account": 1}, unique_key="sync:1")
            assert again.id == keyed.id and again.status == JobStatus.PENDING
            plain = queue.enqueue_many([{"job_type": "bulk", "data": {"n": n}} for n in range(5)])
            paged = queue.enqueue_many(
                [
                    {"job_type": "sync", "unique_key": "sync:1"},
                    {"job_type": "sync", "unique_key": "sync:2"},
                    {"job_type": "later", "run_at": timedelta(minutes=5)},
                ]
            )
            assert paged[0] == keyed.id
        with as_enqueuer.begin() as queue:
            # Another transaction: the live job of the key is found, not rewritten.
            found = queue.enqueue("sync", unique_key="sync:2")
            assert found.id == paged[1] and found.job_type == "sync"
    finally:
        as_enqueuer.dispose()
    assert later.run_at - later.created_at >= timedelta(hours=1)
    with as_admin(engine) as session:
        queue = JobQueue(session)
        assert queue.get(one.id).data == {"to": "a"}
        assert sum(queue.stats().counts["bulk"].values()) == len(plain) == 5
        assert sum(map(sum, (c.values() for c in queue.stats().counts.values()))) == 10


def test_an_enqueuer_reads_no_payload_and_changes_no_job(roles: Roles, engine: Engine) -> None:
    with as_admin(engine) as session, session.begin():
        theirs = JobQueue(session).enqueue("secret", {"token": "t0p"}).id
    enqueuer = roles.engine_of(roles.granted("enqueuer"))
    refused_sql(
        enqueuer,
        "SELECT data FROM jobs",
        "SELECT result FROM jobs",
        "SELECT last_error FROM jobs",
        "SELECT * FROM jobs",
        "UPDATE jobs SET status = 'cancelled'",
        "UPDATE jobs SET priority = 1",
        "DELETE FROM jobs",
        "INSERT INTO jobs (id, job_type, status) VALUES (gen_random_uuid(), 't', 'completed')",
        "INSERT INTO jobs (id, job_type, worker_id) VALUES (gen_random_uuid(), 't', 'w')",
        "SELECT * FROM claim_job_batch('w', NULL, 1)",
        "TRUNCATE jobs",
    )
    refused(enqueuer, lambda session: JobQueue(session).get(theirs))
    refused(enqueuer, lambda session: JobQueue(session, worker_id="w").claim())
    # The live job of a key it asks for comes back without its payload.
    with Session(enqueuer) as session, session.begin():
        JobQueue(session).enqueue("secret", unique_key="k")
    with as_admin(engine) as session, session.begin():
        session.execute(update(Job).where(Job.unique_key == "k").values(data={"token": "x"}))
    with Session(enqueuer) as session, session.begin():
        live = JobQueue(session).enqueue("secret", {"other": 1}, unique_key="k")
        assert (live.job_type, live.status, live.unique_key) == ("secret", JobStatus.PENDING, "k")
        with pytest.raises(DBAPIError) as raised:
            _ = live.data
        assert getattr(raised.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE


# ----------------------------------------------------------------------------- worker


def test_a_worker_role_drains_the_queue_and_runs_its_maintenance(
    start_worker: StartWorker, roles: Roles, engine: Engine
) -> None:
    """A real worker connected as the worker role: claims, progress, completions and
    failures, the rescue of a dead worker's job and the pruning of old finished jobs."""
    with as_admin(engine) as session, session.begin():
        queue = JobQueue(session, worker_id="dead")
        stale = queue.enqueue("work", {"n": -1})
        queue.claim(batch_size=1)
        queue.start(stale)
        old = queue.enqueue("work", {"n": -2})
        queue.claim(batch_size=1)
        queue.complete(old)
        queue.enqueue_many([{"job_type": "work", "data": {"n": n}} for n in range(20)])
        queue.enqueue("flaky", max_attempts=1)
        session.execute(
            update(Job)
            .where(Job.id == stale.id)
            .values(heartbeat_at=func.statement_timestamp() - timedelta(hours=1))
        )
        session.execute(
            update(Job)
            .where(Job.id == old.id)
            .values(completed_at=func.statement_timestamp() - timedelta(days=30))
        )

    def work(ctx: Any) -> dict[str, int]:
        ctx.progress(50, "halfway")
        return {"n": ctx.data["n"]}

    def flaky(ctx: Any) -> None:
        raise RuntimeError("always")

    registry = Registry({"work": work, "flaky": flaky})
    name = roles.granted("worker")
    with start_worker(
        registry, url=roles.url_of(name), retention=timedelta(days=7), rescue_interval=0.05,
        concurrency=4,
    ) as worker:  # fmt: skip

        def settled() -> bool:
            with as_admin(engine) as session:
                return JobQueue(session).stats().counts == {
                    "work": {"completed": 21},
                    "flaky": {"failed": 1},
                }

        wait_for(settled, what="the worker role to drain the queue")
        assert worker.stats.completed == 21
        finished_by = worker.worker_id
    with as_admin(engine) as session:
        queue = JobQueue(session)
        assert queue.get(stale.id).worker_id == finished_by, "rescued, then run here"
        with pytest.raises(JobNotFoundError):
            queue.get(old.id)


def test_limits_work_for_the_operator_enqueuer_and_worker_roles(
    start_worker: StartWorker, roles: Roles, engine: Engine
) -> None:
    """The operator sets limits, the enqueuer gives jobs their concurrency keys, and a real
    worker connected as the worker role claims them within the limits (it locks the
    controls rows and takes rate tokens)."""
    operator = roles.engine_of(roles.granted("operator"))
    with Session(operator) as session, session.begin():
        queue = JobQueue(session)
        queue.limit("keyed", max_running_per_key=1, rate_limit=1000)
        queue.limit("capped", max_running=2)
    enqueuer = roles.engine_of(roles.granted("enqueuer"))
    with Session(enqueuer) as session, session.begin():
        queue = JobQueue(session)
        for n in range(6):
            queue.enqueue("keyed", {"n": n}, concurrency_key=f"k{n % 2}")
        queue.enqueue_many([{"job_type": "capped", "concurrency_key": "x"} for _ in range(4)])
    registry = Registry({"keyed": lambda ctx: None, "capped": lambda ctx: None})
    name = roles.granted("worker")
    with start_worker(registry, url=roles.url_of(name), concurrency=4):

        def settled() -> bool:
            with as_admin(engine) as session:
                return JobQueue(session).stats().counts == {
                    "keyed": {"completed": 6},
                    "capped": {"completed": 4},
                }

        wait_for(settled, what="the worker role to drain the limited types")
    worker = roles.engine_of(name)
    refused_sql(worker, "UPDATE jobs_controls SET max_running = 100")


def test_a_worker_role_cannot_rewrite_a_request_or_the_schema(roles: Roles, engine: Engine) -> None:
    with as_admin(engine) as session, session.begin():
        JobQueue(session).enqueue("t", {"n": 1})
    worker = roles.engine_of(roles.granted("worker"))
    with Session(worker) as session, session.begin():
        [claimed] = JobQueue(session, worker_id="w").claim()
        assert claimed.data == {"n": 1}
        session.execute(text("SELECT * FROM claim_job_batch('w', NULL, 1)")).all()
    refused_sql(
        worker,
        "UPDATE jobs SET data = '{}'",
        "UPDATE jobs SET job_type = 'other'",
        "UPDATE jobs SET priority = 1000",
        "UPDATE jobs SET unique_key = 'k'",
        "INSERT INTO jobs (id, job_type) VALUES (gen_random_uuid(), 't')",
        "TRUNCATE jobs",
        "ALTER TABLE jobs ADD COLUMN extra int",
        "DROP TABLE jobs",
        "DROP FUNCTION claim_job_batch(varchar, varchar[], integer)",
    )


# ---------------------------------------------------------------------- monitor, operator


def jobs_in_every_state(engine: Engine) -> dict[str, uuid.UUID]:
    """A completed and a failed job finished 30 days ago, a running and a pending job."""
    with as_admin(engine) as session, session.begin():
        queue = JobQueue(session, worker_id="w")
        ids = {
            kind: queue.enqueue(kind, {"secret": kind}, max_attempts=1).id
            for kind in ("done", "bad", "held")
        }
        queue.enqueue("waiting")
        by_type = {job.job_type: job for job in queue.claim(batch_size=3)}
        queue.start(by_type["held"])
        queue.complete(by_type["done"], {"ok": True})
        queue.fail(by_type["bad"], "boom")
        session.execute(
            update(Job)
            .where(Job.id.in_([ids["done"], ids["bad"]]))
            .values(completed_at=func.statement_timestamp() - timedelta(days=30))
        )
    return ids


def test_a_monitor_reads_everything_the_views_show_and_writes_nothing(
    executor: Executor, roles: Roles, engine: Engine
) -> None:
    ids = jobs_in_every_state(engine)
    name = roles.granted("monitor")
    monitor = roles.engine_of(name)
    as_monitor = Executor(executor.kind, monitor, roles.url_of(name))
    try:
        with as_monitor.begin() as queue:
            assert queue.stats().counts["held"] == {"running": 1}
            assert queue.get(ids["done"]).result == {"ok": True}
    finally:
        as_monitor.dispose()
    with Session(monitor) as session:
        assert take_snapshot(session, Job).running[0].job_type == "held"
    url = roles.url_of(name).render_as_string(hide_password=False)
    for command in (["status"], ["list"], ["show", str(ids["bad"])[-8:]]):
        assert run_cli([*command, "--json", "--database-url", url])[0] == 0, command
    refused_sql(
        monitor,
        "UPDATE jobs SET status = 'cancelled'",
        "DELETE FROM jobs",
        "INSERT INTO jobs (id, job_type) VALUES (gen_random_uuid(), 't')",
        "SELECT * FROM claim_job_batch('w', NULL, 1)",
    )
    refused(monitor, lambda session: JobQueue(session).cancel(ids["held"]))
    refused(monitor, lambda session: JobQueue(session).prune(timedelta(days=1)))


def test_an_operator_cancels_retries_recovers_and_prunes(
    executor: Executor, roles: Roles, engine: Engine
) -> None:
    ids = jobs_in_every_state(engine)
    name = roles.granted("operator")
    as_operator = Executor(executor.kind, roles.engine_of(name), roles.url_of(name))
    try:
        with as_operator.begin() as queue:
            assert queue.retry(ids["bad"]).status == JobStatus.PENDING
            assert queue.cancel(ids["held"]).status == JobStatus.CANCELLED
            assert queue.recover_stale(timedelta(minutes=1)) == 0
            assert queue.prune(timedelta(days=7)) == 1  # "done"
    finally:
        as_operator.dispose()
    operator = roles.engine_of(name)
    url = roles.url_of(name).render_as_string(hide_password=False)
    assert run_cli(["cancel", str(ids["bad"]), "--json", "--database-url", url])[0] == 0
    assert run_cli(["recover", "--json", "--database-url", url])[0] == 0
    assert run_cli(["prune", "--older-than", "7d", "--json", "--database-url", url])[0] == 0
    refused_sql(
        operator,
        "UPDATE jobs SET data = '{}'",
        "UPDATE jobs SET result = '{}'",
        "INSERT INTO jobs (id, job_type) VALUES (gen_random_uuid(), 't')",
        "SELECT * FROM claim_job_batch('w', NULL, 1)",
        "TRUNCATE jobs",
        "ALTER TABLE jobs ADD COLUMN extra int",
    )


def run_cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


# ---------------------------------------------------------------------- migrator, op, CLI


def test_a_migrator_owns_what_it_migrates_and_grants_the_others(
    empty_database_url: URL,
) -> None:
    made = Roles(empty_database_url)
    try:
        migrator = made.create("migrator")
        made.run_as_owner([f'GRANT CREATE ON SCHEMA public TO "{migrator}"'])
        as_migrator = made.engine_of(migrator)
        upgrade(as_migrator)
        with as_migrator.connect() as connection:
            owners = connection.execute(
                text(
                    "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'jobs' "
                    "UNION SELECT pg_get_userbyid(proowner) FROM pg_proc "
                    "WHERE proname IN ('claim_job_batch', 'jobs_claim_within_limits', "
                    "'jobs_notify_enqueued')"
                )
            ).scalars()
            assert set(owners) == {migrator}
        worker = made.create("worker")
        with as_migrator.begin() as connection:
            # The owner grants through the Alembic operation, then migrates on.
            Operations(MigrationContext.configure(connection)).grant_job_queue(  # type: ignore[attr-defined]
                "jobs", worker=worker
            )
            connection.exec_driver_sql("ALTER TABLE jobs ADD COLUMN tenant int")
            objects = QueueObjects(schema="public", table="jobs", claim_function="claim_job_batch")
            run_verbatim(connection, install_statements(objects))
        as_worker = made.engine_of(worker)
        with Session(as_migrator) as session, session.begin():
            JobQueue(session).enqueue("t")
        with Session(as_worker) as session, session.begin():
            assert len(JobQueue(session, worker_id="w").claim()) == 1
        refused_sql(as_worker, "ALTER TABLE jobs DROP COLUMN tenant", "DROP TABLE jobs")
    finally:
        made.drop()


def test_objects_made_by_another_role_are_handed_to_the_migrator(roles: Roles) -> None:
    migrator = roles.create("migrator")
    as_migrator = roles.engine_of(migrator)
    refused_sql(as_migrator, "ALTER TABLE jobs ADD COLUMN tenant int")
    roles.run_as_owner(
        [
            # The schema's owner lets it create there (replacing a function is creating).
            f'GRANT CREATE ON SCHEMA public TO "{migrator}"',
            *grant_statements("jobs", JobQueueRoles(migrator=migrator)),
        ]
    )
    with as_migrator.begin() as connection:
        objects = QueueObjects(schema="public", table="jobs", claim_function="claim_job_batch")
        run_verbatim(connection, install_statements(objects))
        connection.exec_driver_sql("ALTER TABLE jobs ADD COLUMN tenant int")


def test_the_printed_grants_are_the_ones_that_work(roles: Roles) -> None:
    enqueuer, monitor = roles.create("enqueuer"), roles.create("monitor")
    code, out = run_cli(["grants", "--enqueuer", enqueuer, "--monitor", monitor, "--json"])
    assert code == 0
    roles.run_as_owner(json.loads(out))
    with Session(roles.engine_of(enqueuer)) as session, session.begin():
        job_id = JobQueue(session).enqueue("t", unique_key="k").id
    with Session(roles.engine_of(monitor)) as session:
        assert JobQueue(session).get(job_id).job_type == "t"
    code, out = run_cli(["grants", "--revoke", "--enqueuer", enqueuer, "--json"])
    roles.run_as_owner(json.loads(out))
    refused_sql(
        roles.engine_of(enqueuer), "INSERT INTO jobs (id, job_type) VALUES (gen_random_uuid(), 't')"
    )


def test_the_enqueuer_may_read_exactly_what_enqueueing_reads() -> None:
    granted = privileges("enqueuer").select
    assert granted is not None and set(granted) == set(KEY_HOLDER_COLUMNS)
