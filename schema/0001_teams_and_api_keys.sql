-- Teams are the broker's tenants: every job, dataset and API key belongs to exactly one team, and a
-- team never sees another team's data.
CREATE TABLE teams (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys are shown once at creation and stored only as a SHA-256 of their secret part. The
-- public prefix finds the row; the hash is then compared in constant time.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id      bigint NOT NULL REFERENCES teams (id),
    prefix       text NOT NULL UNIQUE,
    secret_hash  text NOT NULL CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    role         text NOT NULL CHECK (role IN ('viewer', 'submitter', 'admin')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_team_idx ON api_keys (team_id);
