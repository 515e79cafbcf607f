-- sqla_jobqueue job queue objects, version 3: version 2 passing over the jobs of paused types
-- (the controls table), and what happens when a job that someone waits for (awaited)
-- finishes: its id is announced, and the jobs that depend on it are settled (pending once
-- all they depend on completed, cancelled when one did not).
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
          AND candidate.job_type NOT IN (
              SELECT controls.job_type FROM {controls_table} AS controls
              WHERE controls.paused_at IS NOT NULL
          )
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
-- As the table's owner: an enqueuer may not write a job's status, and a job inserted with
-- depends_on must start waiting unless everything it depends on has completed.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $notify$
BEGIN
    -- By primary key (id = ANY(ARRAY(...))): a join to the transition table, whose size
    -- the planner cannot know, plans as a scan of the whole table.
    UPDATE {table} AS job
    SET status = 'waiting'
    WHERE job.status = 'pending'
      AND job.id = ANY (ARRAY(
          SELECT new_jobs.id
          FROM new_jobs
          WHERE new_jobs.depends_on IS NOT NULL
            AND EXISTS (
                SELECT 1
                FROM unnest(new_jobs.depends_on) AS dependency(id)
                LEFT JOIN {table} AS parent ON parent.id = dependency.id
                WHERE parent.status IS DISTINCT FROM 'completed'
            )
      ));
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
-- statement
CREATE OR REPLACE FUNCTION {settle_function}(p_finished uuid, p_limit integer)
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $settle$
DECLARE
    most integer;
    released_count integer;
    released_types varchar[];
    cancelled_count integer;
BEGIN
    -- Settlements of jobs that depend on several others wait for each other, and each
    -- reads what the one before it committed: the last two jobs such a job depends on,
    -- finishing in two transactions at once, would otherwise each see the other
    -- unfinished. A job with one dependency (a chain) needs no lock, and jobs nothing
    -- depends on return at once.
    IF p_finished IS NOT NULL THEN
        SELECT max(cardinality(waiting.depends_on)) INTO most
        FROM {table} AS waiting
        WHERE waiting.status = 'waiting' AND waiting.depends_on @> ARRAY[p_finished];
        IF most IS NULL THEN
            RETURN 0;
        END IF;
        IF most > 1 THEN
            PERFORM pg_advisory_xact_lock(hashtextextended({settle_lock}, 0));
        END IF;
    END IF;
    -- Waiting jobs that depend on p_finished (on anything when it is NULL) whose
    -- dependencies have all completed become pending; rows others have locked are left
    -- to them or to the next settling.
    WITH ready AS (
        SELECT waiting.id
        FROM {table} AS waiting
        WHERE waiting.status = 'waiting'
          AND (p_finished IS NULL OR waiting.depends_on @> ARRAY[p_finished])
          AND NOT EXISTS (
              SELECT 1
              FROM unnest(waiting.depends_on) AS dependency(id)
              LEFT JOIN {table} AS parent ON parent.id = dependency.id
              WHERE parent.status IS DISTINCT FROM 'completed'
          )
        LIMIT p_limit
        FOR UPDATE OF waiting SKIP LOCKED
    ), released AS (
        UPDATE {table} AS job
        SET status = 'pending'
        WHERE job.id = ANY (ARRAY(SELECT ready.id FROM ready))
        RETURNING job.job_type
    )
    SELECT count(*), array_agg(DISTINCT released.job_type)
    INTO released_count, released_types
    FROM released;
    -- Idle workers hear of released jobs as they hear of new ones.
    PERFORM pg_notify({channel}, released_type)
    FROM unnest(released_types) AS released_type;
    -- Waiting jobs one of whose dependencies failed, was cancelled or no longer exists
    -- are cancelled, saying which and why.
    WITH doomed AS (
        SELECT waiting.id, broken.id AS dependency, broken.status
        FROM {table} AS waiting
        CROSS JOIN LATERAL (
            SELECT dependency.id, parent.status
            FROM unnest(waiting.depends_on) AS dependency(id)
            LEFT JOIN {table} AS parent ON parent.id = dependency.id
            WHERE parent.status IS NULL OR parent.status IN ('failed', 'cancelled')
            LIMIT 1
        ) AS broken
        WHERE waiting.status = 'waiting'
          AND (p_finished IS NULL OR waiting.depends_on @> ARRAY[p_finished])
        LIMIT p_limit
        FOR UPDATE OF waiting SKIP LOCKED
    )
    UPDATE {table} AS job
    SET status = 'cancelled',
        completed_at = statement_timestamp(),
        last_error = format(
            'cancelled: it depends on job %s, which %s',
            doomed.dependency,
            coalesce('ended ' || doomed.status, 'no longer exists')
        )
    FROM doomed
    WHERE job.id = doomed.id;
    GET DIAGNOSTICS cancelled_count = ROW_COUNT;
    RETURN released_count + cancelled_count;
END;
$settle$
-- statement
REVOKE ALL ON FUNCTION {settle_signature} FROM PUBLIC
-- statement
COMMENT ON FUNCTION {settle_signature} IS {comment}
-- statement
CREATE OR REPLACE FUNCTION {finished_function}() RETURNS trigger
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $finished$
BEGIN
    PERFORM pg_notify({finished_channel}, NEW.id::text);
    PERFORM {settle_function}(NEW.id, NULL);
    RETURN NULL;
END;
$finished$
-- statement
REVOKE ALL ON FUNCTION {finished_function}() FROM PUBLIC
-- statement
COMMENT ON FUNCTION {finished_function}() IS {comment}
-- statement
-- The WHEN clause runs for every changed row, the function only for awaited jobs: jobs
-- nobody waits for cost one comparison. Cancelling a waiting job fires it again for the
-- jobs that depend on that one; past a depth of 16 the workers' settling duty goes on.
CREATE OR REPLACE TRIGGER {finished_trigger}
AFTER UPDATE OF status ON {table}
FOR EACH ROW
WHEN (
    NEW.awaited
    AND NEW.status IN ('completed', 'failed', 'cancelled')
    AND pg_trigger_depth() < 16
)
EXECUTE FUNCTION {finished_function}()
