#!/usr/bin/env bash
# Job intake: items/s stored through POST /v1/jobs against raw PostgreSQL COPY of the same rows,
# measured in the same run on the same throwaway cluster, plus the broker's peak RSS.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'TEXT'
usage: bench/ingest.sh [--keep] [--help]

Starts a throwaway PostgreSQL cluster (scripts/pg, temp dir, free port) and a broker with
dispatch disabled (its vendors point nowhere; intake never calls them), then:
  1. API: bin/ingest_client submits jobs of ITEMS_PER_JOB items from CLIENTS concurrent
     keep-alive clients until TOTAL items are stored (POST /v1/jobs, 201 each),
     sampling the broker's VmRSS every 100 ms;
  2. reference: psql \copy of the same TOTAL rows (job_id, item_id, data) into a scratch table
     created LIKE job_items INCLUDING ALL (same columns, defaults, checks, primary key; no
     foreign key) on the same cluster;
  3. one job of SINGLE items in one request (its time and the RSS peak it causes).
Prints items/s for both, the API/COPY ratio (target >= 0.4), the RSS maximum during step 1
(target < 300 MB), and a Markdown row for docs/benchmarks.md. Targets are reported, not
enforced: no wall-clock assertion, shared machines are noisy.

options:
  --keep   keep the temp dir (config, logs, COPY file) and print its path
  --help   show this help

environment:
  TOTAL=1000000 ITEMS_PER_JOB=1000 CLIENTS=8 SINGLE=1000000 (0 skips step 3)
  POOL_SIZE=16 WORKERS=16  broker database pool and HTTP worker threads
  LOG_LEVEL=warn           debug logs each job's parse/validate/store times (see --keep)
  LABELBROKER_BUILD_DIR    build dir with bin/labelbroker and bin/ingest_client (default: build)

exit codes: 0 ran, 1 failure, 2 usage error
TEXT
}

keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ingest: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

total=${TOTAL:-1000000}
per_job=${ITEMS_PER_JOB:-1000}
clients=${CLIENTS:-8}
single=${SINGLE:-1000000}
pool_size=${POOL_SIZE:-16}
workers=${WORKERS:-16}
log_level=${LOG_LEVEL:-warn}
[[ "$log_level" =~ ^(debug|info|warn|error)$ ]] || { echo "ingest: LOG_LEVEL must be debug, info, warn or error" >&2; exit 2; }
for v in total per_job clients pool_size workers; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "ingest: $v must be a positive integer" >&2; exit 2; }
done
[[ "$single" =~ ^[0-9]+$ ]] || { echo "ingest: SINGLE must be a non-negative integer" >&2; exit 2; }

die() { echo "ingest: $*" >&2; exit 1; }
log() { echo "ingest: $*" >&2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo_root/bench/lib.sh"
build_dir=${LABELBROKER_BUILD_DIR:-build}
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"
broker_bin="$build_dir/bin/labelbroker"
client_bin="$build_dir/bin/ingest_client"
pg_script="$repo_root/scripts/pg"
for b in "$broker_bin" "$client_bin"; do
  [ -x "$b" ] || die "$b not found; build first (cmake --build $build_dir --target labelbroker ingest_client)"
done
for tool in curl psql ss; do command -v "$tool" >/dev/null || die "'$tool' not found; run scripts/setup-deps"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/labelbroker-ingest.XXXXXX")
chmod 755 "$work"
broker_pid=""
sampler_pid=""
pg_started=0
pg_port=""

# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null && wait "$sampler_pid" 2>/dev/null
  stop_process "$broker_pid"
  if [ "$pg_started" = 1 ]; then
    destroy_cluster "$work/pg" "$pg_port" "$pg_script"
  fi
  if [ "$keep" = 1 ]; then log "kept temp dir $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# --- PostgreSQL ---------------------------------------------------------------------------------
pg_port=$(free_port)
log "starting throwaway PostgreSQL on port $pg_port"
pg_started=1
LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port" "$pg_script" start >"$work/pg-start.log" 2>&1 ||
  { cat "$work/pg-start.log" >&2; die "scripts/pg start failed"; }
database_url=$(LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port" "$pg_script" url)

# --- broker -------------------------------------------------------------------------------------
broker_port=$(free_port)
listen="127.0.0.1:$broker_port"
cat >"$work/labelbroker.json" <<JSON
// Written by bench/ingest.sh: intake only. Dispatch is off and the vendors point nowhere; they
// exist so that jobs validate (a job needs eligible vendors).
{
  "listen": "$listen",
  "database": {"pool_size": $pool_size},
  "http": {"worker_threads": $workers},
  "dispatch": {"enabled": false},
  "log": {"level": "$log_level", "access_log": false},
  "vendors": [
    {"id": "scale", "kind": "scale", "base_url": "http://127.0.0.1:9/scale/v1",
     "api_key": "bench", "callback_secret": "bench-callback-secret-0123",
     "capabilities": {"task_types": ["classification"], "domains": ["general"], "expertise": ["general"]},
     "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"}},
    {"id": "surge", "kind": "surge", "base_url": "http://127.0.0.1:9/surge/api",
     "api_key": "bench", "callback_secret": "bench-callback-secret-0123",
     "capabilities": {"task_types": ["classification"], "domains": ["general"], "expertise": ["general"]},
     "payment_per_response": "0.15"}
  ]
}
JSON
broker_env=(env LABELBROKER_CONFIG="$work/labelbroker.json" LABELBROKER_DATABASE_URL="$database_url"
  LABELBROKER_LISTEN="$listen")
key=$(migrate_and_make_key)

log "starting labelbroker on $listen (dispatch disabled)"
"${broker_env[@]}" "$broker_bin" serve >"$work/broker.stdout" 2>"$work/broker.log" &
broker_pid=$!
wait_ready "$listen" "$broker_pid" "$work/broker.log"
rss_start=$(status_kb "$broker_pid" VmRSS)

# --- 1. API -------------------------------------------------------------------------------------
# VmRSS sampled every 100 ms; the maximum is written when the sampler is stopped.
(
  max=0
  trap 'echo "$max" >"$work/rss_max"; exit 0' TERM
  while kill -0 "$broker_pid" 2>/dev/null; do
    r=$(status_kb "$broker_pid" VmRSS)
    [ "${r:-0}" -gt "$max" ] && max=$r
    sleep 0.1 &
    wait $!
  done
  echo "$max" >"$work/rss_max"
) &
sampler_pid=$!
log "API: $total items as jobs of $per_job from $clients clients"
api_json=$("$client_bin" --port "$broker_port" --key "$key" --clients "$clients" --items-per-job "$per_job" --total "$total") ||
  { echo "$api_json" >&2; tail -20 "$work/broker.log" >&2; die "ingest_client reported failures"; }
kill -TERM "$sampler_pid" 2>/dev/null
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
rss_max=$(cat "$work/rss_max")
hwm_api=$(status_kb "$broker_pid" VmHWM)
api_seconds=$(sed -E 's/.*"seconds":([0-9.]+).*/\1/' <<<"$api_json")
stored=$(psql -Atq "$database_url" -c "SELECT count(*) FROM job_items")
[ "$stored" -eq "$total" ] || die "expected $total rows in job_items, found $stored"
api_rate=$(awk -v n="$total" -v s="$api_seconds" 'BEGIN { printf "%.0f", n / s }')
log "API: $api_json"

# --- 2. COPY reference --------------------------------------------------------------------------
"$client_bin" --copy-file "$work/items.copy" --items-per-job "$per_job" --total "$total"
psql -Atq "$database_url" -c "CREATE TABLE ingest_reference (LIKE job_items INCLUDING ALL)"
psql -Atq "$database_url" -c "CHECKPOINT" >/dev/null
log "reference: \\copy of the same $total rows"
t0=$(now)
psql -Atq "$database_url" -c "\\copy ingest_reference (job_id, item_id, data) FROM '$work/items.copy'"
t1=$(now)
copy_seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
copy_rate=$(awk -v n="$total" -v s="$copy_seconds" 'BEGIN { printf "%.0f", n / s }')
ratio=$(awk -v a="$api_rate" -v c="$copy_rate" 'BEGIN { printf "%.2f", a / c }')

# --- 3. one large job ---------------------------------------------------------------------------
single_line="skipped"
if [ "$single" -gt 0 ]; then
  log "one job of $single items in one request"
  single_json=$("$client_bin" --port "$broker_port" --key "$key" --clients 1 --items-per-job "$single" --total "$single") ||
    { echo "$single_json" >&2; tail -20 "$work/broker.log" >&2; die "the $single-item job was not accepted"; }
  single_seconds=$(sed -E 's/.*"seconds":([0-9.]+).*/\1/' <<<"$single_json")
  hwm_single=$(status_kb "$broker_pid" VmHWM)
  single_line="accepted (201) in ${single_seconds} s, broker VmHWM afterwards $((hwm_single / 1024)) MB"
fi

# --- report -------------------------------------------------------------------------------------
verdict_ratio=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.4) ? "PASS" : "FAIL" }')
verdict_rss=$([ "$rss_max" -lt $((300 * 1024)) ] && echo PASS || echo FAIL)
cat <<REPORT

ingest: $total items, jobs of $per_job, $clients clients, $(nproc) cores
  API   : ${api_rate} items/s (${api_seconds} s)   $api_json
  COPY  : ${copy_rate} items/s (${copy_seconds} s)   psql \\copy into LIKE job_items INCLUDING ALL
  ratio : ${ratio} (target >= 0.4) $verdict_ratio
  RSS   : max ${rss_max} kB sampled during the API run (target < 300 MB) $verdict_rss; start ${rss_start} kB, VmHWM ${hwm_api} kB
  single: $single items in one request: $single_line

Markdown row for docs/benchmarks.md:
| $(date -u +%F) | \`$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)\` | $(nproc) | ${api_rate}/s | ${copy_rate}/s | ${ratio} $verdict_ratio | $((rss_max / 1024)) MB $verdict_rss | ${single_line} |
REPORT
