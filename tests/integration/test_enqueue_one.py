"""enqueue's returned job: built from what was inserted, persistent in the caller's
session without a query, and the same as a fresh load, on both executors. Loading an
application model's deferred columns on attribute access is the sync ORM's (an
``AsyncSession`` never loads lazily), so that test runs on a ``Session`` only."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, String, inspect, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sqla_jobqueue import Job, JobMixin, JobQueue, JobStatus
from tests.integration.executors import Executor, orm_session


def test_the_returned_job_is_persistent_clean_and_equal_to_a_fresh_load(
    executor: Executor,
) -> None:
    with executor.recording() as statements, executor.begin() as queue:
        job = queue.enqueue("t", {"n": [1, "é"]}, priority=7, max_attempts=2)
        session = orm_session(queue)
        state = inspect(job)
        assert state.persistent and state.session is session and not state.modified
        assert session.identity_map.get(state.key) is job
    # The commit flushed nothing: the job needed no UPDATE, and nothing was loaded.
    assert len(statements) == 1, "one INSERT; nothing loaded, nothing flushed"
    with executor.begin() as queue:
        fresh = queue.get(job.id)
        assert fresh is not job
        columns = [c.key for c in inspect(Job).column_attrs]
        assert {c: getattr(job, c) for c in columns} == {c: getattr(fresh, c) for c in columns}
        assert fresh.status is JobStatus.PENDING and fresh.run_at >= fresh.created_at


def test_a_delayed_keyed_job_is_built_from_its_row_too(executor: Executor) -> None:
    with executor.begin() as queue:
        job = queue.enqueue("t", run_at=timedelta(hours=1), unique_key="k")
        assert job.unique_key == "k" and job.run_at - job.created_at >= timedelta(hours=1)
        assert queue.enqueue("t", unique_key="k") is job


class _Base(DeclarativeBase):
    pass


class TenantJob(JobMixin, _Base):
    __tablename__ = "tenant_jobs"
    tenant: Mapped[str] = mapped_column(String(20), server_default="acme")


def test_an_application_model_first_used_by_enqueue_loads_its_own_columns_on_access(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    # No instance of TenantJob was made before: enqueue is what configures its mapper.
    _Base.metadata.create_all(engine)
    with session_factory.begin() as session:
        job = JobQueue(session, TenantJob).enqueue("t")
        assert "tenant" in inspect(job).unloaded
        assert job.tenant == "acme"
        assert session.execute(text("SELECT count(*) FROM tenant_jobs")).scalar_one() == 1
