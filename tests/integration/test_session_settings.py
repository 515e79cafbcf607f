"""The worker's session settings (statements/session.py) on a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, text

from sqla_jobqueue.statements.session import (
    bound_waits,
    pin_read_committed,
    unpin_read_committed,
)


def test_bounded_waits_are_local_and_a_missing_one_keeps_the_sessions_own(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SET lock_timeout = '7s'"))
        connection.commit()
        with connection.begin():
            connection.execute(*bound_waits(None, timedelta(milliseconds=1500)))
            shown = connection.execute(
                text("SELECT current_setting('lock_timeout'), "
                     "current_setting('idle_in_transaction_session_timeout')")
            ).one()  # fmt: skip
            assert tuple(shown) == ("7s", "1500ms")
            connection.execute(*bound_waits(timedelta(0), None))
            assert connection.execute(text("SHOW lock_timeout")).scalar_one() == "0"
        # Local to the transaction: the session's own values are back.
        assert connection.execute(text("SHOW lock_timeout")).scalar_one() == "7s"
        idle = connection.execute(text("SHOW idle_in_transaction_session_timeout")).scalar_one()
        assert idle == "0"


def test_read_committed_is_pinned_and_unpinned_on_a_kept_connection(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SET default_transaction_isolation = 'serializable'"))
        connection.commit()
        kept = connection.execution_options(isolation_level="AUTOCOMMIT")
        kept.execute(*pin_read_committed())
        assert kept.execute(text("SHOW transaction_isolation")).scalar_one() == "read committed"
        kept.execute(*unpin_read_committed())
        default = kept.execute(text("SHOW default_transaction_isolation")).scalar_one()
        assert default == "read committed"  # the server's default, not the session's SET
