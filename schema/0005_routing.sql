-- Routing (#6): what the policy needs to agree across processes and restarts, and what it decided.

-- Admin overrides of a vendor's configured `enabled` and `weight` (PATCH /v1/vendors/{id}). NULL
-- keeps the configured value. Every broker process reads them, so a drain applies everywhere.
CREATE TABLE vendor_settings (
    vendor_id  text PRIMARY KEY,
    enabled    boolean,
    weight     double precision CHECK (weight >= 0 AND weight <= 1000),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A team's permanent deny list (conflict-of-interest rules): these vendors never get its work.
ALTER TABLE teams ADD COLUMN denied_vendors text[] NOT NULL DEFAULT '{}';

-- Deficit counters of the smooth weighted round-robin, per scope ("domain/task_type") and vendor.
-- Read and written in the planning transaction under an advisory lock on the scope, so every
-- process continues one sequence.
CREATE TABLE routing_counters (
    scope     text NOT NULL,
    vendor_id text NOT NULL,
    credit    double precision NOT NULL,
    PRIMARY KEY (scope, vendor_id)
);

-- Judgments routed per domain, vendor and hour: the sliding window behind the share caps.
CREATE TABLE routing_window (
    domain    text NOT NULL,
    vendor_id text NOT NULL,
    hour      timestamptz NOT NULL,
    judgments bigint NOT NULL,
    PRIMARY KEY (domain, hour, vendor_id)
);

-- Gold evidence per vendor, domain and task type that forgets (routing::DiscountedEvidence):
-- written by the quality roll-up, read by the policy.
CREATE TABLE vendor_evidence (
    vendor_id  text NOT NULL,
    domain     text NOT NULL,
    task_type  text NOT NULL,
    correct    double precision NOT NULL,
    n          double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, task_type, vendor_id)
);

-- Every routing decision: a planned chunk, a re-route, a rebalancing move. `decision` holds the
-- candidates, the filter that removed each, sampled scores, target and realised shares, and the
-- chosen vendors (docs/routing.md).
CREATE TABLE routing_decisions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES jobs (id),
    kind       text NOT NULL CHECK (kind IN ('plan', 'reroute', 'rebalance')),
    items      integer NOT NULL,
    decision   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX routing_decisions_job_idx ON routing_decisions (job_id, id DESC);

-- A job none of whose vendors can take work for the moment (all broken, at capacity, capped...)
-- is planned again after this time instead of its items ending unlabeled.
ALTER TABLE jobs ADD COLUMN plan_not_before timestamptz;

-- Why a unit is being canceled at its vendor so its item can go elsewhere (rebalancer); NULL for a
-- job's own cancel.
ALTER TABLE assignments ADD COLUMN move_reason text;
