"""The fixtures give each test its own migrated database."""

from __future__ import annotations

from sqlalchemy import Engine, text


def test_database_has_jobs_table_and_claim_function(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0
        functions = connection.execute(
            text("SELECT proname FROM pg_proc WHERE proname = 'claim_job_batch'")
        ).scalars()
        assert list(functions) == ["claim_job_batch"]
