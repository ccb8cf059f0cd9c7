#!/usr/bin/env bash
# End to end: completed items/s through the whole broker (intake, planning, dispatch to vendors,
# callbacks, aggregation, job completion) against a zero-latency vendor-sim, redundancy 2, plus
# the broker's peak RSS and a correctness check of what was dispatched.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'TEXT'
usage: bench/pipeline.sh [--keep] [--strict] [--help]

Starts a throwaway PostgreSQL cluster (scripts/pg, temp dir, free port), vendor-sim on a free
port with a generated scenario (scale, scale-small, surge and, with MERCOR=1, mercor; zero
latency and queue delay, no faults, room for every unit) and a broker with dispatch enabled and
those vendors configured, then:
  1. bin/ingest_client submits TOTAL items as jobs of ITEMS_PER_JOB items (classification, domain
     and expertise general, redundancy 2) from CLIENTS concurrent keep-alive clients;
  2. waits until every job is `completed` (jobs counted in the database every 100 ms); the time
     is from the first submission to the last job's finished_at; progress on stderr every 5 s;
  3. checks: every item labeled, with exactly 2 completed assignments from 2 distinct vendors;
     vendor-sim's tasks_created equals the assignments the broker sent, per vendor (no duplicate
     task at any vendor); no job ended in another state.
Prints completed items/s and judgments/s against the target (>= 5,000 items/s), the broker's
peak RSS (VmHWM), the CPU seconds broker / PostgreSQL / vendor-sim spent in the measured window,
and a Markdown row for docs/benchmarks.md. The target is reported, not enforced (shared machines
are noisy) unless --strict is given. A run that stops making progress for STALL_S seconds fails:
that is a hang guard, not a speed check.

options:
  --keep     keep the temp dir (configs, scenario, logs) and print its path
  --strict   exit 3 when the throughput target is missed
  --help     show this help

environment:
  TOTAL=50000 ITEMS_PER_JOB=1000 CLIENTS=4
  WORKERS_PER_VENDOR=2     the broker's dispatch.workers_per_vendor (batches in flight per vendor)
  BATCH=200                capabilities.max_batch_size of every vendor (units per submit)
  POOL_SIZE=16 WORKERS=32  broker database pool and HTTP worker threads (the broker default)
  IDLE_WAIT_MS=50 MAINTENANCE_MS=200   dispatch.idle_wait_ms, dispatch.maintenance_interval_ms
  POLL_AFTER_MS=30000      dispatch.poll_after_ms (the default): units whose callback is later than
                           this are polled at the vendor
  MERCOR=1                 0: three vendors (scale, scale-small, surge)
  SIM_WORKERS=8 SIM_CALLBACK_THREADS=32  vendor-sim HTTP handler threads and callback senders
                           (a vendor fleet calls back concurrently; 4 starves group commit)
  STALL_S=120              fail when nothing completes for this long
  PG_STATEMENTS=0          1: load pg_stat_statements and print the top statements afterwards
  LOG_LEVEL=warn           broker log level (see --keep)
  LABELBROKER_BUILD_DIR    build dir with bin/labelbroker, bin/vendor-sim, bin/ingest_client
                           (default: build)

exit codes: 0 ran and checks passed, 1 failure (including a failed correctness check),
            2 usage error, 3 target missed with --strict
TEXT
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_options pipeline "$@"

total=${TOTAL:-50000}
per_job=${ITEMS_PER_JOB:-1000}
clients=${CLIENTS:-4}
workers_per_vendor=${WORKERS_PER_VENDOR:-2}
batch=${BATCH:-200}
pool_size=${POOL_SIZE:-16}
workers=${WORKERS:-32}
idle_wait_ms=${IDLE_WAIT_MS:-50}
poll_after_ms=${POLL_AFTER_MS:-30000}
maintenance_ms=${MAINTENANCE_MS:-200}
mercor=${MERCOR:-1}
sim_workers=${SIM_WORKERS:-8}
sim_callback_threads=${SIM_CALLBACK_THREADS:-32}
stall_s=${STALL_S:-120}
pg_statements=${PG_STATEMENTS:-0}
log_level=${LOG_LEVEL:-warn}
redundancy=2
target=5000
[[ "$log_level" =~ ^(debug|info|warn|error)$ ]] || { echo "pipeline: LOG_LEVEL must be debug, info, warn or error" >&2; exit 2; }
for v in total per_job clients workers_per_vendor batch pool_size workers idle_wait_ms poll_after_ms maintenance_ms sim_workers \
  sim_callback_threads stall_s; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "pipeline: $v must be a positive integer" >&2; exit 2; }
done
[[ "$mercor" =~ ^[01]$ ]] || { echo "pipeline: MERCOR must be 0 or 1" >&2; exit 2; }
[[ "$pg_statements" =~ ^[01]$ ]] || { echo "pipeline: PG_STATEMENTS must be 0 or 1" >&2; exit 2; }
[ "$batch" -le 10000 ] || { echo "pipeline: BATCH must be at most 10000" >&2; exit 2; }
[ "$workers_per_vendor" -le 256 ] || { echo "pipeline: WORKERS_PER_VENDOR must be at most 256" >&2; exit 2; }
[ "$sim_callback_threads" -le 64 ] || { echo "pipeline: SIM_CALLBACK_THREADS must be at most 64" >&2; exit 2; }

die() { echo "pipeline: $*" >&2; exit 1; }
log() { echo "pipeline: $*" >&2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${LABELBROKER_BUILD_DIR:-build}
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"
broker_bin="$build_dir/bin/labelbroker"
sim_bin="$build_dir/bin/vendor-sim"
client_bin="$build_dir/bin/ingest_client"
pg_script="$repo_root/scripts/pg"
for b in "$broker_bin" "$sim_bin" "$client_bin"; do
  [ -x "$b" ] || die "$b not found; build first (cmake --build $build_dir --target labelbroker vendor-sim ingest_client)"
done
for tool in curl psql ss; do command -v "$tool" >/dev/null || die "'$tool' not found; run scripts/setup-deps"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/labelbroker-pipeline.XXXXXX")
chmod 755 "$work"
broker_pid=""
sim_pid=""
pg_started=0
pg_port=""

# shellcheck disable=SC2317  # runs from the EXIT trap
# shellcheck disable=SC2317
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_process "$broker_pid"
  stop_process "$sim_pid"
  if [ "$pg_started" = 1 ]; then
    destroy_cluster "$work/pg" "$pg_port" "$pg_script"
  fi
  if [ "$keep" = 1 ]; then log "kept temp dir $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# CPU time of one process in clock ticks (user + system; with "children", plus its waited-for
# children's, which is where PostgreSQL's exited backends end up).
cpu_ticks() {
  local fields
  fields=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  # After the command name: field 3 (state) is $1, so utime (14) is $12, stime $13, cutime $14, cstime $15.
  if [ "${2:-}" = children ]; then awk '{ print $12 + $13 + $14 + $15 }' <<<"$fields"; else awk '{ print $12 + $13 }' <<<"$fields"; fi
}
# PostgreSQL: the postmaster (with its reaped backends) plus every live child.
pg_cpu_ticks() {
  local sum child
  sum=$(cpu_ticks "$postmaster_pid" children)
  for child in $(ps -o pid= --ppid "$postmaster_pid" 2>/dev/null); do
    sum=$((sum + $(cpu_ticks "$child")))
  done
  echo "$sum"
}
hz=$(getconf CLK_TCK)
sql() { psql -X -Atq "$database_url" -c "$1"; }

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

# --- vendor-sim ---------------------------------------------------------------------------------
sim_port=$(free_port)
sim_url="http://127.0.0.1:$sim_port"
instant='"latency": {"fixed_ms": 0}, "queue_delay": {"fixed_ms": 0}, "capacity": {"max_in_flight": 10000000}'
mercor_sim=""
if [ "$mercor" = 1 ]; then
  # 168 h a week of one-minute items per expert: 10,080 items each, so four experts take ~40,000.
  mercor_sim=',
    {"id": "mercor", "kind": "mercor", "api_key": "bench-mercor-key", "callback_secret": "bench-mercor-callback-secret",
     '"$instant"', "minutes_per_item": {"fixed_minutes": 1},
     "experts": [
       {"id": "exp-1", "domain_scores": {"general": 0.9}, "hourly_rate_usd": 60, "available_hours": 168},
       {"id": "exp-2", "domain_scores": {"general": 0.88}, "hourly_rate_usd": 60, "available_hours": 168},
       {"id": "exp-3", "domain_scores": {"general": 0.86}, "hourly_rate_usd": 60, "available_hours": 168},
       {"id": "exp-4", "domain_scores": {"general": 0.84}, "hourly_rate_usd": 60, "available_hours": 168}
     ]}'
fi
cat >"$work/scenario.json" <<JSON
// Written by bench/pipeline.sh: instant work (zero latency and queue delay), no faults, room for
// every unit; every completion is called back to the broker.
{
  "seed": 7,
  "worker_threads": $sim_workers,
  "access_log": false,
  "callbacks": {"threads": $sim_callback_threads, "max_attempts": 5, "backoff_ms": 100, "timeout_ms": 10000},
  "vendors": [
    {"id": "scale", "kind": "scale", "api_key": "bench-scale-key", "callback_secret": "bench-scale-callback-secret",
     "prices_micros": {"categorization": 40000, "comparison": 60000, "textcollection": 80000}, $instant},
    {"id": "scale-small", "kind": "scale", "api_key": "bench-scale-small-key",
     "callback_secret": "bench-scale-small-callback-secret",
     "prices_micros": {"categorization": 50000, "comparison": 70000, "textcollection": 90000}, $instant},
    {"id": "surge", "kind": "surge", "api_key": "bench-surge-key", "callback_secret": "bench-surge-callback-secret",
     "payment_per_response_micros": 150000, $instant}$mercor_sim
  ]
}
JSON
log "starting vendor-sim on $sim_url ($([ "$mercor" = 1 ] && echo 4 || echo 3) vendors, zero latency)"
"$sim_bin" --scenario "$work/scenario.json" --listen "127.0.0.1:$sim_port" >"$work/sim.stdout" 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null --max-time 2 "$sim_url/healthz" 2>/dev/null && break
  kill -0 "$sim_pid" 2>/dev/null || { tail -20 "$work/sim.log" >&2; die "vendor-sim exited"; }
  sleep 0.1
done
curl -fsS -o /dev/null --max-time 2 "$sim_url/healthz" || die "vendor-sim did not answer"

# --- broker -------------------------------------------------------------------------------------
broker_port=$(free_port)
listen="127.0.0.1:$broker_port"
caps() { echo "{\"task_types\": [\"classification\"], \"domains\": [\"general\"], \"expertise\": [\"general\"], \"max_batch_size\": $batch}"; }
mercor_broker=""
if [ "$mercor" = 1 ]; then
  mercor_broker=',
    {"id": "mercor", "kind": "mercor", "base_url": "'"$sim_url"'/mercor/v1", "api_key": "bench-mercor-key",
     "callback_secret": "bench-mercor-callback-secret", "capabilities": '"$(caps)"',
     "hourly_rate_max": "100.00", "weekly_cap_hours": 168, "headcount": 4, "expected_minutes_per_item": 1}'
fi
cat >"$work/labelbroker.json" <<JSON
// Written by bench/pipeline.sh: dispatch on, every vendor at vendor-sim.
{
  "listen": "$listen",
  "database": {"pool_size": $pool_size},
  "http": {"worker_threads": $workers},
  "dispatch": {"enabled": true, "workers_per_vendor": $workers_per_vendor,
               "idle_wait_ms": $idle_wait_ms, "poll_after_ms": $poll_after_ms,
               "maintenance_interval_ms": $maintenance_ms},
  "log": {"level": "$log_level", "access_log": false},
  "vendors": [
    {"id": "scale", "kind": "scale", "base_url": "$sim_url/scale/v1", "api_key": "bench-scale-key",
     "callback_secret": "bench-scale-callback-secret", "capabilities": $(caps),
     "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"}, "http": {"max_in_flight": 64}},
    {"id": "scale-small", "kind": "scale", "base_url": "$sim_url/scale-small/v1", "api_key": "bench-scale-small-key",
     "callback_secret": "bench-scale-small-callback-secret", "capabilities": $(caps),
     "prices": {"classification": "0.05", "preference": "0.07", "rating": "0.09"}, "http": {"max_in_flight": 64}},
    {"id": "surge", "kind": "surge", "base_url": "$sim_url/surge/api", "api_key": "bench-surge-key",
     "callback_secret": "bench-surge-callback-secret", "capabilities": $(caps),
     "payment_per_response": "0.15"}$mercor_broker
  ]
}
JSON
broker_env=(env LABELBROKER_CONFIG="$work/labelbroker.json" LABELBROKER_DATABASE_URL="$database_url"
  LABELBROKER_LISTEN="$listen")
"${broker_env[@]}" "$broker_bin" check-config >"$work/check-config.log" 2>&1 || { cat "$work/check-config.log" >&2; die "broker config rejected"; }
key=$(migrate_and_make_key)

log "starting labelbroker on $listen (dispatch: $workers_per_vendor workers per vendor, batches of $batch)"
"${broker_env[@]}" "$broker_bin" serve >"$work/broker.stdout" 2>"$work/broker.log" &
broker_pid=$!
wait_ready "$listen" "$broker_pid" "$work/broker.log"
rss_start=$(status_kb "$broker_pid" VmRSS)
[ "$pg_statements" = 1 ] && sql "SELECT pg_stat_statements_reset()" >/dev/null

# --- 1 + 2. submit, wait for completion -----------------------------------------------------------
jobs=$(( (total + per_job - 1) / per_job ))
log "submitting $total items as $jobs jobs of $per_job (redundancy $redundancy) from $clients clients"
cpu0_broker=$(cpu_ticks "$broker_pid"); cpu0_sim=$(cpu_ticks "$sim_pid"); cpu0_pg=$(pg_cpu_ticks)
t0=$(now)
"$client_bin" --port "$broker_port" --key "$key" --clients "$clients" --items-per-job "$per_job" --total "$total" \
  --redundancy "$redundancy" --expertise general --budget 100000.00 >"$work/submit.json" 2>"$work/submit.log" &
client_pid=$!

# Jobs counted in the database every 100 ms (psql on the throwaway cluster: observation only; the
# jobs table is small, so this costs PostgreSQL little). Items are counted every 5 s for progress
# and the hang guard. The times reported come from the rows' finished_at, not from this polling.
done_jobs=0
ended_other=0
last_progress=$(now)
last_report=0
last_labeled=-1
submit_seconds=""
while :; do
  if [ -z "$submit_seconds" ] && ! kill -0 "$client_pid" 2>/dev/null; then
    wait "$client_pid" || { cat "$work/submit.json" "$work/submit.log" >&2; tail -20 "$work/broker.log" >&2; die "ingest_client reported failures"; }
    submit_seconds=$(sed -E 's/.*"seconds":([0-9.]+).*/\1/' "$work/submit.json")
    log "submitted in ${submit_seconds} s: $(cat "$work/submit.json")"
  fi
  read -r done_jobs ended_other < <(sql "SELECT count(*) FILTER (WHERE status = 'completed'),
      count(*) FILTER (WHERE status IN ('failed', 'canceled', 'budget_exhausted')) FROM jobs" | tr '|' ' ')
  if [ -n "$submit_seconds" ] && [ $((done_jobs + ended_other)) -ge "$jobs" ]; then break; fi
  t=$(now)
  if awk -v a="$last_report" -v b="$t" 'BEGIN { exit !(b - a >= 5) }'; then
    last_report=$t
    labeled=$(sql "SELECT count(*) FROM job_items WHERE state <> 'open'")
    if [ "$labeled" != "$last_labeled" ]; then last_labeled=$labeled; last_progress=$t; fi
    log "$(awk -v a="$t0" -v b="$t" 'BEGIN { printf "%5.1f s", b - a }'): $labeled of $total items finished, $done_jobs of $jobs jobs completed, broker RSS $(( $(status_kb "$broker_pid" VmRSS) / 1024 )) MB"
  fi
  if awk -v a="$last_progress" -v b="$t" -v s="$stall_s" 'BEGIN { exit !(b - a > s) }'; then
    sql "SELECT vendor_id, state, count(*), max(attempts), left(max(last_error), 200) FROM assignments GROUP BY 1, 2 ORDER BY 1, 2" >&2 || true
    tail -20 "$work/broker.log" >&2
    die "no item finished for ${stall_s} s ($last_labeled of $total finished, $done_jobs of $jobs jobs completed)"
  fi
  kill -0 "$broker_pid" 2>/dev/null || { tail -20 "$work/broker.log" >&2; die "broker exited"; }
  kill -0 "$sim_pid" 2>/dev/null || { tail -20 "$work/sim.log" >&2; die "vendor-sim exited"; }
  sleep 0.1
done
t1=$(now)
cpu1_broker=$(cpu_ticks "$broker_pid"); cpu1_sim=$(cpu_ticks "$sim_pid"); cpu1_pg=$(pg_cpu_ticks)
# When the last item was aggregated and the last job completed, by the database's clock (the same
# machine's clock as t0). The 100 ms polling above only bounds them.
items_done_at=$(sql "SELECT extract(epoch FROM max(finished_at)) FROM job_items")
jobs_done_at=$(sql "SELECT extract(epoch FROM max(finished_at)) FROM jobs")
sent_at=$(sql "SELECT extract(epoch FROM max(submitted_at)) FROM assignments")
hwm=$(status_kb "$broker_pid" VmHWM)
seconds=$(awk -v a="$t0" -v b="${jobs_done_at:-$t1}" 'BEGIN { printf "%.2f", b - a }')
labeled_seconds=$(awk -v a="$t0" -v b="${items_done_at:-$t1}" 'BEGIN { printf "%.2f", b - a }')
sent_seconds=$(awk -v a="$t0" -v b="${sent_at:-$t1}" 'BEGIN { printf "%.2f", b - a }')
items_rate=$(awk -v n="$total" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
judgments_rate=$(awk -v n="$total" -v r="$redundancy" -v s="$seconds" 'BEGIN { printf "%.0f", n * r / s }')
cpu_s() { awk -v a="$1" -v b="$2" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz }'; }
cpu_broker=$(cpu_s "$cpu0_broker" "$cpu1_broker")
cpu_pg=$(cpu_s "$cpu0_pg" "$cpu1_pg")
cpu_sim=$(cpu_s "$cpu0_sim" "$cpu1_sim")
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')  # the window the CPU figures cover
share() { awk -v c="$1" -v s="$wall" 'BEGIN { printf "%.0f%%", 100 * c / s }'; }

# --- 3. correctness -------------------------------------------------------------------------------
failures=()
[ "$ended_other" -eq 0 ] || failures+=("$ended_other jobs ended failed, canceled or budget_exhausted")
n=$(sql "SELECT count(*) FROM job_items WHERE state = 'labeled'")
[ "$n" -eq "$total" ] || failures+=("$n of $total items labeled")
completed=$(sql "SELECT count(*) FROM assignments WHERE state = 'completed'")
[ "$completed" -eq $((total * redundancy)) ] || failures+=("$completed completed assignments, expected $((total * redundancy))")
bad=$(sql "SELECT count(*) FROM (SELECT i.job_id, i.item_id FROM job_items i
           LEFT JOIN assignments a ON a.job_id = i.job_id AND a.item_id = i.item_id AND a.state = 'completed'
           GROUP BY 1, 2 HAVING count(a.id) <> $redundancy OR count(DISTINCT a.vendor_id) <> $redundancy) x")
[ "$bad" -eq 0 ] || failures+=("$bad items without exactly $redundancy completed assignments from $redundancy distinct vendors")
sim_stats=$(curl -fsS --max-time 10 "$sim_url/_sim/stats") || die "GET /_sim/stats failed"
# Per vendor: tasks vendor-sim created against assignments the broker sent (vendor_task_id set).
# psql parses the JSON; the query lists only vendors where the two differ.
sim_stats_sql=${sim_stats//\'/\'\'}
mismatch=$(sql "WITH sim AS (SELECT key AS vendor_id, (value->>'tasks_created')::bigint AS created
                             FROM json_each('$sim_stats_sql'::json->'vendors')),
                     sent AS (SELECT vendor_id, count(*) AS sent FROM assignments
                              WHERE vendor_task_id IS NOT NULL GROUP BY 1)
                SELECT coalesce(sim.vendor_id, sent.vendor_id) || ': created ' || coalesce(created, 0)
                       || ', sent ' || coalesce(sent, 0)
                FROM sim FULL JOIN sent USING (vendor_id) WHERE coalesce(created, 0) <> coalesce(sent, 0)")
[ -z "$mismatch" ] || failures+=("vendor-sim tasks_created differs from assignments sent: ${mismatch//$'\n'/; }")
sent_total=$(sql "SELECT count(*) FROM assignments WHERE vendor_task_id IS NOT NULL")
created_total=$(sql "SELECT sum((value->>'tasks_created')::bigint) FROM json_each('$sim_stats_sql'::json->'vendors')")
[ "$created_total" -eq "$sent_total" ] || failures+=("vendor-sim created $created_total tasks, the broker sent $sent_total")
per_vendor=$(sql "SELECT string_agg(vendor_id || ' ' || n, ', ' ORDER BY vendor_id) FROM
                  (SELECT vendor_id, count(*) AS n FROM assignments WHERE state = 'completed' GROUP BY 1) x")
other_states=$(sql "SELECT coalesce(string_agg(state || ' ' || n, ', '), 'none') FROM
                    (SELECT state, count(*) AS n FROM assignments WHERE state <> 'completed' GROUP BY 1) x")
callbacks=$(sql "SELECT sum((value->>'callbacks_sent')::bigint) || ' sent, ' || sum((value->>'callbacks_failed')::bigint)
                 || ' failed' FROM json_each('$sim_stats_sql'::json->'vendors')")
polled=$(grep -c 'results recovered by polling' "$work/broker.log" || true)
warnings=$(grep -c '"level":"warn"' "$work/broker.log" || true)

if [ "$pg_statements" = 1 ]; then
  echo
  echo "pg_stat_statements, top 12 by total time during the run:"
  psql -X -q "$database_url" -c "SELECT calls, round(total_exec_time::numeric, 0) AS total_ms,
      round(mean_exec_time::numeric, 2) AS mean_ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
      FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
fi

# --- report -------------------------------------------------------------------------------------
verdict=$(awk -v r="$items_rate" -v t="$target" 'BEGIN { print (r >= t) ? "PASS" : "FAIL" }')
check="PASS"
[ ${#failures[@]} -eq 0 ] || check="FAIL"
cat <<REPORT

pipeline: $total items in $jobs jobs of $per_job, redundancy $redundancy, $clients clients, $(nproc) cores
  vendors   : $([ "$mercor" = 1 ] && echo "scale, scale-small, surge, mercor" || echo "scale, scale-small, surge") at vendor-sim, zero latency; batches of $batch, $workers_per_vendor workers per vendor
  submitted : in ${submit_seconds} s   $(cat "$work/submit.json")
  finished  : every unit at its vendor after ${sent_seconds} s, every item labeled after ${labeled_seconds} s,
              every job completed after ${seconds} s (from the first submission)
  throughput: ${items_rate} completed items/s (target >= $target) $verdict, ${judgments_rate} judgments/s
  broker RSS: peak (VmHWM) $((hwm / 1024)) MB, at start $((rss_start / 1024)) MB
  CPU       : broker ${cpu_broker} s ($(share "$cpu_broker")), PostgreSQL ${cpu_pg} s ($(share "$cpu_pg")), vendor-sim ${cpu_sim} s ($(share "$cpu_sim")) of ${wall} s wall on $(nproc) cores
  judgments : $per_vendor; other assignment states: $other_states
  callbacks : $callbacks; poll recoveries logged: $polled; broker warnings: $warnings
  checks    : $check$( [ ${#failures[@]} -eq 0 ] && echo " (every item labeled by $redundancy distinct vendors; vendor-sim created exactly the $sent_total tasks sent)")
REPORT
for f in "${failures[@]}"; do echo "    FAIL: $f"; done

cat <<ROW

Markdown row for docs/benchmarks.md:
| $(date -u +%F) | \`$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)\` | $(nproc) | $total items, jobs of $per_job, $([ "$mercor" = 1 ] && echo 4 || echo 3) vendors, batch $batch, $workers_per_vendor workers/vendor | ${items_rate} items/s ($judgments_rate judgments/s) $verdict | ${seconds} s | $((hwm / 1024)) MB | broker ${cpu_broker} s / pg ${cpu_pg} s / sim ${cpu_sim} s | $check |
ROW

[ ${#failures[@]} -eq 0 ] || exit 1
[ "$strict" = 1 ] && [ "$verdict" = FAIL ] && exit 3
exit 0
