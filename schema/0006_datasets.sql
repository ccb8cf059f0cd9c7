-- Datasets (#7): named, versioned, immutable snapshots of completed jobs' labels for CI pipelines.

CREATE TABLE datasets (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id    bigint NOT NULL REFERENCES teams (id),
    name       text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,127}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team_id, name)
);

-- One version of a dataset. `building` until a builder (any broker process, claimed with SKIP
-- LOCKED) has materialised its items; then `ready` and never changed again.
CREATE TABLE dataset_versions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dataset_id      bigint NOT NULL REFERENCES datasets (id),
    version         integer NOT NULL CHECK (version >= 1),
    status          text NOT NULL CHECK (status IN ('building', 'ready', 'failed')),
    source_jobs     uuid[] NOT NULL,
    min_confidence  double precision NOT NULL CHECK (min_confidence >= 0 AND min_confidence <= 1),
    include         text[] NOT NULL DEFAULT '{}',
    idempotency_key text,
    request_sha256  text,
    item_count      bigint,
    excluded_count  bigint,
    label_counts    jsonb,
    vendor_mix      jsonb,
    aggregation     jsonb,
    bytes           bigint,
    sha256          text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    ready_at        timestamptz,
    UNIQUE (dataset_id, version),
    UNIQUE (dataset_id, idempotency_key)
);
CREATE INDEX dataset_versions_building_idx ON dataset_versions (created_at) WHERE status = 'building';

-- A ready version's items.jsonl, one line per row in `seq` order (deterministic key order), so the
-- bytes of a version are the same on every download and hash to its sha256.
-- No foreign key to dataset_versions: a million-line build would pay a key check per line, and
-- versions are never deleted.
CREATE TABLE dataset_items (
    version_id uuid NOT NULL,
    seq        bigint NOT NULL,
    job_id     uuid NOT NULL,
    item_id    text NOT NULL,
    line       text NOT NULL,
    -- Where the line starts in items.jsonl: a ranged download finds its first line by index.
    byte_offset bigint NOT NULL,
    PRIMARY KEY (version_id, seq)
);
CREATE INDEX dataset_items_offset_idx ON dataset_items (version_id, byte_offset);
