-- Gold, quality measurement and the cost ledger.
--
-- Quality: the transactions that record work append small events (quality_events,
-- agreement_events) instead of updating shared counters, so result ingestion never queues behind
-- a hot row; a maintenance step drains the events into hourly rollups (the history) and into
-- cumulative rollups (running totals), from which the scores API reads any window in two index
-- probes per key.
-- Money: an append-only ledger in integer micro-dollars; budget_accounts carry the running totals
-- the ledger implies (same transaction), so a budget check is one locked row, not a sum.

-- Reusable gold sets a team keeps and jobs reference ("gold_set": "<id>"). A job that references
-- one gets a copy of its items as gold items at intake.
CREATE TABLE gold_sets (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id     bigint NOT NULL REFERENCES teams (id),
    name        text NOT NULL,
    task_type   text NOT NULL,
    labels      jsonb NOT NULL,
    item_count  integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team_id, name)
);
CREATE TABLE gold_set_items (
    gold_set_id uuid NOT NULL REFERENCES gold_sets (id),
    item_id     text NOT NULL,
    data        jsonb NOT NULL,
    answer      text NOT NULL,
    PRIMARY KEY (gold_set_id, item_id)
);
ALTER TABLE jobs ADD COLUMN gold_set_id uuid REFERENCES gold_sets (id);

-- Every gold unit sent is its own job item (a copy of a gold item, gold_base naming the
-- original): a vendor may see the same gold twice over a long job, always under a fresh ref.
ALTER TABLE job_items ADD COLUMN gold_base text;

CREATE INDEX assignments_paused_idx ON assignments (job_id) WHERE state = 'paused';

-- paused: not sent because its job's (or team's) budget is spent; resumed by raising the budget.
ALTER TABLE assignments DROP CONSTRAINT assignments_state_check;
ALTER TABLE assignments ADD CONSTRAINT assignments_state_check
    CHECK (state IN ('queued', 'paused', 'sending', 'submitted', 'completed', 'failed', 'canceled'));
ALTER TABLE jobs ADD COLUMN budget_reason text;

-- Teams may cap their spend per calendar month (UTC); NULL: no cap.
ALTER TABLE teams ADD COLUMN monthly_budget_micros bigint CHECK (monthly_budget_micros >= 0);

-- ---- ledger -----------------------------------------------------------------------------------

-- One row per money movement of one assignment: a hold when it is sent (its quote), then exactly
-- one of a settle (the vendor's charge; it also closes the hold: releases_micros) or a release
-- (failed or canceled unsent work). `month` is the UTC month of the hold, for every entry of
-- that assignment, so a month's commitments stay in that month.
CREATE TABLE ledger_entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('hold', 'settle', 'release')),
    assignment_id   uuid NOT NULL,
    job_id          uuid NOT NULL,
    team_id         bigint NOT NULL,
    vendor_id       text NOT NULL,
    month           date NOT NULL,
    gold            boolean NOT NULL DEFAULT false,   -- QA overhead: the unit was gold
    amount_micros   bigint NOT NULL CHECK (amount_micros >= 0),
    releases_micros bigint NOT NULL DEFAULT 0 CHECK (releases_micros >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- At most one hold and one closing entry per assignment: a repeated result or cancel cannot
-- bill or release twice.
CREATE UNIQUE INDEX ledger_hold_once_idx ON ledger_entries (assignment_id) WHERE kind = 'hold';
CREATE UNIQUE INDEX ledger_close_once_idx ON ledger_entries (assignment_id) WHERE kind <> 'hold';
CREATE INDEX ledger_job_idx ON ledger_entries (job_id);

-- Append-only: corrections are new entries, never edits.
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

-- Running totals per budget: 'job:<uuid>', 'team:<id>:<YYYY-MM>', 'vendor:<id>:<YYYY-MM>'.
-- held + spent never exceeds limit_micros through a hold (a vendor charging more than it quoted
-- is recorded as charged: the money is spent). NULL limit: no cap, totals still kept.
CREATE TABLE budget_accounts (
    key           text PRIMARY KEY,
    limit_micros  bigint CHECK (limit_micros >= 0),
    held_micros   bigint NOT NULL DEFAULT 0,
    spent_micros  bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- ---- quality ----------------------------------------------------------------------------------

-- One row per finished unit (a judgment, or a failure) or per send; drained into vendor_hourly.
CREATE TABLE quality_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    team_id       bigint NOT NULL,
    vendor_id     text NOT NULL,
    domain        text NOT NULL,
    task_type     text NOT NULL,
    expertise     text NOT NULL,
    judgments     integer NOT NULL DEFAULT 0,  -- answers to real (non-gold) items
    gold_n        integer NOT NULL DEFAULT 0,
    gold_correct  integer NOT NULL DEFAULT 0,
    cost_micros   bigint NOT NULL DEFAULT 0,   -- charged, real and gold answers
    on_time       integer NOT NULL DEFAULT 0,  -- answered before the job's deadline
    latency_ms    bigint,                      -- submitted to answered, for one answer
    sends         integer NOT NULL DEFAULT 0,  -- units handed to the vendor's API
    errors        integer NOT NULL DEFAULT 0,  -- units the vendor's API refused or failed
    ds_n          integer NOT NULL DEFAULT 0,  -- judgments scored by Dawid-Skene at a job's end
    ds_correct    double precision NOT NULL DEFAULT 0
);

-- One row per pair of vendors that judged the same item (vendor_a < vendor_b).
CREATE TABLE agreement_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    vendor_a   text NOT NULL,
    vendor_b   text NOT NULL,
    domain     text NOT NULL,
    task_type  text NOT NULL,
    expertise  text NOT NULL,
    label_a    text NOT NULL,
    label_b    text NOT NULL
);

-- The history: hourly totals per team x vendor x domain x task type x expertise (the views read
-- the cumulative rollups below, which the same roll-up writes); `latency_buckets` counts
-- answers per latency bucket (upper bounds in server/quality/market.hpp, kLatencyBucketsMs).
-- Quality is pooled over teams when scored (more evidence about the vendor); volumes and spend
-- are shown to each team for its own work only.
CREATE TABLE vendor_hourly (
    team_id         bigint NOT NULL,
    vendor_id       text NOT NULL,
    domain          text NOT NULL,
    task_type       text NOT NULL,
    expertise       text NOT NULL,
    hour            timestamptz NOT NULL,
    judgments       bigint NOT NULL DEFAULT 0,
    gold_n          bigint NOT NULL DEFAULT 0,
    gold_correct    bigint NOT NULL DEFAULT 0,
    cost_micros     bigint NOT NULL DEFAULT 0,
    on_time         bigint NOT NULL DEFAULT 0,
    sends           bigint NOT NULL DEFAULT 0,
    errors          bigint NOT NULL DEFAULT 0,
    ds_n            bigint NOT NULL DEFAULT 0,
    ds_correct      double precision NOT NULL DEFAULT 0,
    latency_buckets bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (hour, team_id, vendor_id, domain, task_type, expertise)
);

-- Hourly agreement tables between two vendors, one row per label: how often A said it, how often
-- B said it, how often both did. Summed over rows they give observed agreement (sum agree / items)
-- and chance agreement (sum a*b / items^2), hence Cohen's kappa, for any window.
CREATE TABLE vendor_pair_hourly (
    vendor_a   text NOT NULL,
    vendor_b   text NOT NULL,
    domain     text NOT NULL,
    task_type  text NOT NULL,
    expertise  text NOT NULL,
    hour       timestamptz NOT NULL,
    label      text NOT NULL,
    a_count    bigint NOT NULL DEFAULT 0,
    b_count    bigint NOT NULL DEFAULT 0,
    agree      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, vendor_a, vendor_b, domain, task_type, expertise, label)
);

-- ---- cumulative rollups -------------------------------------------------------------------------
-- Running totals, for reading any window without summing its hours: one row per key and hour that
-- had events, holding the totals over every hour up to and including it. The totals of the hours
-- >= start are the key's latest row minus its latest row before start (zero if none): two index
-- probes per key, however long the window. The roll-up (one process at a time) inserts a row for
-- each hour with events, starting from the key's previous row, and adds a late event to every
-- later row of its key too. Counters are integers (Dawid-Skene's expected correct judgments in
-- millionths), so sums are exact and the same data always reads the same.
--
-- Keys exist at every level of detail: each combination of domain, task type and expertise may be
-- NULL, meaning all of them (the event counts in all eight). A request, whatever its filters,
-- then reads one key per vendor (per vendor pair and label for agreement), not one per domain x
-- task type x expertise. Quality is pooled over teams; the team's own volume and spend are kept
-- apart, per team.

-- `key` is the other columns as a JSON array (NULL as null), written by the roll-up, which looks
-- keys up by it (NULLs never compare equal, a text does).
CREATE TABLE vendor_keys (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        text NOT NULL UNIQUE,
    vendor_id  text NOT NULL,
    domain     text,  -- NULL: all domains
    task_type  text,  -- NULL: all task types
    expertise  text   -- NULL: all tiers
);
-- Which domains have data: the scores API accepts those besides the configured ones.
CREATE INDEX vendor_keys_domain_idx ON vendor_keys (domain);
-- The keys of one level of detail (NULLs as ''), which a request reads.
CREATE INDEX vendor_keys_level_idx ON vendor_keys
    ((coalesce(domain, '')), (coalesce(task_type, '')), (coalesce(expertise, '')));

-- vendor_hourly's counters as running totals per vendor key, all teams; latency_buckets counts per
-- bucket of kLatencyBucketsMs (not cumulative over buckets), one count for every bucket.
CREATE TABLE vendor_cumulative (
    key_id            integer NOT NULL REFERENCES vendor_keys (id),
    hour              timestamptz NOT NULL,
    judgments         bigint NOT NULL,
    gold_n            bigint NOT NULL,
    gold_correct      bigint NOT NULL,
    cost_micros       bigint NOT NULL,
    on_time           bigint NOT NULL,
    sends             bigint NOT NULL,
    errors            bigint NOT NULL,
    ds_n              bigint NOT NULL,
    ds_correct_micros bigint NOT NULL,  -- sum of round(ds_correct * 1e6) per event
    latency_buckets   bigint[] NOT NULL CHECK (cardinality(latency_buckets) = 14),
    PRIMARY KEY (key_id, hour)
) WITH (fillfactor = 90);  -- room for HOT updates of the current hour's rows

-- The team's own real answers and spend per vendor key.
CREATE TABLE team_vendor_cumulative (
    team_id      bigint NOT NULL,
    key_id       integer NOT NULL REFERENCES vendor_keys (id),
    hour         timestamptz NOT NULL,
    judgments    bigint NOT NULL,
    cost_micros  bigint NOT NULL,
    PRIMARY KEY (team_id, key_id, hour)
) WITH (fillfactor = 90);

-- vendor_pair_hourly as running totals per pair, level of detail and label.
CREATE TABLE vendor_pair_keys (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        text NOT NULL UNIQUE,  -- as in vendor_keys
    vendor_a   text NOT NULL,
    vendor_b   text NOT NULL,
    domain     text,
    task_type  text,
    expertise  text,
    label      text NOT NULL
);
CREATE INDEX vendor_pair_keys_level_idx ON vendor_pair_keys
    ((coalesce(domain, '')), (coalesce(task_type, '')), (coalesce(expertise, '')));
CREATE TABLE vendor_pair_cumulative (
    key_id   integer NOT NULL REFERENCES vendor_pair_keys (id),
    hour     timestamptz NOT NULL,
    a_count  bigint NOT NULL,
    b_count  bigint NOT NULL,
    agree    bigint NOT NULL,
    PRIMARY KEY (key_id, hour)
) WITH (fillfactor = 90);
