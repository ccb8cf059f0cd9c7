-- Data generators for bench/scores.sh, which runs this file once (it creates schema bench_load),
-- calls the functions chunk by chunk for progress, and drops the schema afterwards.
--
-- Rows look like what dispatch appends (server/db/dispatch_store.cpp, server/db/ledger.cpp):
-- one quality event per answer (real or gold), one per send batch and one per Dawid-Skene run;
-- one agreement event per pair of vendors that judged the same real item; a hold per assignment
-- sent and then a settle or a release. Event times are spread evenly over the 30 days before
-- t_end and rise with the row number, as appended events do, so each roll-up batch covers a
-- couple of hours. Every choice comes from a hash of the row number, not random(): the same
-- sizes load the same data however they are chunked.
--
-- Vendors (share of answers; gold accuracy; price; mean latency): scale 35% 0.92 $0.04 20 s,
-- scale-small 20% 0.88 $0.05 45 s, surge 30% 0.85 $0.15 2 min, mercor 15% 0.96 $1.00 15 min.
-- Prices scale with the task type (x1, x1.5, x2) and expertise (x1, x2, x4).
-- Teams: teams[1] 50%, teams[2] 30%, teams[3] 20%. Domains: general 40%, medical, legal,
-- finance, code 15% each. Task types: classification 60%, preference 25%, rating 15%.
-- Expertise: general 60%, skilled 30%, expert 10%. Gold: 10% of answers. On time: 97%.

CREATE SCHEMA bench_load;

-- Uniform in [0, 1) from a row number and a stream number.
CREATE FUNCTION bench_load.u(i bigint, stream bigint) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT (hashint8extended(i, stream) & 4503599627370495)::double precision / 4503599627370496.0 $$;

CREATE FUNCTION bench_load.vendor(u double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN u < 0.35 THEN 'scale' WHEN u < 0.55 THEN 'scale-small' WHEN u < 0.85 THEN 'surge'
               ELSE 'mercor' END $$;

CREATE FUNCTION bench_load.domain(u double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN u < 0.40 THEN 'general' WHEN u < 0.55 THEN 'medical' WHEN u < 0.70 THEN 'legal'
               WHEN u < 0.85 THEN 'finance' ELSE 'code' END $$;

CREATE FUNCTION bench_load.task_type(u double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN u < 0.60 THEN 'classification' WHEN u < 0.85 THEN 'preference' ELSE 'rating' END $$;

CREATE FUNCTION bench_load.expertise(u double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN u < 0.60 THEN 'general' WHEN u < 0.90 THEN 'skilled' ELSE 'expert' END $$;

CREATE FUNCTION bench_load.team(u double precision, teams bigint[]) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN u < 0.5 THEN teams[1] WHEN u < 0.8 THEN teams[2] ELSE teams[3] END $$;

CREATE FUNCTION bench_load.accuracy(vendor text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE vendor WHEN 'scale' THEN 0.92 WHEN 'scale-small' THEN 0.88 WHEN 'surge' THEN 0.85 ELSE 0.96 END $$;

CREATE FUNCTION bench_load.price_micros(vendor text, task_type text, expertise text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT (CASE vendor WHEN 'scale' THEN 40000 WHEN 'scale-small' THEN 50000 WHEN 'surge' THEN 150000
                       ELSE 1000000 END
           * CASE task_type WHEN 'classification' THEN 1.0 WHEN 'preference' THEN 1.5 ELSE 2.0 END
           * CASE expertise WHEN 'general' THEN 1 WHEN 'skilled' THEN 2 ELSE 4 END)::bigint $$;

CREATE FUNCTION bench_load.mean_latency_ms(vendor text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE vendor WHEN 'scale' THEN 20000 WHEN 'scale-small' THEN 45000 WHEN 'surge' THEN 120000
                      ELSE 900000 END::double precision $$;

-- An event time: row i of total, spread over the 30 days before t_end (always before it).
CREATE FUNCTION bench_load.at(i bigint, total bigint, jitter double precision, t_end timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT t_end - interval '30 days' + interval '30 days' * ((i - 1 + jitter) / total) $$;

-- Quality events for answers lo..hi of total: one answer event each (gold for 10%), plus a send
-- event (100 units, 0-3 refused) after every 100th answer and a Dawid-Skene event (250
-- judgments scored) after every 1000th. Returns the rows inserted.
CREATE FUNCTION bench_load.quality_chunk(lo bigint, hi bigint, total bigint, t_end timestamptz, teams bigint[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO quality_events (at, team_id, vendor_id, domain, task_type, expertise, judgments, gold_n,
                                gold_correct, cost_micros, on_time, latency_ms, sends, errors, ds_n, ds_correct)
    SELECT d.at, d.team_id, d.vendor, d.domain, d.task_type, d.expertise,
           CASE WHEN d.kind = 0 AND NOT d.gold THEN 1 ELSE 0 END,
           CASE WHEN d.kind = 0 AND d.gold THEN 1 ELSE 0 END,
           CASE WHEN d.kind = 0 AND d.gold AND bench_load.u(d.i, 8) < bench_load.accuracy(d.vendor) THEN 1 ELSE 0 END,
           CASE WHEN d.kind = 0 THEN bench_load.price_micros(d.vendor, d.task_type, d.expertise) ELSE 0 END,
           CASE WHEN d.kind = 0 AND bench_load.u(d.i, 9) < 0.97 THEN 1 ELSE 0 END,
           CASE WHEN d.kind = 0
                THEN (bench_load.mean_latency_ms(d.vendor) * -ln(1 - bench_load.u(d.i, 10)))::bigint END,
           CASE WHEN d.kind = 1 THEN 100 ELSE 0 END,
           CASE WHEN d.kind = 1 THEN floor(bench_load.u(d.i, 11) * 4)::int ELSE 0 END,
           CASE WHEN d.kind = 2 THEN 250 ELSE 0 END,
           CASE WHEN d.kind = 2
                THEN 250 * least(1.0, bench_load.accuracy(d.vendor) + 0.04 * (bench_load.u(d.i, 12) - 0.5))
                ELSE 0 END
    FROM (SELECT g.i, k.kind,
                 bench_load.at(g.i, total, bench_load.u(g.i, 1), t_end) AS at,
                 bench_load.team(bench_load.u(g.i, 2), teams) AS team_id,
                 bench_load.vendor(bench_load.u(g.i, 3)) AS vendor,
                 bench_load.domain(bench_load.u(g.i, 4)) AS domain,
                 bench_load.task_type(bench_load.u(g.i, 5)) AS task_type,
                 bench_load.expertise(bench_load.u(g.i, 6)) AS expertise,
                 bench_load.u(g.i, 7) < 0.10 AS gold
          FROM generate_series(lo, hi) AS g(i)
          CROSS JOIN (VALUES (0), (1), (2)) AS k(kind)
          WHERE k.kind = 0 OR (k.kind = 1 AND g.i % 100 = 0) OR (k.kind = 2 AND g.i % 1000 = 0)
          ORDER BY g.i, k.kind) AS d;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Agreement events lo..hi of total: one of the six vendor pairs (vendor_a < vendor_b), labels from
-- the task type's set; B repeats A's label 75% of the time, else answers at random.
CREATE FUNCTION bench_load.agreement_chunk(lo bigint, hi bigint, total bigint, t_end timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO agreement_events (at, vendor_a, vendor_b, domain, task_type, expertise, label_a, label_b)
    SELECT d.at, (ARRAY['mercor', 'mercor', 'mercor', 'scale', 'scale', 'scale-small'])[d.pair],
           (ARRAY['scale', 'scale-small', 'surge', 'scale-small', 'surge', 'surge'])[d.pair],
           d.domain, d.task_type, d.expertise, d.labels[d.a],
           CASE WHEN bench_load.u(d.i, 108) < 0.75 THEN d.labels[d.a]
                ELSE d.labels[1 + floor(bench_load.u(d.i, 109) * cardinality(d.labels))::int] END
    FROM (SELECT t.*, 1 + floor(bench_load.u(t.i, 107) * cardinality(t.labels))::int AS a
          FROM (SELECT g.i,
                       bench_load.at(g.i, total, bench_load.u(g.i, 101), t_end) AS at,
                       1 + floor(bench_load.u(g.i, 102) * 6)::int AS pair,
                       bench_load.domain(bench_load.u(g.i, 104)) AS domain,
                       bench_load.task_type(bench_load.u(g.i, 105)) AS task_type,
                       bench_load.expertise(bench_load.u(g.i, 106)) AS expertise,
                       CASE bench_load.task_type(bench_load.u(g.i, 105))
                         WHEN 'classification' THEN ARRAY['positive', 'negative', 'neutral']
                         WHEN 'preference' THEN ARRAY['A', 'B']
                         ELSE ARRAY['1', '2', '3', '4', '5'] END AS labels
                FROM generate_series(lo, hi) AS g(i)) AS t) AS d
    ORDER BY d.i;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Ledger rows lo..hi of total: rows 2a-1 and 2a belong to assignment a, a hold (its quote) and
-- then its closing entry: a release for every 10th assignment (failed or canceled work: the
-- held amount), a settle for the others (the charge, which closes the hold). Jobs of 1,000
-- assignments; month is the UTC month of the hold.
CREATE FUNCTION bench_load.ledger_chunk(lo bigint, hi bigint, total bigint, t_end timestamptz, teams bigint[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO ledger_entries (kind, assignment_id, job_id, team_id, vendor_id, month, gold, amount_micros,
                                releases_micros, created_at)
    SELECT d.kind, md5('assignment-' || d.a)::uuid, md5('job-' || d.a / 1000)::uuid,
           bench_load.team(bench_load.u(d.a / 1000, 202), teams), d.vendor,
           date_trunc('month', d.hold_at AT TIME ZONE 'UTC')::date, bench_load.u(d.a, 203) < 0.10,
           CASE WHEN d.kind = 'settle' THEN (d.quote * (0.9 + 0.1 * bench_load.u(d.a, 204)))::bigint ELSE d.quote END,
           CASE WHEN d.kind = 'settle' THEN d.quote ELSE 0 END,
           bench_load.at(d.r, total, 0.5, t_end)
    FROM (SELECT g.r, (g.r + 1) / 2 AS a,
                 CASE WHEN g.r % 2 = 1 THEN 'hold' WHEN ((g.r + 1) / 2) % 10 = 0 THEN 'release' ELSE 'settle' END AS kind,
                 bench_load.vendor(bench_load.u((g.r + 1) / 2, 201)) AS vendor,
                 bench_load.price_micros(bench_load.vendor(bench_load.u((g.r + 1) / 2, 201)),
                                         bench_load.task_type(bench_load.u((g.r + 1) / 2 / 1000, 205)),
                                         bench_load.expertise(bench_load.u((g.r + 1) / 2 / 1000, 206))) AS quote,
                 bench_load.at((g.r + 1) / 2 * 2 - 1, total, 0.5, t_end) AS hold_at
          FROM generate_series(lo, hi) AS g(r)) AS d
    ORDER BY d.r;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
