-- Take the transaction-scoped advisory lock of one maintenance duty on one job table,
-- without waiting. Whoever gets it runs the duty in this transaction; the lock is
-- released at commit, so a worker that dies mid-duty cannot keep it.
-- The key: a fixed class id for sqla_jobqueue, and a hash of duty, schema and table.
SELECT pg_try_advisory_xact_lock(
    :class_id,
    hashtext(:duty || ':' || coalesce(:schema, current_schema()) || '.' || :table)
)
