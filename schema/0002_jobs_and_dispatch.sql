-- Jobs, their items, the assignments that carry items to vendors, and the outbox of webhook events
-- to teams. Everything the broker acknowledges is a row here first; background workers in any
-- number of broker processes claim rows (FOR UPDATE SKIP LOCKED, leases) instead of assuming them.

-- The key a team's webhook events are signed with (HMAC-SHA256). Kept readable: the broker must
-- compute signatures with it. Shown to the team once, by `labelbroker admin create-team`.
ALTER TABLE teams ADD COLUMN webhook_secret text;
-- gen_random_uuid() draws from the server's strong random source (no pgcrypto needed).
ALTER TABLE teams ALTER COLUMN webhook_secret
    SET DEFAULT 'whsec_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
UPDATE teams SET webhook_secret = DEFAULT WHERE webhook_secret IS NULL;
ALTER TABLE teams ALTER COLUMN webhook_secret SET NOT NULL;

CREATE TABLE jobs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id             bigint NOT NULL REFERENCES teams (id),
    name                text NOT NULL,
    -- draft: items still being uploaded in parts; queued: accepted, not yet planned;
    -- running: assignments exist; then one of the terminal states.
    status              text NOT NULL CHECK (status IN ('draft', 'queued', 'running', 'completed', 'failed',
                                                        'canceled', 'budget_exhausted')),
    task_type           text NOT NULL,
    domain              text NOT NULL,
    expertise           text NOT NULL,
    instructions        text NOT NULL DEFAULT '',
    labels              jsonb NOT NULL,
    redundancy          integer NOT NULL CHECK (redundancy >= 1),
    min_vendor_accuracy double precision,
    budget_micros       bigint NOT NULL CHECK (budget_micros >= 0),
    deadline            timestamptz NOT NULL,
    allow_vendors       text[] NOT NULL DEFAULT '{}',
    deny_vendors        text[] NOT NULL DEFAULT '{}',
    -- Vendors that passed capabilities and allow/deny at intake, in configuration order.
    eligible_vendors    text[] NOT NULL,
    optimize            text NOT NULL CHECK (optimize IN ('quality', 'cost', 'balanced')),
    callback_url        text,
    item_count          integer NOT NULL DEFAULT 0,
    gold_count          integer NOT NULL DEFAULT 0,
    -- Planning walks the items in item_id order; everything <= plan_cursor has its assignments.
    plan_cursor         text,
    planned_at          timestamptz,
    idempotency_key     text,
    request_sha256      text,
    end_reason          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    UNIQUE (team_id, idempotency_key)
);
CREATE INDEX jobs_team_listing_idx ON jobs (team_id, created_at DESC, id DESC);
CREATE INDEX jobs_active_idx ON jobs (status) WHERE status IN ('queued', 'running');

-- A job's items. Gold items (gold_answer set) live here too and never appear in results.
CREATE TABLE job_items (
    job_id      uuid NOT NULL REFERENCES jobs (id),
    item_id     text NOT NULL,
    data        jsonb NOT NULL,
    gold_answer text,
    -- open: judgments outstanding; labeled: aggregated; unlabeled: ended with no judgment
    -- (every vendor failed, canceled, or the deadline passed).
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'labeled', 'unlabeled')),
    label       text,
    confidence  double precision,
    method      text,
    finished_at timestamptz,
    PRIMARY KEY (job_id, item_id)
);
CREATE INDEX job_items_open_idx ON job_items (job_id) WHERE state = 'open';

-- One judgment of one item asked of one vendor. The id is also the idempotency key at the vendor,
-- so sending a row again never creates a second task. At most one row per (item, vendor): the
-- redundant judgments of an item always come from distinct vendors, and moving a unit elsewhere
-- adds a row for another vendor.
CREATE TABLE assignments (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id              uuid NOT NULL,
    item_id             text NOT NULL,
    vendor_id           text NOT NULL,
    -- queued: waiting to be sent (again); sending: claimed by a dispatcher (lease); submitted: the
    -- vendor has it; completed: answered; failed: moved elsewhere or given up; canceled: canceled
    -- at the vendor (or before it was ever sent).
    state               text NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'sending', 'submitted', 'completed', 'failed', 'canceled')),
    attempts            integer NOT NULL DEFAULT 0,
    -- The claim that last sent this row. A resend repeats the whole batch as first sent, because
    -- some vendors derive their idempotency key from the batch.
    batch_id            uuid,
    claimed_by          text,
    lease_expires_at    timestamptz,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    vendor_task_id      text,
    quote_micros        bigint NOT NULL DEFAULT 0,
    cost_micros         bigint,
    answer              text,
    worker_id           text,
    time_spent_ms       bigint,
    error_class         text,
    last_error          text,
    cancel_requested_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    submitted_at        timestamptz,
    completed_at        timestamptz,
    last_polled_at      timestamptz,
    FOREIGN KEY (job_id, item_id) REFERENCES job_items (job_id, item_id),
    UNIQUE (job_id, item_id, vendor_id)
);
CREATE INDEX assignments_dispatch_idx ON assignments (vendor_id, next_attempt_at) WHERE state = 'queued';
CREATE INDEX assignments_leases_idx ON assignments (lease_expires_at) WHERE state = 'sending';
CREATE INDEX assignments_outstanding_idx ON assignments (vendor_id, submitted_at) WHERE state = 'submitted';
CREATE INDEX assignments_batch_idx ON assignments (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX assignments_vendor_task_idx ON assignments (vendor_id, vendor_task_id) WHERE vendor_task_id IS NOT NULL;
-- cancel_requested_at: when the canceller may (next) ask the vendor to cancel; 'infinity' once the
-- vendor said it cannot (the unit is worked and its result kept).
CREATE INDEX assignments_cancel_idx ON assignments (vendor_id, cancel_requested_at)
    WHERE cancel_requested_at IS NOT NULL AND state IN ('queued', 'submitted');

-- Job events for teams' callback_url, written in the transaction that ends the job (outbox), then
-- delivered at least once by whichever broker process claims them, with backoff for up to a day.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id           uuid NOT NULL REFERENCES jobs (id),
    team_id          bigint NOT NULL REFERENCES teams (id),
    url              text NOT NULL,
    event            text NOT NULL,
    body             text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    give_up_at       timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    delivered_at     timestamptz,
    failed_at        timestamptz,
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, event)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
