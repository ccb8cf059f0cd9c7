-- The ops surface: the admin audit trail, API key rotation and per-key rate limits.

-- Every change an admin makes (over the API or with `labelbroker admin`), written in the same
-- transaction as the change itself, so the trail can neither miss a change nor show one that
-- did not happen. Rows are only ever inserted.
CREATE TABLE audit_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    actor_type       text NOT NULL CHECK (actor_type IN ('api_key', 'cli')),
    actor_key_id     bigint REFERENCES api_keys (id),
    actor_key_prefix text,
    actor_team       text,
    actor_name       text,          -- the operating-system user, for the CLI
    action           text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_type      text NOT NULL,
    target_id        text NOT NULL,
    before           jsonb,         -- null when the target did not exist
    after            jsonb,
    request_id       text
);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);

-- Keys: a label for people, an expiry (set when a key is rotated with a grace period), the key a
-- rotation replaced, and an optional rate limit of its own (absent: the configured default).
ALTER TABLE api_keys
    ADD COLUMN label           text CHECK (length(label) <= 100),
    ADD COLUMN expires_at      timestamptz,
    ADD COLUMN replaces        bigint REFERENCES api_keys (id),
    ADD COLUMN rate_per_second double precision CHECK (rate_per_second > 0),
    ADD COLUMN rate_burst      integer CHECK (rate_burst >= 1),
    ADD CONSTRAINT api_keys_rate_pair CHECK ((rate_per_second IS NULL) = (rate_burst IS NULL));

-- One token bucket per rate-limited key, shared by every broker process: processes take tokens
-- from it a few at a time (take_rate_tokens), so together they never admit more than
-- burst + rate x elapsed time, however many there are.
CREATE TABLE rate_buckets (
    key_id       bigint PRIMARY KEY REFERENCES api_keys (id),
    tokens       double precision NOT NULL,
    refreshed_at timestamptz NOT NULL
);

-- Refills the key's bucket for the time since its last refill (capped at burst), then takes up to
-- `wanted` whole tokens. Returns what was granted and what is left, in one round trip and under
-- the row's lock. clock_timestamp(), not now(): a transaction that waited for the lock must not
-- refill for time another transaction already counted.
CREATE FUNCTION take_rate_tokens(p_key_id bigint, p_rate double precision, p_burst integer, p_wanted integer,
                                 OUT granted integer, OUT tokens_left double precision)
LANGUAGE plpgsql AS $$
DECLARE
    t_now timestamptz;
    available double precision;
BEGIN
    INSERT INTO rate_buckets (key_id, tokens, refreshed_at) VALUES (p_key_id, p_burst, clock_timestamp())
        ON CONFLICT (key_id) DO NOTHING;
    PERFORM 1 FROM rate_buckets WHERE key_id = p_key_id FOR UPDATE;
    t_now := clock_timestamp();
    SELECT least(p_burst::double precision,
                 b.tokens + greatest(0, extract(epoch FROM t_now - b.refreshed_at)) * p_rate)
      INTO available FROM rate_buckets b WHERE b.key_id = p_key_id;
    granted := least(p_wanted, floor(available)::integer);
    IF granted < 0 THEN granted := 0; END IF;
    tokens_left := available - granted;
    UPDATE rate_buckets SET tokens = tokens_left, refreshed_at = t_now WHERE key_id = p_key_id;
END
$$;
