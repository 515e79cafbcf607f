-- sqla_jobqueue job queue objects, version 2: a job that crashed a worker (crashes > 0) runs alone,
-- so only a claim of one job takes it.
-- Never edit a shipped version: revisions that name it must render the same SQL forever.
-- Placeholders in braces are quoted identifiers and literals filled in by sqla_jobqueue.
-- Statements are separated by a line holding only "-- statement".
CREATE OR REPLACE FUNCTION {claim_function}(
    p_worker_id varchar,
    p_job_types varchar[],
    p_batch_size integer DEFAULT 10
) RETURNS SETOF {table}
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $claim$
BEGIN
    IF p_batch_size IS NULL OR p_batch_size < 1 THEN
        RAISE EXCEPTION 'p_batch_size must be at least 1, got %', p_batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_worker_id IS NULL OR p_worker_id = '' THEN
        RAISE EXCEPTION 'p_worker_id must name the claiming worker'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH claimable AS MATERIALIZED (
        SELECT candidate.id
        FROM {table} AS candidate
        WHERE candidate.status = 'pending'
          AND (p_job_types IS NULL OR candidate.job_type = ANY (p_job_types))
          AND candidate.run_at <= statement_timestamp()
          AND candidate.attempts < candidate.max_attempts
          AND (candidate.crashes = 0 OR p_batch_size = 1)
        ORDER BY candidate.priority DESC, candidate.created_at, candidate.id
        LIMIT p_batch_size
        FOR NO KEY UPDATE SKIP LOCKED
    )
    UPDATE {table} AS job
    SET status = 'claimed',
        worker_id = p_worker_id,
        claimed_at = statement_timestamp(),
        heartbeat_at = statement_timestamp(),
        attempts = job.attempts + 1
    -- An array, not a join: a join to the CTE plans as a hash join over the whole table.
    WHERE job.id = ANY (ARRAY(SELECT claimable.id FROM claimable))
    RETURNING job.*;
END;
$claim$
-- statement
REVOKE ALL ON FUNCTION {claim_signature} FROM PUBLIC
-- statement
COMMENT ON FUNCTION {claim_signature} IS {comment}
-- statement
CREATE OR REPLACE FUNCTION {notify_function}() RETURNS trigger
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $notify$
BEGIN
    PERFORM pg_notify({channel}, enqueued.job_type)
    FROM (SELECT DISTINCT job_type FROM new_jobs) AS enqueued;
    RETURN NULL;
END;
$notify$
-- statement
REVOKE ALL ON FUNCTION {notify_function}() FROM PUBLIC
-- statement
COMMENT ON FUNCTION {notify_function}() IS {comment}
-- statement
CREATE OR REPLACE TRIGGER {trigger}
AFTER INSERT ON {table}
REFERENCING NEW TABLE AS new_jobs
FOR EACH STATEMENT
EXECUTE FUNCTION {notify_function}()
