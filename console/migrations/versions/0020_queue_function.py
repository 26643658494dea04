"""PostgreSQL: the queue transaction's work in one server-side function, queue_calls

Revision ID: 0020_queue_function
Revises: 0019_runner_clock
Create Date: 2026-12-06

``queue_calls(calls, ranks, waiting_statuses, channel)`` does what a queue transaction does
for a list of queue calls (``console/jobs/queue_pg.py`` builds the arguments and reads the
answer), so that a batch of calls costs one statement: its own transaction, one round trip.

- ``calls``: a JSON array; each call has ``tenant_id``, ``day`` (the UTC date its daily count
  goes to), ``types`` and ``sizes`` (type and payload size of each job it adds, in order: a
  refusal names the first one at fault), ``largest`` (the largest of ``sizes``), ``adding``
  (how many jobs it adds to the waiting ones), ``counted`` (how many count against the daily
  limit), ``jobs`` (rows of ``jobs``, NULL columns left out; one without ``priority`` gets
  the tenant's default), ``created`` (``[hour, tenant_id, handler, job_type, n]`` for the
  rollups), and optionally ``audit`` (a row of ``audit_entries``) and ``batch`` (a row of
  ``batches``; a callback template whose priority is null gets the tenant's default).
- ``ranks`` (priority name → rank), ``waiting_statuses`` (what counts against
  ``max_queued_jobs``), ``channel`` (where to NOTIFY): passed in, so that the Python side
  states them once.

Returns a JSON array, one answer per call in the order given: ``{"rank": r}`` (stored, with
the tenant's default priority rank) or ``{"refused": what, …figures}`` (nothing of that call
stored): ``unknown_tenant``, ``duplicate`` (its idempotency key was stored meanwhile),
``allowed_job_types`` (``job_type``, ``allowed``), ``max_job_payload_size`` (``size``,
``max``), ``max_queued_jobs`` (``waiting``, ``max``, ``adding``), ``max_daily_jobs``
(``used``, ``max``). Any other error fails the whole statement: nothing of any call is stored.

Nothing on SQLite: there the queue path runs its statements in-process (``queue_sql.py``).
"""
from alembic import op

revision = "0020_queue_function"
down_revision = "0019_runner_clock"
branch_labels = None
depends_on = None

QUEUE_CALLS = r"""
CREATE OR REPLACE FUNCTION queue_calls(calls jsonb, ranks jsonb, waiting_statuses text[],
                                       channel text) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
    queue_call jsonb;
    slot integer;
    tenant record;
    default_rank smallint;
    answers jsonb[] := array_fill(NULL::jsonb, ARRAY[jsonb_array_length(calls)]);
    refusal jsonb;
    waiting integer;
    total integer;
    counted integer;
    batch jsonb;
    kind text;
    template jsonb;
    created jsonb := '[]';
    violated text;
BEGIN
    -- Tenant rows are locked in one order (by id, bytewise like Python's sort) whatever order
    -- the calls came in: two processes' batches never wait on each other in a cycle.
    FOR queue_call, slot IN
        SELECT c.value, c.n::integer
          FROM jsonb_array_elements(calls) WITH ORDINALITY AS c(value, n)
         ORDER BY c.value->>'tenant_id' COLLATE "C", c.n
    LOOP
        refusal := NULL;
        -- A sub-transaction per call: a refusal rolls back that call's writes alone.
        BEGIN
            -- FOR NO KEY UPDATE: queuers of a tenant wait in line on its row (the limits'
            -- atomicity) while foreign-key checks (FOR KEY SHARE) of runners pass; under FOR
            -- UPDATE a runner's claim could wait for a queuer waiting for the runner's rollups.
            SELECT t.max_queued_jobs, t.max_daily_jobs, t.max_job_payload_size,
                   t.allowed_job_types::jsonb AS allowed, t.default_job_priority
              INTO tenant FROM tenants t WHERE t.id = queue_call->>'tenant_id'
               FOR NO KEY UPDATE;
            IF NOT FOUND THEN
                refusal := '{"refused": "unknown_tenant"}';
                RAISE EXCEPTION USING ERRCODE = 'QC001';
            END IF;
            -- Each check is one expression when it passes; only a refusal looks for the
            -- first job at fault, which its message names.
            IF tenant.allowed IS NOT NULL AND NOT tenant.allowed @> (queue_call->'types') THEN
                SELECT jsonb_build_object('refused', 'allowed_job_types', 'job_type', t.value,
                                          'allowed', tenant.allowed)
                  INTO refusal
                  FROM jsonb_array_elements_text(queue_call->'types') WITH ORDINALITY AS t(value, n)
                 WHERE NOT tenant.allowed ? t.value ORDER BY t.n LIMIT 1;
                RAISE EXCEPTION USING ERRCODE = 'QC001';
            END IF;
            IF (queue_call->>'largest')::integer > tenant.max_job_payload_size THEN
                SELECT jsonb_build_object('refused', 'max_job_payload_size',
                                          'size', s.value::integer,
                                          'max', tenant.max_job_payload_size)
                  INTO refusal
                  FROM jsonb_array_elements_text(queue_call->'sizes') WITH ORDINALITY AS s(value, n)
                 WHERE s.value::integer > tenant.max_job_payload_size ORDER BY s.n LIMIT 1;
                RAISE EXCEPTION USING ERRCODE = 'QC001';
            END IF;
            IF tenant.max_queued_jobs IS NOT NULL THEN
                -- Counted only up to one past the limit: the cost follows the limit, not the
                -- length of the queue.
                SELECT count(*) INTO waiting FROM (
                    SELECT 1 FROM jobs j
                     WHERE j.tenant_id = queue_call->>'tenant_id'
                       AND j.status = ANY(waiting_statuses)
                     LIMIT tenant.max_queued_jobs + 1) AS w;
                IF (queue_call->>'adding')::integer
                   > greatest(0, tenant.max_queued_jobs - waiting) THEN
                    refusal := jsonb_build_object('refused', 'max_queued_jobs',
                                                  'waiting', waiting,
                                                  'max', tenant.max_queued_jobs,
                                                  'adding', (queue_call->>'adding')::integer);
                    RAISE EXCEPTION USING ERRCODE = 'QC001';
                END IF;
            END IF;
            counted := (queue_call->>'counted')::integer;
            IF counted > 0 THEN
                -- The increment and the check in one statement: its row lock makes concurrent
                -- queuers (other processes too) see each other's counts.
                INSERT INTO tenant_daily_usage AS u (tenant_id, day, jobs_accepted,
                                                     recurring_runs)
                VALUES (queue_call->>'tenant_id', (queue_call->>'day')::date, counted, 0)
                ON CONFLICT (tenant_id, day) DO UPDATE
                   SET jobs_accepted = u.jobs_accepted + excluded.jobs_accepted
                RETURNING u.jobs_accepted + u.recurring_runs INTO total;
                IF total > tenant.max_daily_jobs THEN
                    refusal := jsonb_build_object('refused', 'max_daily_jobs',
                                                  'used', total - counted,
                                                  'max', tenant.max_daily_jobs);
                    RAISE EXCEPTION USING ERRCODE = 'QC001';   -- rolls the increment back
                END IF;
            END IF;
            default_rank := (ranks->>tenant.default_job_priority)::smallint;
            -- The base record supplies what a row leaves out: the default priority, and NULL
            -- for the columns a new job does not set.
            INSERT INTO jobs
            SELECT * FROM jsonb_populate_recordset(
                jsonb_populate_record(NULL::jobs, jsonb_build_object('priority', default_rank)),
                queue_call->'jobs');
            batch := queue_call->'batch';
            IF batch IS NOT NULL THEN
                FOREACH kind IN ARRAY ARRAY['on_complete', 'on_success'] LOOP
                    template := (batch->>kind)::jsonb;
                    IF template IS NOT NULL AND template->'priority' = 'null' THEN
                        batch := jsonb_set(batch, ARRAY[kind], to_jsonb(
                            jsonb_set(template, '{priority}', to_jsonb(default_rank))::text));
                    END IF;
                END LOOP;
                INSERT INTO batches SELECT * FROM jsonb_populate_record(NULL::batches, batch);
            END IF;
            IF queue_call ? 'audit' THEN
                INSERT INTO audit_entries
                SELECT * FROM jsonb_populate_record(NULL::audit_entries, queue_call->'audit');
            END IF;
        EXCEPTION
            WHEN SQLSTATE 'QC001' THEN
                NULL;   -- refusal says why
            WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS violated = CONSTRAINT_NAME;
                IF violated IS DISTINCT FROM 'uq_jobs_tenant_idempotency' THEN
                    RAISE;
                END IF;
                refusal := '{"refused": "duplicate"}';
        END;
        IF refusal IS NOT NULL THEN
            answers[slot] := refusal;
        ELSE
            answers[slot] := jsonb_build_object('rank', default_rank);
            created := created || (queue_call->'created');
        END IF;
    END LOOP;

    IF created <> '[]' THEN
        -- The accepted calls' counts once, summed, in key order and the rollups before the
        -- totals: the lock order of every writer (RollupBatch.write), so that no two
        -- transactions wait on each other in a cycle.
        INSERT INTO job_rollups AS r (hour, tenant_id, handler, job_type, attempts,
                                      attempts_succeeded, attempts_failed, attempts_timed_out,
                                      attempts_lost, duration_ms_sum, wait_ms_sum, jobs_created,
                                      jobs_completed, jobs_failed, jobs_cancelled)
        SELECT k.hour, k.tenant_id, k.handler, k.job_type, 0, 0, 0, 0, 0, 0, 0, k.n, 0, 0, 0
          FROM (SELECT (c->>0)::timestamptz AS hour, c->>1 AS tenant_id, c->>2 AS handler,
                       c->>3 AS job_type, sum((c->>4)::integer) AS n
                  FROM jsonb_array_elements(created) AS c GROUP BY 1, 2, 3, 4) AS k
         ORDER BY k.hour, k.tenant_id COLLATE "C", k.handler COLLATE "C",
                  k.job_type COLLATE "C"
        ON CONFLICT (hour, tenant_id, handler, job_type) DO UPDATE
           SET jobs_created = r.jobs_created + excluded.jobs_created;
        INSERT INTO job_totals AS t (handler, job_type, duration_bucket, attempts,
                                     attempts_failed, attempts_timed_out, duration_ms_sum,
                                     jobs_created)
        SELECT k.handler, k.job_type, -1, 0, 0, 0, 0, k.n
          FROM (SELECT c->>2 AS handler, c->>3 AS job_type, sum((c->>4)::integer) AS n
                  FROM jsonb_array_elements(created) AS c GROUP BY 1, 2) AS k
         ORDER BY k.handler COLLATE "C", k.job_type COLLATE "C"
        ON CONFLICT (handler, job_type, duration_bucket) DO UPDATE
           SET jobs_created = t.jobs_created + excluded.jobs_created;
        PERFORM pg_notify(channel, '');
    END IF;
    RETURN to_jsonb(answers);
END
$fn$
"""


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(QUEUE_CALLS)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS queue_calls(jsonb, jsonb, text[], text)")
