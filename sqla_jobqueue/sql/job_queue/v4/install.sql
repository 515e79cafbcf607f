-- sqla_jobqueue job queue objects, version 4: version 3 and limits on job types, kept by
-- the claim: at most so many jobs of a type held at once, at most so many per concurrency
-- key (oldest first), and at most so many claimed per period (a token bucket). The limits
-- are columns of the controls table; a claim that may take jobs of a limited type calls
-- the limited claim function, which claim_job_batch now is a call of.
-- Never edit a shipped version: revisions that name it must render the same SQL forever.
-- Placeholders in braces are quoted identifiers and literals filled in by sqla_jobqueue.
-- Statements are separated by a line holding only "-- statement".
CREATE OR REPLACE FUNCTION {limited_claim_function}(
    p_worker_id varchar,
    p_job_types varchar[],
    p_limit integer,
    p_status varchar,
    p_crashed boolean
) RETURNS SETOF {table}
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
-- Planned once per session: a custom plan of the claim cost more to make than to run.
SET plan_cache_mode = force_generic_plan
AS $limited$
DECLARE
    claim_time timestamptz;
    unlimited_wanted boolean;
    limited_types varchar[];
    open_types varchar[];
    budgets integer[];
    key_limits integer[];
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'p_limit must be at least 1, got %', p_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_worker_id IS NULL OR p_worker_id = '' THEN
        RAISE EXCEPTION 'p_worker_id must name the claiming worker'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_status IS NULL OR p_status NOT IN ('claimed', 'running') THEN
        RAISE EXCEPTION 'p_status must be claimed or running, got %', p_status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The limited types this claim may take, their controls rows locked: claims of one
    -- limited type take turns, and a claim that finds the row locked passes over the type
    -- this time. Every later statement of this function reads a new snapshot, so it
    -- counts the jobs of every claim that committed before the lock was granted.
    SELECT array_agg(controls.job_type) INTO limited_types
    FROM (
        SELECT controls.job_type
        FROM {controls_table} AS controls
        WHERE controls.paused_at IS NULL
          AND (controls.max_running IS NOT NULL
               OR controls.max_running_per_key IS NOT NULL
               OR controls.rate_limit IS NOT NULL)
          AND (p_job_types IS NULL OR controls.job_type = ANY (p_job_types))
        ORDER BY controls.job_type
        FOR NO KEY UPDATE SKIP LOCKED
    ) AS controls;
    IF limited_types IS NOT NULL
       AND current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'claiming jobs of limited types needs a READ COMMITTED transaction, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Claim in a transaction of its own at READ COMMITTED.';
    END IF;
    claim_time := clock_timestamp();
    -- Whether the claim may take types that are neither limited nor paused: when it names
    -- only limited types, it does not read the claim index for others.
    unlimited_wanted := p_job_types IS NULL OR EXISTS (
        SELECT 1
        FROM unnest(p_job_types) AS wanted(job_type)
        WHERE wanted.job_type NOT IN (
            SELECT controls.job_type FROM {controls_table} AS controls
            WHERE controls.paused_at IS NOT NULL
               OR controls.max_running IS NOT NULL
               OR controls.max_running_per_key IS NOT NULL
               OR controls.rate_limit IS NOT NULL
        )
    );
    -- How many jobs of each limited type this claim may take: what its limit on held jobs
    -- leaves, and the whole tokens its bucket holds now.
    SELECT array_agg(typed.job_type), array_agg(typed.budget), array_agg(typed.max_running_per_key)
    INTO open_types, budgets, key_limits
    FROM (
        SELECT controls.job_type,
               controls.max_running_per_key,
               least(
                   p_limit,
                   controls.max_running - (
                       SELECT count(*)
                       FROM {table} AS held
                       WHERE held.status IN ('claimed', 'running')
                         AND held.job_type = controls.job_type
                   ),
                   floor(least(
                       controls.rate_limit,
                       coalesce(controls.rate_tokens, controls.rate_limit)
                       + extract(epoch FROM claim_time - controls.rate_refilled_at)
                         * controls.rate_limit / extract(epoch FROM controls.rate_period)
                   ))
               )::integer AS budget
        FROM {controls_table} AS controls
        WHERE controls.job_type = ANY (limited_types)
    ) AS typed
    WHERE typed.budget > 0;
    RETURN QUERY
    WITH limited AS MATERIALIZED (
        -- Of each open limited type, at most its budget of due jobs, best first; with a
        -- limit per key, a job whose key has that many jobs held, or pending before it
        -- (by created_at, then id), is passed over: each key runs oldest first.
        SELECT candidate.id, candidate.priority, candidate.created_at
        FROM unnest(open_types, budgets, key_limits) AS limited_type(job_type, budget, key_limit)
        CROSS JOIN LATERAL (
            SELECT job.id, job.priority, job.created_at
            FROM {table} AS job
            WHERE job.status = 'pending'
              AND job.job_type = limited_type.job_type
              AND job.run_at <= statement_timestamp()
              AND job.attempts < job.max_attempts
              AND (p_crashed IS NULL OR (job.crashes > 0) = p_crashed)
              AND (limited_type.key_limit IS NULL OR job.concurrency_key IS NULL OR (
                  SELECT count(*)
                  FROM (
                      SELECT 1
                      FROM {table} AS held
                      WHERE held.job_type = job.job_type
                        AND held.concurrency_key = job.concurrency_key
                        AND held.status IN ('claimed', 'running')
                      LIMIT limited_type.key_limit
                  ) AS held_jobs
              ) + (
                  SELECT count(*)
                  FROM (
                      SELECT 1
                      FROM {table} AS earlier
                      WHERE earlier.job_type = job.job_type
                        AND earlier.concurrency_key = job.concurrency_key
                        AND earlier.status = 'pending'
                        AND (earlier.created_at, earlier.id) < (job.created_at, job.id)
                      LIMIT limited_type.key_limit
                  ) AS earlier_jobs
              ) < limited_type.key_limit)
            ORDER BY job.priority DESC, job.created_at, job.id
            LIMIT limited_type.budget
            FOR NO KEY UPDATE OF job SKIP LOCKED
        ) AS candidate
    ), unlimited AS MATERIALIZED (
        SELECT job.id, job.priority, job.created_at
        FROM {table} AS job
        WHERE unlimited_wanted
          AND job.status = 'pending'
          AND (p_job_types IS NULL OR job.job_type = ANY (p_job_types))
          AND job.run_at <= statement_timestamp()
          AND job.attempts < job.max_attempts
          AND (p_crashed IS NULL OR (job.crashes > 0) = p_crashed)
          AND job.job_type NOT IN (
              SELECT controls.job_type FROM {controls_table} AS controls
              WHERE controls.paused_at IS NOT NULL
                 OR controls.max_running IS NOT NULL
                 OR controls.max_running_per_key IS NOT NULL
                 OR controls.rate_limit IS NOT NULL
          )
        ORDER BY job.priority DESC, job.created_at, job.id
        LIMIT p_limit
        FOR NO KEY UPDATE SKIP LOCKED
    ), chosen AS (
        -- The best p_limit of both; the rows locked and not chosen are let go at commit.
        SELECT candidate.id
        FROM (SELECT * FROM limited UNION ALL SELECT * FROM unlimited) AS candidate
        ORDER BY candidate.priority DESC, candidate.created_at, candidate.id
        LIMIT p_limit
    ), claimed AS (
        UPDATE {table} AS job
        SET status = p_status,
            worker_id = p_worker_id,
            claimed_at = claim_time,
            heartbeat_at = claim_time,
            started_at = CASE
                WHEN p_status = 'running' THEN claim_time
                ELSE job.started_at
            END,
            attempts = job.attempts + 1
        WHERE job.id = ANY (ARRAY(SELECT chosen.id FROM chosen))
        RETURNING job.*
    ), charged AS (
        -- Each job claimed of a rate-limited type takes a token from its bucket.
        UPDATE {controls_table} AS controls
        SET rate_tokens = least(
                controls.rate_limit,
                coalesce(controls.rate_tokens, controls.rate_limit)
                + extract(epoch FROM claim_time - controls.rate_refilled_at)
                  * controls.rate_limit / extract(epoch FROM controls.rate_period)
            ) - used.jobs,
            rate_refilled_at = claim_time
        FROM (
            SELECT claimed.job_type, count(*) AS jobs FROM claimed GROUP BY claimed.job_type
        ) AS used
        WHERE controls.job_type = used.job_type
          AND controls.job_type = ANY (open_types)
          AND controls.rate_limit IS NOT NULL
    )
    SELECT * FROM claimed;
END;
$limited$
-- statement
REVOKE ALL ON FUNCTION {limited_claim_signature} FROM PUBLIC
-- statement
COMMENT ON FUNCTION {limited_claim_signature} IS {comment}
-- statement
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
    -- A job that crashed a worker runs alone: only a claim of one job takes it.
    RETURN QUERY SELECT * FROM {limited_claim_function}(
        p_worker_id, p_job_types, p_batch_size, 'claimed',
        CASE WHEN p_batch_size = 1 THEN NULL ELSE false END
    );
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
