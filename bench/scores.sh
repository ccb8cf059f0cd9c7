#!/usr/bin/env bash
# Vendor scores: GET /v1/vendors/scores over 30 days of rolled-up quality data (10,000,000
# judgments, 1,000,000 ledger rows): p99 latency uncached, and requests/s cached against nginx
# serving the same bytes from a static file in the same run. Also times the broker's roll-up of
# the raw events into the hourly tables the endpoint reads.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'TEXT'
usage: bench/scores.sh [--strict] [--keep] [--help]

Starts a throwaway PostgreSQL cluster (scripts/pg, temp dir, free port), then:
  1. loads JUDGMENTS answer events into quality_events (10% gold; plus a send event per 100
     answers and a Dawid-Skene event per 1000), AGREEMENTS agreement_events and LEDGER
     ledger_entries rows with INSERT ... SELECT FROM generate_series in chunks of CHUNK
     (bench/scores_load.sql: 4 vendors, 5 domains, 3 task types, 3 expertise tiers, 3 teams,
     event times spread over the last 30 days);
  2. starts broker A (dispatch on, so its maintenance loop rolls the events up; vendors point at
     a closed port and are never called, as there are no jobs; quality.scores_cache_ms=CACHE_MS)
     and times how long it takes to drain both event tables into the hourly rollups
     (vendor_hourly, vendor_pair_hourly) and the cumulative ones the endpoint reads
     (vendor_cumulative, team_vendor_cumulative, vendor_pair_cumulative) (events/s), then checks
     both add up to what was loaded and runs VACUUM ANALYZE, as autovacuum would have by then;
  3. uncached: starts broker B on the same database (dispatch off, quality.scores_cache_ms=0) and
     measures GET /v1/vendors/scores?window=W for each W in WINDOWS with one connection
     (wrk -t1 -c1 -dLAT_DURATION --latency, after a WARMUP run): p50 and p99 against the target
     p99 <= 5 ms;
  4. cached: GET /v1/vendors/scores?window=CACHED_WINDOW on
       - broker A, whose cache entry expires every CACHE_MS and is recomputed under load, and
       - broker C (dispatch off, quality.scores_cache_ms one hour): every request a cache hit,
     against nginx serving the body broker A returned from a static file with the same
     Content-Type, with the same wrk command (wrk -tTHREADS -cCONNECTIONS -dDURATION --latency,
     the same Authorization header) in ROUNDS rounds of alternating order (medians reported):
     broker req/s >= 0.5 x nginx req/s, for each broker. After every run the script waits until
     the server and PostgreSQL are idle, so work left behind by one run (requests whose client
     has gone) does not spill into the next; how long that took is reported.
Prints a summary and a Markdown row for docs/benchmarks.md. Targets are reported, not enforced,
unless --strict is given. Nothing is pinned to a CPU: the broker's requests need PostgreSQL
(API key lookup on every request, the rollup queries when uncached), which shares the cores.

options:
  --strict   exit 3 when a target is missed
  --keep     keep the temp dir (configs, logs, wrk output, response bodies) and print its path
  --help     show this help

environment:
  JUDGMENTS=10000000 AGREEMENTS=2000000 LEDGER=1000000   rows to load (see above)
  CHUNK=1000000            rows per INSERT (one transaction, one progress line each)
  CACHE_MS=1000            broker A's quality.scores_cache_ms (the default), for the cached runs
  WINDOWS="24h 7d 30d all" windows measured uncached
  LAT_DURATION=10s         wrk duration of each uncached latency run (one connection)
  CACHED_WINDOW=30d        window of the cached comparison
  CONNECTIONS=64 THREADS=1 DURATION=10s ROUNDS=3   wrk settings of the cached comparison
  WARMUP=2s                wrk warm-up before each measured series (0 skips)
  IO_THREADS=<cores>       broker http.io_threads and nginx worker_processes
  ACCESS_LOG=1             both servers write one access-log line per request to a file (0: neither)
  ROLLUP_TIMEOUT_S=3600    give up waiting for the roll-up after this long
  STALL_S=180              fail when the roll-up makes no progress for this long
  PG_STATEMENTS=0          1: load pg_stat_statements and print the top statements of the roll-up,
                           the uncached and the cached phase
  PLANS=0                  1: after the uncached runs, log the plans (EXPLAIN ANALYZE, BUFFERS, via
                           auto_explain) of one uncached request per window to plans.log (use --keep)
  LABELBROKER_BUILD_DIR    build dir holding bin/labelbroker (default: build)

requires: wrk, nginx, curl, psql, ss, PostgreSQL 15 (via scripts/pg), build/bin/labelbroker.
exit codes: 0 ran, 1 failure (including rollups that do not add up to what was loaded),
            2 usage error, 3 target missed (--strict only)
TEXT
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_options scores "$@"

judgments=${JUDGMENTS:-10000000}
agreements=${AGREEMENTS:-2000000}
ledger=${LEDGER:-1000000}
chunk=${CHUNK:-1000000}
cache_ms=${CACHE_MS:-1000}
windows=${WINDOWS:-24h 7d 30d all}
lat_duration=${LAT_DURATION:-10s}
cached_window=${CACHED_WINDOW:-30d}
connections=${CONNECTIONS:-64}
threads=${THREADS:-1}
duration=${DURATION:-10s}
rounds=${ROUNDS:-3}
warmup=${WARMUP:-2s}
io_threads=${IO_THREADS:-$(nproc 2>/dev/null || echo 1)}
access_log=${ACCESS_LOG:-1}
rollup_timeout_s=${ROLLUP_TIMEOUT_S:-3600}
stall_s=${STALL_S:-180}
pg_statements=${PG_STATEMENTS:-0}
plans=${PLANS:-0}
p99_target_ms=5
ratio_target=0.5

usage_error() { echo "scores: $*" >&2; exit 2; }
for v in judgments chunk connections threads rounds io_threads rollup_timeout_s stall_s; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || usage_error "${v^^} must be a positive integer, got '${!v}'"
done
for v in agreements ledger cache_ms; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || usage_error "${v^^} must be a non-negative integer, got '${!v}'"
done
[ "$cache_ms" -gt 0 ] || usage_error "CACHE_MS must be positive: the cached runs need the cache"
[ "$cache_ms" -le 3600000 ] || usage_error "CACHE_MS must be at most 3600000"
[ "$threads" -le "$connections" ] || usage_error "THREADS must not exceed CONNECTIONS"
for v in duration lat_duration; do
  [[ "${!v}" =~ ^[1-9][0-9]*[smh]?$ ]] || usage_error "${v^^} must look like 10s or 1m, got '${!v}'"
done
[[ "$warmup" =~ ^[0-9]+[smh]?$ ]] || usage_error "WARMUP must look like 2s (0 skips), got '$warmup'"
[[ "$access_log" =~ ^[01]$ ]] || usage_error "ACCESS_LOG must be 0 or 1"
[[ "$pg_statements" =~ ^[01]$ ]] || usage_error "PG_STATEMENTS must be 0 or 1"
[[ "$plans" =~ ^[01]$ ]] || usage_error "PLANS must be 0 or 1"
read -r -a window_list <<<"$windows"
[ ${#window_list[@]} -gt 0 ] || usage_error "WINDOWS is empty"
for w in "${window_list[@]}" "$cached_window"; do
  case "$w" in 24h|7d|30d|all) ;; *) usage_error "unknown window '$w' (24h, 7d, 30d, all)" ;; esac
done

die() { echo "scores: $*" >&2; exit 1; }
log() { echo "scores: $*" >&2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${LABELBROKER_BUILD_DIR:-build}
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"
broker_bin="$build_dir/bin/labelbroker"
pg_script="$repo_root/scripts/pg"
load_sql="$repo_root/bench/scores_load.sql"
[ -x "$broker_bin" ] || die "$broker_bin not found; build first (cmake --build $build_dir --target labelbroker)"
[ -f "$load_sql" ] || die "$load_sql not found"
for tool in wrk nginx curl psql ss; do command -v "$tool" >/dev/null || die "'$tool' not found; run scripts/setup-deps"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/labelbroker-scores.XXXXXX")
# The cluster (and nginx's worker, as root) may run as another user; let them traverse.
chmod 755 "$work"
broker_a_pid=""
broker_b_pid=""
broker_c_pid=""
nginx_pid=""
pg_started=0
pg_port=""

# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_process "$broker_a_pid"
  stop_process "$broker_b_pid"
  stop_process "$broker_c_pid"
  stop_process "$nginx_pid"
  if [ "$pg_started" = 1 ]; then
    destroy_cluster "$work/pg" "$pg_port" "$pg_script"
  fi
  if [ "$keep" = 1 ]; then log "kept temp dir $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# The run starts three brokers over several minutes: all of them run this copy, even if the
# build dir is rebuilt meanwhile.
cp "$broker_bin" "$work/labelbroker" || die "cannot copy $broker_bin"
broker_bin="$work/labelbroker"
# The commit the tree was at when the binary was copied (-dirty: with uncommitted changes).
commit=$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git -C "$repo_root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit+="-dirty"
fi

sql() { psql -X -Atq -v ON_ERROR_STOP=1 "$database_url" -c "$1"; }
fmt() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } print s r }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
top_statements() { # title
  [ "$pg_statements" = 1 ] || return 0
  echo
  echo "pg_stat_statements, $1, top 8 by total time:"
  psql -X -q "$database_url" -c "SELECT calls, round(total_exec_time::numeric, 0) AS total_ms,
      round(mean_exec_time::numeric, 3) AS mean_ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 140) AS query
      FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8"
}
reset_statements() { [ "$pg_statements" = 0 ] || sql "SELECT pg_stat_statements_reset()" >/dev/null; }

# CPU time in clock ticks: a process (all threads), with "children" also its reaped children
# (where PostgreSQL's exited backends end up).
cpu_ticks() {
  local fields
  fields=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  if [ "${2:-}" = children ]; then awk '{ print $12 + $13 + $14 + $15 }' <<<"$fields"; else awk '{ print $12 + $13 }' <<<"$fields"; fi
}
# A process and its live children (nginx's workers, PostgreSQL's backends).
tree_ticks() {
  local sum child
  sum=$(cpu_ticks "$1" children)
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    sum=$((sum + $(cpu_ticks "$child")))
  done
  echo "$sum"
}
hz=$(getconf CLK_TCK)

# --- PostgreSQL ---------------------------------------------------------------------------------
pg_port=$(free_port)
pg_env=(env LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port")
log "starting throwaway PostgreSQL on port $pg_port"
pg_started=1
"${pg_env[@]}" "$pg_script" start >"$work/pg-start.log" 2>&1 || { cat "$work/pg-start.log" >&2; die "scripts/pg start failed"; }
database_url=$("${pg_env[@]}" "$pg_script" url)
if [ "$pg_statements" = 1 ]; then
  sql "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null || die "cannot enable pg_stat_statements"
  "${pg_env[@]}" "$pg_script" stop >>"$work/pg-start.log" 2>&1 || die "scripts/pg stop failed"
  "${pg_env[@]}" "$pg_script" start >>"$work/pg-start.log" 2>&1 || { cat "$work/pg-start.log" >&2; die "scripts/pg restart failed"; }
  sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null || die "pg_stat_statements is not available"
fi
postmaster_pid=""
for f in "$work/pg/data/postmaster.pid" "$work/pg/cluster/data/postmaster.pid"; do
  [ -f "$f" ] && postmaster_pid=$(head -n 1 "$f")
done
if [ -z "$postmaster_pid" ] || [ ! -d "/proc/$postmaster_pid" ]; then die "cannot find the postmaster's pid"; fi

# --- broker configurations ----------------------------------------------------------------------
# Four vendors (the pipeline bench's fleet) serving every domain, task type and expertise the
# loaded data uses; they point at the discard port and are never called: there are no jobs.
vendors_json() {
  local caps='{"task_types": ["classification", "preference", "rating"],
       "domains": ["general", "medical", "legal", "finance", "code"],
       "expertise": ["general", "skilled", "expert"]}'
  cat <<JSON
  [
    {"id": "scale", "kind": "scale", "base_url": "http://127.0.0.1:9/scale/v1", "api_key": "bench",
     "callback_secret": "bench-scale-callback-secret", "capabilities": $caps,
     "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"}},
    {"id": "scale-small", "kind": "scale", "base_url": "http://127.0.0.1:9/scale-small/v1", "api_key": "bench",
     "callback_secret": "bench-scale-small-callback-secret", "capabilities": $caps,
     "prices": {"classification": "0.05", "preference": "0.07", "rating": "0.09"}},
    {"id": "surge", "kind": "surge", "base_url": "http://127.0.0.1:9/surge/api", "api_key": "bench",
     "callback_secret": "bench-surge-callback-secret", "capabilities": $caps,
     "payment_per_response": "0.15"},
    {"id": "mercor", "kind": "mercor", "base_url": "http://127.0.0.1:9/mercor/v1", "api_key": "bench",
     "callback_secret": "bench-mercor-callback-secret", "capabilities": $caps,
     "hourly_rate_max": "100.00", "weekly_cap_hours": 168, "headcount": 4, "expected_minutes_per_item": 1}
  ]
JSON
}
access_log_json=$([ "$access_log" = 1 ] && echo true || echo false)
write_config() { # file listen dispatch_enabled cache_ms comment
  cat >"$1" <<JSON
// Written by bench/scores.sh: $5
{
  "listen": "$2",
  "http": {"io_threads": $io_threads},
  "dispatch": {"enabled": $3},
  "quality": {"scores_cache_ms": $4},
  "log": {"level": "info", "access_log": $access_log_json},
  "vendors": $(vendors_json)
}
JSON
}
# Ports for broker A, B, C and nginx, distinct from each other and from PostgreSQL's.
ports=" $pg_port "
next_port() { # sets port
  for _ in $(seq 1 50); do
    port=$(free_port)
    case "$ports" in *" $port "*) continue ;; esac
    ports+="$port "
    return 0
  done
  die "no free TCP port"
}
next_port; listen_a="127.0.0.1:$port"
next_port; listen_b="127.0.0.1:$port"
next_port; listen_c="127.0.0.1:$port"
next_port; nginx_port=$port
write_config "$work/broker-a.json" "$listen_a" true "$cache_ms" \
  "broker A: dispatch on (its maintenance loop rolls the events up), scores cached ${cache_ms} ms."
write_config "$work/broker-b.json" "$listen_b" false 0 \
  "broker B: dispatch off (A rolls up), scores never cached."
write_config "$work/broker-c.json" "$listen_c" false 3600000 \
  "broker C: dispatch off (A rolls up), scores cached for an hour: every measured request is a hit."
broker_env=(env LABELBROKER_CONFIG="$work/broker-a.json" LABELBROKER_DATABASE_URL="$database_url"
  LABELBROKER_LISTEN="$listen_a")
"${broker_env[@]}" "$broker_bin" check-config >"$work/check-config.log" 2>&1 || { cat "$work/check-config.log" >&2; die "broker config rejected"; }
key=$(migrate_and_make_key)
for team in bench-b bench-c; do
  "${broker_env[@]}" "$broker_bin" admin create-team "$team" >/dev/null 2>>"$work/admin.log" || die "create-team $team failed"
done
teams=$(sql "SELECT '{' || string_agg(id::text, ',' ORDER BY array_position(ARRAY['bench', 'bench-b', 'bench-c'], name)) || '}'
             FROM teams WHERE name IN ('bench', 'bench-b', 'bench-c')")
[[ "$teams" =~ ^\{[0-9]+,[0-9]+,[0-9]+\}$ ]] || die "could not read the three team ids (got '$teams')"

# --- 1. load ------------------------------------------------------------------------------------
psql -X -q -v ON_ERROR_STOP=1 "$database_url" -f "$load_sql" >"$work/load-sql.log" 2>&1 ||
  { cat "$work/load-sql.log" >&2; die "bench/scores_load.sql failed"; }
t_end=$(sql "SELECT now()")
# Asynchronous commit for the loading sessions only: 1 MB of WAL flushed per chunk either way.
load_chunks() { # table function total extra_args
  local table=$1 fn=$2 total=$3 extra=$4 lo=1 hi rows=0 n t0 t
  [ "$total" -gt 0 ] || return 0
  t0=$(now)
  while [ "$lo" -le "$total" ]; do
    hi=$((lo + chunk - 1))
    [ "$hi" -le "$total" ] || hi=$total
    n=$(PGOPTIONS='-c synchronous_commit=off' sql "SELECT bench_load.$fn($lo, $hi, $total, '$t_end'$extra)") ||
      die "loading $table rows $lo..$hi failed"
    rows=$((rows + n))
    t=$(now)
    log "  $table: $(fmt "$hi") of $(fmt "$total") generated, $(fmt "$rows") rows, $(secs "$t0" "$t") s"
    lo=$((hi + 1))
  done
  loaded_rows=$rows
  load_seconds=$(secs "$t0" "$(now)")
}
log "loading $(fmt "$judgments") judgments, $(fmt "$agreements") agreement events, $(fmt "$ledger") ledger rows (chunks of $(fmt "$chunk"))"
load_chunks quality_events quality_chunk "$judgments" ", '$teams'::bigint[]"
quality_rows=$loaded_rows
quality_load_s=$load_seconds
agreement_rows=0
agreement_load_s=0
if [ "$agreements" -gt 0 ]; then
  load_chunks agreement_events agreement_chunk "$agreements" ""
  agreement_rows=$loaded_rows
  agreement_load_s=$load_seconds
fi
ledger_rows=0
ledger_load_s=0
if [ "$ledger" -gt 0 ]; then
  load_chunks ledger_entries ledger_chunk "$ledger" ", '$teams'::bigint[]"
  ledger_rows=$loaded_rows
  ledger_load_s=$load_seconds
fi
sql "SET client_min_messages = warning; DROP SCHEMA bench_load CASCADE" >/dev/null
# What the rollups must add up to once the broker has drained the events.
read -r expect_answers expect_gold expect_cost expect_sends expect_pairs < <(sql "
  SELECT (SELECT sum(judgments + gold_n) FROM quality_events), (SELECT sum(gold_n) FROM quality_events),
         (SELECT sum(cost_micros) FROM quality_events), (SELECT sum(sends) FROM quality_events),
         (SELECT count(*) FROM agreement_events)" | tr '|' ' ')
[ "$expect_answers" -eq "$judgments" ] || die "loaded $expect_answers answers, expected $judgments"
sql "ANALYZE quality_events" >/dev/null
sql "ANALYZE agreement_events" >/dev/null
sql "ANALYZE ledger_entries" >/dev/null
sql "CHECKPOINT" >/dev/null
events_total=$((quality_rows + agreement_rows))
log "loaded: $(fmt "$quality_rows") quality events in ${quality_load_s} s, $(fmt "$agreement_rows") agreement events in ${agreement_load_s} s, $(fmt "$ledger_rows") ledger rows in ${ledger_load_s} s"

# --- 2. roll-up by broker A ---------------------------------------------------------------------
# Progress from the table statistics (cheap; a count(*) would scan what the broker is deleting).
# The statistics lag the commits by up to a second or so; the end is then confirmed exactly.
deleted_events() {
  sql "SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables WHERE relname IN ('quality_events', 'agreement_events')"
}
deleted_before=$(deleted_events)
reset_statements
log "starting broker A on $listen_a (dispatch on, scores cache ${cache_ms} ms); rolling up $(fmt "$events_total") events"
"${broker_env[@]}" "$broker_bin" serve >"$work/broker-a.stdout" 2>"$work/broker-a.log" &
broker_a_pid=$!
rollup_t0=$(now)
wait_ready "$listen_a" "$broker_a_pid" "$work/broker-a.log"
last_done=-1
last_progress=$(now)
last_report=$rollup_t0
cpu0_broker=$(cpu_ticks "$broker_a_pid")
cpu0_pg=$(tree_ticks "$postmaster_pid")
while :; do
  done_events=$(( $(deleted_events) - deleted_before ))
  t=$(now)
  if [ "$done_events" -ge "$events_total" ] &&
     [ "$(sql "SELECT NOT EXISTS (SELECT 1 FROM quality_events) AND NOT EXISTS (SELECT 1 FROM agreement_events)")" = t ]; then
    break
  fi
  [ "$done_events" != "$last_done" ] && { last_done=$done_events; last_progress=$t; }
  if awk -v a="$last_report" -v b="$t" 'BEGIN { exit !(b - a >= 10) }'; then
    last_report=$t
    log "  roll-up: $(fmt "$done_events") of $(fmt "$events_total") events after $(secs "$rollup_t0" "$t") s"
  fi
  if awk -v a="$last_progress" -v b="$t" -v s="$stall_s" 'BEGIN { exit !(b - a > s) }'; then
    grep '"level":"warn"' "$work/broker-a.log" | tail -5 >&2 || true
    die "roll-up made no progress for ${stall_s} s ($(fmt "$done_events") of $(fmt "$events_total") events)"
  fi
  if awk -v a="$rollup_t0" -v b="$t" -v s="$rollup_timeout_s" 'BEGIN { exit !(b - a > s) }'; then
    die "roll-up not finished after ${rollup_timeout_s} s ($(fmt "$done_events") of $(fmt "$events_total") events)"
  fi
  kill -0 "$broker_a_pid" 2>/dev/null || { tail -20 "$work/broker-a.log" >&2; die "broker A exited"; }
  sleep 1
done
rollup_t1=$(now)
top_statements "roll-up (broker A's maintenance loop)"
cpu_rollup_broker=$(awk -v a="$cpu0_broker" -v b="$(cpu_ticks "$broker_a_pid")" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz }')
cpu_rollup_pg=$(awk -v a="$cpu0_pg" -v b="$(tree_ticks "$postmaster_pid")" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz }')
rollup_seconds=$(secs "$rollup_t0" "$rollup_t1")
rollup_rate=$(awk -v n="$events_total" -v s="$rollup_seconds" 'BEGIN { printf "%.0f", n / s }')
rollup_warn=$(grep -c '"level":"warn"' "$work/broker-a.log" || true)
log "roll-up done: $(fmt "$events_total") events in ${rollup_seconds} s ($(fmt "$rollup_rate") events/s)"
rollup_slow=""
if awk -v s="$rollup_seconds" 'BEGIN { exit !(s > 300) }'; then
  rollup_slow=" (over 5 minutes)"
  log "warning: the roll-up took ${rollup_seconds} s, over 5 minutes"
fi

# The rollups must hold exactly what was loaded.
failures=()
read -r got_answers got_gold got_cost got_sends < <(sql "SELECT sum(judgments + gold_n), sum(gold_n), sum(cost_micros), sum(sends)
                                                         FROM vendor_hourly" | tr '|' ' ')
[ "$got_answers" = "$expect_answers" ] || failures+=("vendor_hourly holds $got_answers answers, $expect_answers were loaded")
[ "$got_gold" = "$expect_gold" ] || failures+=("vendor_hourly holds $got_gold gold answers, $expect_gold were loaded")
[ "$got_cost" = "$expect_cost" ] || failures+=("vendor_hourly holds cost $got_cost micros, $expect_cost were loaded")
[ "$got_sends" = "$expect_sends" ] || failures+=("vendor_hourly holds $got_sends sends, $expect_sends were loaded")
got_buckets=$(sql "SELECT coalesce(sum(n), 0) FROM vendor_hourly, unnest(latency_buckets) AS n")
[ "$got_buckets" = "$expect_answers" ] || failures+=("latency histograms count $got_buckets answers, $expect_answers were loaded")
got_pairs=$(sql "SELECT coalesce(sum(a_count), 0) FROM vendor_pair_hourly")
[ "$got_pairs" = "$expect_pairs" ] || failures+=("vendor_pair_hourly counts $got_pairs pairs, $expect_pairs were loaded")
# The cumulative rollups: each key's latest row holds its all-time totals; the keys over all
# domains, task types and expertise tiers (NULL) hold everything once per vendor (pair).
read -r got_answers got_gold got_cost got_sends got_buckets got_team_cost < <(sql "
  SELECT sum(c.judgments + c.gold_n), sum(c.gold_n), sum(c.cost_micros), sum(c.sends),
         sum((SELECT sum(n) FROM unnest(c.latency_buckets) AS n)),
         (SELECT sum(t.cost_micros) FROM vendor_keys k CROSS JOIN LATERAL (
            SELECT DISTINCT ON (team_id) cost_micros FROM team_vendor_cumulative t WHERE t.key_id = k.id
            ORDER BY team_id, hour DESC) t WHERE k.domain IS NULL AND k.task_type IS NULL AND k.expertise IS NULL)
  FROM vendor_keys k CROSS JOIN LATERAL (SELECT * FROM vendor_cumulative c WHERE c.key_id = k.id
                                         ORDER BY hour DESC LIMIT 1) c
  WHERE k.domain IS NULL AND k.task_type IS NULL AND k.expertise IS NULL" | tr '|' ' ')
[ "$got_answers" = "$expect_answers" ] || failures+=("vendor_cumulative holds $got_answers answers, $expect_answers were loaded")
[ "$got_gold" = "$expect_gold" ] || failures+=("vendor_cumulative holds $got_gold gold answers, $expect_gold were loaded")
[ "$got_cost" = "$expect_cost" ] || failures+=("vendor_cumulative holds cost $got_cost micros, $expect_cost were loaded")
[ "$got_sends" = "$expect_sends" ] || failures+=("vendor_cumulative holds $got_sends sends, $expect_sends were loaded")
[ "$got_buckets" = "$expect_answers" ] || failures+=("vendor_cumulative's histograms count $got_buckets answers, $expect_answers were loaded")
[ "$got_team_cost" = "$expect_cost" ] || failures+=("team_vendor_cumulative holds cost $got_team_cost micros, $expect_cost were loaded")
got_pairs=$(sql "SELECT coalesce(sum(c.a_count), 0) FROM vendor_pair_keys k CROSS JOIN LATERAL (
                   SELECT a_count FROM vendor_pair_cumulative c WHERE c.key_id = k.id ORDER BY hour DESC LIMIT 1) c
                 WHERE k.domain IS NULL AND k.task_type IS NULL AND k.expertise IS NULL")
[ "$got_pairs" = "$expect_pairs" ] || failures+=("vendor_pair_cumulative counts $got_pairs pairs, $expect_pairs were loaded")
if [ ${#failures[@]} -gt 0 ]; then
  for f in "${failures[@]}"; do log "FAIL: $f"; done
  die "the rollups do not add up to what was loaded"
fi
log "rollups check: answers, gold, cost, sends, latency histograms and agreement pairs add up"

log "VACUUM ANALYZE (what autovacuum would have done by now), CHECKPOINT"
for table in quality_events agreement_events vendor_hourly vendor_pair_hourly vendor_keys vendor_cumulative \
  team_vendor_cumulative vendor_pair_keys vendor_pair_cumulative ledger_entries; do
  sql "VACUUM (ANALYZE) $table" >/dev/null
done
sql "CHECKPOINT" >/dev/null
read -r hourly_rows pair_rows hourly_size pair_size cumulative_rows cumulative_size ledger_size < <(sql "
  SELECT (SELECT count(*) FROM vendor_hourly), (SELECT count(*) FROM vendor_pair_hourly),
         replace(pg_size_pretty(pg_total_relation_size('vendor_hourly')), ' ', ''),
         replace(pg_size_pretty(pg_total_relation_size('vendor_pair_hourly')), ' ', ''),
         (SELECT count(*) FROM vendor_cumulative) + (SELECT count(*) FROM team_vendor_cumulative)
           + (SELECT count(*) FROM vendor_pair_cumulative),
         replace(pg_size_pretty(pg_total_relation_size('vendor_cumulative') + pg_total_relation_size('team_vendor_cumulative')
           + pg_total_relation_size('vendor_pair_cumulative')), ' ', ''),
         replace(pg_size_pretty(pg_total_relation_size('ledger_entries')), ' ', '')" | tr '|' ' ')
log "vendor_hourly: $(fmt "$hourly_rows") rows ($hourly_size), vendor_pair_hourly: $(fmt "$pair_rows") rows ($pair_size)," \
  "cumulative: $(fmt "$cumulative_rows") rows ($cumulative_size), ledger_entries: $ledger_size"

# --- wrk helpers --------------------------------------------------------------------------------
auth_header="Authorization: Bearer $key"
# Latency like "812.00us", "1.23ms", "2.00s" -> milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (match(v, /^[0-9.]+/) == 0) { exit 1 }
    n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
    if (u == "us") f = 0.001; else if (u == "ms") f = 1; else if (u == "s") f = 1000;
    else if (u == "m") f = 60000; else if (u == "h") f = 3600000; else exit 1
    printf "%.3f\n", n * f
  }'
}
# Runs wrk (same request for every server: the Authorization header goes to nginx too) and sets
# wrk_rps, wrk_requests, wrk_p50 and wrk_p99 in ms (empty when no request completed), and wrk_bad:
# non-2xx responses plus socket errors, timeouts included.
run_wrk() { # outfile threads connections duration url
  local out=$1 p50 p99
  wrk -t"$2" -c"$3" -d"$4" --timeout 30s --latency -H "$auth_header" "$5" >"$out" 2>&1 ||
    { cat "$out" >&2; die "wrk $5 failed"; }
  wrk_rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  wrk_requests=$(awk '/ requests in / { print $1 }' "$out")
  p50=$(awk '/Latency Distribution/ { d = 1 } d && $1 == "50%" { print $2; exit }' "$out")
  p99=$(awk '/Latency Distribution/ { d = 1 } d && $1 == "99%" { print $2; exit }' "$out")
  if [ -z "$wrk_rps" ] || [ -z "$wrk_requests" ] || [ -z "$p50" ] || [ -z "$p99" ]; then
    cat "$out" >&2
    die "could not parse wrk output ($out)"
  fi
  wrk_p50=""
  wrk_p99=""
  if [ "$wrk_requests" -gt 0 ]; then
    wrk_p50=$(to_ms "$p50") || { cat "$out" >&2; die "unknown latency unit in $out"; }
    wrk_p99=$(to_ms "$p99") || { cat "$out" >&2; die "unknown latency unit in $out"; }
  fi
  wrk_bad=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 }
                 END { print n + 0 }' "$out")
}
warmup_run() { # threads connections url
  [ "$warmup" = 0 ] || [ "$warmup" = 0s ] || run_wrk "$work/wrk-warmup.txt" "$1" "$2" "$warmup" "$3"
}
# Waits until a server and PostgreSQL are idle (under a tenth of a core for a second): a broker
# may still be working on requests whose client (wrk) has gone, and that work must not spill into
# the next measurement. Sets settle_s.
settle() { # pid name
  local t0 b0 b1 g0 g1
  t0=$(now)
  for _ in $(seq 1 600); do
    b0=$(tree_ticks "$1"); g0=$(tree_ticks "$postmaster_pid")
    sleep 1
    b1=$(tree_ticks "$1"); g1=$(tree_ticks "$postmaster_pid")
    if [ $((b1 - b0 + g1 - g0)) -le $((hz / 10)) ]; then
      settle_s=$(secs "$t0" "$(now)")
      return 0
    fi
  done
  die "$2 still busy 600 s after a run"
}
ms() { awk -v v="$1" 'BEGIN { if (v == "") print "n/a"; else printf (v < 10) ? "%.2f" : "%.0f", v }'; }
start_broker() { # name config listen -> sets started_pid
  LABELBROKER_CONFIG="$2" LABELBROKER_DATABASE_URL="$database_url" LABELBROKER_LISTEN="$3" \
    "$broker_bin" serve >"$work/broker-$1.stdout" 2>"$work/broker-$1.log" &
  started_pid=$!
  wait_ready "$3" "$started_pid" "$work/broker-$1.log"
}

# --- 3. uncached --------------------------------------------------------------------------------
log "starting broker B on $listen_b (dispatch off, scores never cached)"
start_broker b "$work/broker-b.json" "$listen_b"
broker_b_pid=$started_pid
reset_statements
load_uncached=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A lat_p50 lat_p99 lat_rps lat_bytes lat_ok
p99_all_ok=PASS
for w in "${window_list[@]}"; do
  url="http://$listen_b/v1/vendors/scores?window=$w"
  code=$(curl -sS -o "$work/uncached-$w.json" -w '%{http_code}' -H "$auth_header" "$url") || die "GET $url failed"
  [ "$code" = 200 ] || { cat "$work/uncached-$w.json" >&2; die "GET $url answered $code"; }
  lat_bytes[$w]=$(wc -c <"$work/uncached-$w.json")
  warmup_run 1 1 "$url"
  run_wrk "$work/wrk-uncached-$w.txt" 1 1 "$lat_duration" "$url"
  if [ "$wrk_bad" != 0 ] || [ "$wrk_requests" = 0 ]; then
    cat "$work/wrk-uncached-$w.txt" >&2
    die "uncached window=$w: $wrk_requests requests answered, $wrk_bad errors"
  fi
  lat_p50[$w]=$wrk_p50
  lat_p99[$w]=$wrk_p99
  lat_rps[$w]=$wrk_rps
  lat_ok[$w]=$(awk -v p="$wrk_p99" -v t="$p99_target_ms" 'BEGIN { print (p <= t) ? "PASS" : "FAIL" }')
  [ "${lat_ok[$w]}" = PASS ] || p99_all_ok=FAIL
  log "  uncached window=$w: p50 $(ms "$wrk_p50") ms, p99 $(ms "$wrk_p99") ms, $wrk_rps req/s ($wrk_requests requests, ${lat_bytes[$w]} bytes) ${lat_ok[$w]}"
done
top_statements "uncached runs (broker B, one connection)"
stop_process "$broker_b_pid"
broker_b_pid=""

# PLANS=1: the plans of one uncached request per window, as PostgreSQL ran them (auto_explain in
# the sessions of a freshly started broker B), copied from the server log.
if [ "$plans" = 1 ]; then
  pg_log=""
  for f in "$work/pg/postgres.log" "$work/pg/cluster/postgres.log"; do [ -f "$f" ] && pg_log=$f; done
  [ -n "$pg_log" ] || die "cannot find the PostgreSQL log"
  log_lines=$(wc -l <"$pg_log")
  # LOAD first: ALTER SYSTEM accepts the module's settings only once it knows them.
  psql -X -Atq -v ON_ERROR_STOP=1 "$database_url" -c "LOAD 'auto_explain'" \
    -c "ALTER SYSTEM SET session_preload_libraries = 'auto_explain'" \
    -c "ALTER SYSTEM SET auto_explain.log_min_duration = 0" -c "ALTER SYSTEM SET auto_explain.log_analyze = on" \
    -c "ALTER SYSTEM SET auto_explain.log_buffers = on" -c "SELECT pg_reload_conf()" >/dev/null ||
    die "cannot enable auto_explain"
  start_broker b-plans "$work/broker-b.json" "$listen_b"
  broker_b_pid=$started_pid
  for w in "${window_list[@]}"; do
    echo "==== GET /v1/vendors/scores?window=$w" >>"$work/plans.log"
    from=$(( $(wc -l <"$pg_log") + 1 ))
    curl -fsS -o /dev/null -H "$auth_header" "http://$listen_b/v1/vendors/scores?window=$w" || die "GET window=$w failed"
    sleep 0.5
    tail -n +"$from" "$pg_log" >>"$work/plans.log"
  done
  stop_process "$broker_b_pid"
  broker_b_pid=""
  # RESET ALL also drops PG_STATEMENTS' shared_preload_libraries, which only a restart would apply.
  psql -X -Atq -v ON_ERROR_STOP=1 "$database_url" -c "ALTER SYSTEM RESET ALL" -c "SELECT pg_reload_conf()" >/dev/null ||
    die "cannot reset the settings auto_explain needed"
  log "plans of one uncached request per window: $work/plans.log (PostgreSQL log from line $log_lines on)"
  [ "$keep" = 1 ] || log "warning: PLANS=1 without --keep: the plans are deleted on exit"
fi

# --- 4. cached, against nginx -------------------------------------------------------------------
log "starting broker C on $listen_c (dispatch off, scores cached for an hour)"
start_broker c "$work/broker-c.json" "$listen_c"
broker_c_pid=$started_pid
path="/v1/vendors/scores"
query="window=$cached_window"
curl -fsS -o "$work/cached.json" -D "$work/cached.headers" -H "$auth_header" "http://$listen_a$path?$query" ||
  die "GET $path?$query on broker A failed"
curl -fsS -o "$work/cached-c.json" -H "$auth_header" "http://$listen_c$path?$query" || die "GET $path?$query on broker C failed"
# Same data, same hour: the same bytes (the rollups' sums are integers), unless an hour boundary
# passed between the two requests.
if ! cmp -s "$work/cached.json" "$work/cached-c.json"; then
  log "note: brokers A and C answered bodies of $(wc -c <"$work/cached.json") and $(wc -c <"$work/cached-c.json") bytes," \
    "not byte-identical (an hour boundary passed?); nginx serves A's"
fi
content_type=$(tr -d '\r' <"$work/cached.headers" | awk -F': *' 'tolower($1) == "content-type" { print $2; exit }')
[[ "$content_type" =~ ^[[:print:]]+$ && "$content_type" != *'"'* && "$content_type" != *\\* ]] ||
  die "unexpected Content-Type '$content_type'"
body_bytes=$(wc -c <"$work/cached.json")

mkdir -p "$work/nginx/www/v1/vendors" "$work/nginx/logs" "$work/nginx/tmp"
cp "$work/cached.json" "$work/nginx/www$path"
nginx_prelude "$work/nginx/tmp"
temp_paths=$nginx_temp_paths
user_line=$nginx_user_line
if [ "$access_log" = 1 ]; then
  nginx_log="  log_format bench escape=json '{\"ts\":\"\$time_iso8601\",\"method\":\"\$request_method\",'
                               '\"path\":\"\$uri\",\"status\":\$status,\"bytes\":\$body_bytes_sent,'
                               '\"duration_ms\":\$request_time}';
  access_log $work/nginx/logs/access.log bench;"
else
  nginx_log="  access_log off;"
fi
cat >"$work/nginx/nginx.conf" <<CONF
# Written by bench/scores.sh: the broker's scores body as a static file (see http_baseline.sh).
$user_line
daemon off;
master_process on;
worker_processes $io_threads;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events {
  worker_connections 4096;
}
http {
$temp_paths
  # ACCESS_LOG=1: one JSON line per request, unbuffered, like the broker's access log.
$nginx_log
  keepalive_timeout 75s;
  keepalive_requests 100000000;
  server_tokens off;
  open_file_cache max=16 inactive=60s;
  open_file_cache_valid 60s;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/nginx/www;
    location = $path {
      types { }
      default_type "$content_type";
    }
  }
}
CONF
nginx_cmd=(nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log")
"${nginx_cmd[@]}" -t >"$work/nginx-test.log" 2>&1 || { cat "$work/nginx-test.log" >&2; die "nginx rejected its config"; }
log "starting nginx on 127.0.0.1:$nginx_port ($io_threads workers)"
"${nginx_cmd[@]}" >"$work/nginx/logs/stdout.log" 2>&1 &
nginx_pid=$!
nginx_url="http://127.0.0.1:$nginx_port$path?$query"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null --max-time 2 "$nginx_url" 2>/dev/null && break
  kill -0 "$nginx_pid" 2>/dev/null || { cat "$work/nginx/logs/error.log" >&2; die "nginx exited"; }
  sleep 0.1
done
curl -fsS -o "$work/nginx.json" -D "$work/nginx.headers" -H "$auth_header" "$nginx_url" || die "nginx did not answer $nginx_url"
cmp -s "$work/cached.json" "$work/nginx.json" || die "nginx's body differs from the broker's"
header_bytes() { tr -d '\r' <"$1" | awk 'NF { n += length($0) + 2 } END { print n + 2 }'; }

# Three servers, one URL: nginx; broker A with the configured cache (CACHE_MS: an entry expires
# and is recomputed while the load runs); broker C, whose entry outlives the run (every request a
# cache hit: the cached path alone).
names=(nginx ttl hit)
declare -A urls=([nginx]="$nginx_url" [ttl]="http://$listen_a$path?$query" [hit]="http://$listen_c$path?$query")
declare -A pids=([nginx]="$nginx_pid" [ttl]="$broker_a_pid" [hit]="$broker_c_pid")
declare -A labels=([nginx]="nginx, static file" [ttl]="broker A, cache ${cache_ms} ms" [hit]="broker C, every request a hit")
declare -A rps_list p99_list cpu_list pgcpu_list bad_sum settle_max
for name in "${names[@]}"; do
  rps_list[$name]=""; p99_list[$name]=""; cpu_list[$name]=""; pgcpu_list[$name]=""; bad_sum[$name]=0; settle_max[$name]=0
done
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print ""; exit }
  if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cpu_share() { awk -v c="$1" -v hz="$hz" -v ns="$2" 'BEGIN { printf "%.0f", 100 * (c / hz) / (ns / 1e9) }'; }
measure_cached() { # name round
  local name=$1 round=$2 pid c0 c1 g0 g1 t0 t1 cpu pgcpu
  pid=${pids[$name]}
  c0=$(tree_ticks "$pid"); g0=$(tree_ticks "$postmaster_pid"); t0=$(date +%s%N)
  run_wrk "$work/wrk-cached-$name-$round.txt" "$threads" "$connections" "$duration" "${urls[$name]}"
  t1=$(date +%s%N); c1=$(tree_ticks "$pid"); g1=$(tree_ticks "$postmaster_pid")
  cpu=$(cpu_share "$((c1 - c0))" "$((t1 - t0))")
  pgcpu=$(cpu_share "$((g1 - g0))" "$((t1 - t0))")
  rps_list[$name]+="$wrk_rps "
  p99_list[$name]+="$wrk_p99 "
  cpu_list[$name]+="$cpu "
  pgcpu_list[$name]+="$pgcpu "
  bad_sum[$name]=$((bad_sum[$name] + wrk_bad))
  settle "$pid" "$name"
  awk -v a="$settle_s" -v b="${settle_max[$name]}" 'BEGIN { exit !(a > b) }' && settle_max[$name]=$settle_s
  log "  round $round $(printf '%-31s' "${labels[$name]}") $(printf '%9.0f' "$wrk_rps") req/s  p50 $(ms "$wrk_p50") ms  p99 $(ms "$wrk_p99") ms  errors $wrk_bad  server CPU ${cpu}%  PostgreSQL CPU ${pgcpu}%  idle again after ${settle_s} s"
}
log "cached: wrk -t$threads -c$connections -d$duration --latency, $rounds rounds, window=$cached_window ($body_bytes bytes)"
for name in "${names[@]}"; do
  warmup_run "$threads" "$connections" "${urls[$name]}"
  settle "${pids[$name]}" "$name"
done
reset_statements
load_cached=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= rounds; round++)); do
  # Alternate the order so slow drift does not favour one side.
  if ((round % 2)); then order=(nginx ttl hit); else order=(hit ttl nginx); fi
  for name in "${order[@]}"; do measure_cached "$name" "$round"; done
done
top_statements "cached runs (nginx, broker A, broker C)"
round_int() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
declare -A rps p99 cpu pgcpu ratio ratio_ok
for name in "${names[@]}"; do
  rps[$name]=$(median <<<"${rps_list[$name]}")
  p99[$name]=$(median <<<"${p99_list[$name]}")
  cpu[$name]=$(round_int "$(median <<<"${cpu_list[$name]}")")
  pgcpu[$name]=$(round_int "$(median <<<"${pgcpu_list[$name]}")")
done
for name in ttl hit; do
  read -r "ratio[$name]" "ratio_ok[$name]" < <(awk -v n="${rps[nginx]}" -v b="${rps[$name]}" -v t="$ratio_target" 'BEGIN {
    r = (n > 0) ? b / n : 0; printf "%.2f %s\n", r, (r >= t) ? "PASS" : "FAIL" }')
done

# --- report -------------------------------------------------------------------------------------
overall=PASS
[ "$p99_all_ok" = PASS ] && [ "${ratio_ok[hit]}" = PASS ] && [ "${ratio_ok[ttl]}" = PASS ] || overall=FAIL
cores=$(nproc)
echo
echo "scores: $(fmt "$judgments") judgments over 30 days, $(fmt "$agreements") agreement events, $(fmt "$ledger") ledger rows; $cores cores, commit $commit"
echo "  data     : $(fmt "$quality_rows") quality events (answers, 10% gold, + send and Dawid-Skene events) loaded in ${quality_load_s} s;"
echo "             $(fmt "$agreement_rows") agreement events in ${agreement_load_s} s; $(fmt "$ledger_rows") ledger rows in ${ledger_load_s} s"
echo "  roll-up  : $(fmt "$events_total") events in ${rollup_seconds} s by broker A's maintenance loop: $(fmt "$rollup_rate") events/s${rollup_slow}"
echo "             (CPU: broker ${cpu_rollup_broker} s, PostgreSQL ${cpu_rollup_pg} s; broker warnings: $rollup_warn)"
echo "             -> vendor_hourly $(fmt "$hourly_rows") rows ($hourly_size), vendor_pair_hourly $(fmt "$pair_rows") rows ($pair_size);"
echo "                cumulative (vendor, team, pair) $(fmt "$cumulative_rows") rows ($cumulative_size); sums checked"
echo "  uncached : broker B (quality.scores_cache_ms 0), wrk -t1 -c1 -d$lat_duration --latency; target p99 <= $p99_target_ms ms"
printf '             %-7s %10s %10s %10s %9s  %s\n' window p50 p99 req/s bytes result
for w in "${window_list[@]}"; do
  printf '             %-7s %7s ms %7s ms %10.1f %9s  %s\n' "$w" "$(ms "${lat_p50[$w]}")" "$(ms "${lat_p99[$w]}")" "${lat_rps[$w]}" \
    "${lat_bytes[$w]}" "${lat_ok[$w]}"
done
echo "  cached   : window=$cached_window, $body_bytes bytes ($content_type); response headers: broker $(header_bytes "$work/cached.headers") bytes, nginx $(header_bytes "$work/nginx.headers") bytes"
echo "             wrk -t$threads -c$connections -d$duration --latency, median of $rounds rounds; target broker >= $ratio_target x nginx"
printf '             %-31s %10s %10s %7s %8s %6s %7s  %s\n' server "req/s" p99 errors "settle" CPU "PG CPU" "ratio"
for name in "${names[@]}"; do
  r="-"
  [ "$name" = nginx ] || r="${ratio[$name]} ${ratio_ok[$name]}"
  printf '             %-31s %10s %7s ms %7s %6s s %5s%% %6s%%  %s\n' "${labels[$name]}" "$(round_int "${rps[$name]}")" \
    "$(ms "${p99[$name]}")" "${bad_sum[$name]}" "${settle_max[$name]}" "${cpu[$name]}" "${pgcpu[$name]}" "$r"
done
echo "             errors: non-2xx responses and socket errors over all rounds; settle: the longest a server (and"
echo "             PostgreSQL) kept working after a run had ended; CPU: share of one core ($cores cores in all)"
echo "  machine  : load average (1, 5, 15 min) before the uncached runs $load_uncached, before the cached runs $load_cached;"
echo "             it counts this script's own work too; well above $cores means other work competed for the cores"
echo "  overall  : $overall (uncached p99 $p99_all_ok; cached ratio: every request a hit ${ratio_ok[hit]}, cache ${cache_ms} ms ${ratio_ok[ttl]})"

uncached_cells=""
for w in "${window_list[@]}"; do
  uncached_cells+="$w $(ms "${lat_p50[$w]}") / $(ms "${lat_p99[$w]}"); "
done
uncached_cells="${uncached_cells%; } $p99_all_ok"
echo
echo "Markdown row for docs/benchmarks.md:"
# shellcheck disable=SC2016  # the backticks are Markdown
printf '| %s | `%s` | %s | %s judgments, %s agreements, %s ledger rows; %s + %s hourly, %s cumulative rollup rows | %s s (%s events/s) | %s | %s: nginx %s; all hits %s (%s %s); cache %s ms %s (%s %s) | %s |\n' \
  "$(date -u +%F)" "$commit" "$cores" "$(fmt "$judgments")" "$(fmt "$agreements")" "$(fmt "$ledger")" \
  "$(fmt "$hourly_rows")" "$(fmt "$pair_rows")" "$(fmt "$cumulative_rows")" "$rollup_seconds" "$(fmt "$rollup_rate")" "$uncached_cells" \
  "$cached_window c$connections" "$(round_int "${rps[nginx]}")" "$(round_int "${rps[hit]}")" "${ratio[hit]}" "${ratio_ok[hit]}" \
  "$cache_ms" "$(round_int "${rps[ttl]}")" "${ratio[ttl]}" "${ratio_ok[ttl]}" "$overall"

if [ "$keep" = 1 ]; then
  echo
  echo "temp dir kept: $work (configs, broker and nginx logs, wrk output, response bodies)"
fi
[ "$strict" = 1 ] && [ "$overall" = FAIL ] && exit 3
exit 0
