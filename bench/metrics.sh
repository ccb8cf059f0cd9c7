#!/usr/bin/env bash
# GET /metrics with 50 vendors and 1,000 jobs in flight: latency of the page against nginx serving
# the same bytes from a static file, in the same run. Target: the page renders in under 5 ms (p99).
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'TEXT'
usage: bench/metrics.sh [--strict] [--keep] [--help]

Starts a throwaway PostgreSQL cluster (scripts/pg, temp dir, free port), vendor-sim with VENDORS
Scale-style vendors whose work takes an hour (so every unit sent stays in flight), and a broker
(dispatch on, metrics.refresh_ms=1000) configured with those VENDORS vendors. Submits JOBS jobs of
ITEMS items (redundancy 2) with bench's ingest_client and waits until every job is running and the
planner has nothing left to plan (no job queued). Then:
  - checks the page: every job counted as running in labelbroker_jobs, VENDORS vendors in
    labelbroker_vendor_breaker_state, and `promtool check metrics` accepts it (when installed);
  - measures GET /metrics with one connection (wrk -t1 -c1 -dDURATION --latency, after a WARMUP
    run) against nginx serving the body the broker returned from a static file with the same
    Content-Type, and against the same broker's GET /healthz (what any request costs there while
    the engine runs), in ROUNDS alternating rounds (medians reported): p50 and p99 of each, and
    PASS/FAIL for the target broker p99 < 5 ms;
  - reports the body size, the number of samples, and how long the refresher's database reading
    takes (labelbroker_metrics_snapshot_duration_seconds).
The broker's dispatchers, poller and maintenance loop keep running during the measurement, as in
production. Prints a Markdown row for docs/benchmarks.md. The target is reported, not enforced,
unless --strict is given.

options:
  --strict   exit 3 when the target is missed
  --keep     keep the temp dir (configs, logs, wrk output, the page) and print its path
  --help     show this help

environment:
  VENDORS=50 JOBS=1000 ITEMS=4     fleet and load
  DURATION=10s WARMUP=2s ROUNDS=3  wrk settings (one connection, one thread)
  LABELBROKER_BUILD_DIR            build dir with bin/labelbroker, bin/vendor-sim, bin/ingest_client
                                   (default: build)

requires: wrk, nginx, curl, psql, PostgreSQL 15 (via scripts/pg); promtool optional.
exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 target missed (--strict only)
TEXT
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_options metrics "$@"

vendors=${VENDORS:-50}
jobs=${JOBS:-1000}
items=${ITEMS:-4}
duration=${DURATION:-10s}
warmup=${WARMUP:-2s}
rounds=${ROUNDS:-3}
target_ms=5
for v in vendors jobs items rounds; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "metrics: ${v^^} must be a positive integer" >&2; exit 2; }
done
[[ "$duration" =~ ^[1-9][0-9]*[smh]?$ ]] || { echo "metrics: DURATION must look like 10s" >&2; exit 2; }
[[ "$warmup" =~ ^[0-9]+[smh]?$ ]] || { echo "metrics: WARMUP must look like 2s (0 disables)" >&2; exit 2; }

die() { echo "metrics: $*" >&2; exit 1; }
log() { echo "metrics: $*" >&2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${LABELBROKER_BUILD_DIR:-build}
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"
broker_bin="$build_dir/bin/labelbroker"
sim_bin="$build_dir/bin/vendor-sim"
client_bin="$build_dir/bin/ingest_client"
pg_script="$repo_root/scripts/pg"
for tool in wrk nginx curl psql ss; do
  command -v "$tool" >/dev/null || die "'$tool' not found; run scripts/setup-deps"
done
for b in "$broker_bin" "$sim_bin" "$client_bin"; do
  [ -x "$b" ] || die "$b not found; build first (cmake --build $build_dir --target labelbroker vendor-sim ingest_client)"
done
promtool=$(command -v promtool || true)

work=$(mktemp -d "${TMPDIR:-/tmp}/labelbroker-bench-metrics.XXXXXX")
chmod 755 "$work"
broker_pid="" sim_pid="" nginx_pid="" pg_port=""
# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_process "$broker_pid"
  stop_process "$sim_pid"
  stop_process "$nginx_pid"
  [ -n "$pg_port" ] && destroy_cluster "$work/pg" "$pg_port" "$pg_script"
  if [ "$keep" = 1 ]; then log "kept temp dir $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- PostgreSQL ---------------------------------------------------------------------------------
pg_port=$(free_port)
log "starting throwaway PostgreSQL on port $pg_port"
LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port" "$pg_script" start >"$work/pg-start.log" 2>&1 ||
  { cat "$work/pg-start.log" >&2; die "scripts/pg start failed"; }
database_url=$(LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port" "$pg_script" url)
sql() { psql "$database_url" -X -q -t -A -v ON_ERROR_STOP=1 -c "$1"; }

# --- vendor-sim: VENDORS Scale-style vendors; work takes an hour, so units stay in flight --------
sim_port=$(free_port)
sim_url="http://127.0.0.1:$sim_port"
{
  echo "// Written by bench/metrics.sh: $vendors vendors whose work takes an hour."
  echo '{"seed": 7, "worker_threads": 4, "access_log": false, "vendors": ['
  for ((i = 1; i <= vendors; i++)); do
    [ "$i" -gt 1 ] && echo ','
    printf '{"id": "v%02d", "kind": "scale", "api_key": "bench-v%02d-key", "callback_secret": "bench-v%02d-callback-secret",' "$i" "$i" "$i"
    printf ' "prices_micros": {"categorization": 40000, "comparison": 60000, "textcollection": 80000},'
    printf ' "latency": {"fixed_ms": 3600000}, "queue_delay": {"fixed_ms": 0}, "capacity": {"max_in_flight": 1000000}}'
  done
  echo ']}'
} >"$work/scenario.json"
log "starting vendor-sim on $sim_url ($vendors vendors)"
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
{
  echo "// Written by bench/metrics.sh: dispatch on, $vendors vendors at vendor-sim."
  echo "{\"listen\": \"$listen\", \"log\": {\"level\": \"warn\", \"access_log\": false},"
  echo ' "metrics": {"refresh_ms": 1000},'
  echo ' "dispatch": {"enabled": true, "workers_per_vendor": 1, "idle_wait_ms": 200},'
  echo ' "vendors": ['
  for ((i = 1; i <= vendors; i++)); do
    [ "$i" -gt 1 ] && echo ','
    printf '{"id": "v%02d", "kind": "scale", "base_url": "%s/v%02d/v1", "api_key": "bench-v%02d-key",' "$i" "$sim_url" "$i" "$i"
    printf ' "callback_secret": "bench-v%02d-callback-secret",' "$i"
    printf ' "capabilities": {"task_types": ["classification"], "domains": ["general"], "expertise": ["general"], "max_batch_size": 100},'
    printf ' "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"}}'
  done
  echo ']}'
} >"$work/labelbroker.json"
broker_env=(env LABELBROKER_CONFIG="$work/labelbroker.json" LABELBROKER_DATABASE_URL="$database_url"
  LABELBROKER_LISTEN="$listen")
"${broker_env[@]}" "$broker_bin" check-config >"$work/check-config.log" 2>&1 ||
  { cat "$work/check-config.log" >&2; die "broker config rejected"; }
key=$(migrate_and_make_key)
log "starting labelbroker on $listen"
"${broker_env[@]}" "$broker_bin" serve >"$work/broker.stdout" 2>"$work/broker.log" &
broker_pid=$!
wait_ready "$listen" "$broker_pid" "$work/broker.log"

# --- load: JOBS jobs in flight -------------------------------------------------------------------
log "submitting $jobs jobs of $items items (redundancy 2)"
"$client_bin" --port "$broker_port" --key "$key" --clients 4 --items-per-job "$items" --total $((jobs * items)) \
  --redundancy 2 --expertise general --budget 1000.00 >"$work/submit.json" 2>"$work/submit.log" ||
  { cat "$work/submit.log" >&2; die "ingest_client failed"; }
log "waiting until every job is running and planned"
for i in $(seq 1 600); do
  read -r running queued < <(sql "SELECT count(*) FILTER (WHERE status = 'running'), count(*) FILTER (WHERE status = 'queued') FROM jobs" | tr '|' ' ')
  [ "$running" -ge "$jobs" ] && [ "$queued" -eq 0 ] && break
  kill -0 "$broker_pid" 2>/dev/null || { tail -20 "$work/broker.log" >&2; die "broker exited"; }
  [ "$i" -eq 600 ] && die "only $running of $jobs jobs running after 10 minutes"
  sleep 1
done
in_flight=$(sql "SELECT count(*) FROM assignments WHERE state IN ('queued', 'paused', 'sending', 'submitted')")
submitted=$(sql "SELECT count(*) FROM assignments WHERE state = 'submitted'")
# A reading taken after the jobs started (refresh_ms is 1000).
for _ in $(seq 1 100); do
  curl -fsS "http://$listen/metrics" -o "$work/metrics.txt" -D "$work/metrics.headers"
  grep -q "^labelbroker_jobs{status=\"running\"} $jobs\$" "$work/metrics.txt" && break
  sleep 0.2
done
grep -q "^labelbroker_jobs{status=\"running\"} $jobs\$" "$work/metrics.txt" ||
  die "/metrics does not show $jobs running jobs: $(grep '^labelbroker_jobs' "$work/metrics.txt" | tr '\n' ' ')"
vendor_series=$(grep -c '^labelbroker_vendor_breaker_state{.*state="closed"}' "$work/metrics.txt" || true)
[ "$vendor_series" -eq "$vendors" ] || die "/metrics lists $vendor_series vendors' breakers, expected $vendors"
promtool_result="not installed"
if [ -n "$promtool" ]; then
  if "$promtool" check metrics <"$work/metrics.txt" >"$work/promtool.log" 2>&1; then
    promtool_result="accepted"
    [ -s "$work/promtool.log" ] && promtool_result="accepted, with remarks (see $work/promtool.log)"
  else
    cat "$work/promtool.log" >&2
    die "promtool check metrics rejected the page"
  fi
fi
body_bytes=$(wc -c <"$work/metrics.txt")
samples=$(grep -vc '^#' "$work/metrics.txt")
families=$(grep -c '^# TYPE' "$work/metrics.txt")
snapshot_ms=$(awk '$1 == "labelbroker_metrics_snapshot_duration_seconds" { printf "%.1f", $2 * 1000 }' "$work/metrics.txt")
content_type=$(tr -d '\r' <"$work/metrics.headers" | awk -F': *' 'tolower($1) == "content-type" { print $2; exit }')
log "page: $body_bytes bytes, $samples samples in $families families; $in_flight assignments in flight ($submitted at vendors)"

# --- nginx: the same bytes from a static file ---------------------------------------------------
nginx_port=$(free_port)
mkdir -p "$work/nginx/www" "$work/nginx/logs" "$work/nginx/tmp"
cp "$work/metrics.txt" "$work/nginx/www/metrics"
nginx_prelude "$work/nginx/tmp"
cat >"$work/nginx/nginx.conf" <<CONF
# Written by bench/metrics.sh.
$nginx_user_line
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
$nginx_temp_paths
  access_log off;
  keepalive_timeout 75s;
  keepalive_requests 100000000;
  open_file_cache max=16 inactive=60s;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/nginx/www;
    location = /metrics { types { } default_type "$content_type"; }
  }
}
CONF
nginx_cmd=(nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log")
"${nginx_cmd[@]}" -t >"$work/nginx-test.log" 2>&1 || { cat "$work/nginx-test.log" >&2; die "nginx rejected its config"; }
"${nginx_cmd[@]}" >"$work/nginx/logs/stdout.log" 2>&1 &
nginx_pid=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$nginx_port/metrics" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o "$work/nginx-metrics.txt" "http://127.0.0.1:$nginx_port/metrics" || die "nginx did not answer"
cmp -s "$work/metrics.txt" "$work/nginx-metrics.txt" || die "nginx serves other bytes than the broker's page"

# --- measurement --------------------------------------------------------------------------------
# healthz: the same broker's /healthz (15 bytes from the I/O thread), to separate what the page
# costs from what any request costs on this machine while the engine runs.
declare -A urls=([nginx]="http://127.0.0.1:$nginx_port/metrics" [broker]="http://$listen/metrics"
  [healthz]="http://$listen/healthz")
declare -A p50s=([nginx]="" [broker]="" [healthz]="") p99s=([nginx]="" [broker]="" [healthz]="")
declare -A rps=([nginx]="" [broker]="" [healthz]="")
to_us() {
  awk -v v="$1" 'BEGIN {
    if (match(v, /^[0-9.]+/) == 0) { exit 1 }
    n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
    if (u == "us") f = 1; else if (u == "ms") f = 1000; else if (u == "s") f = 1000000; else exit 1
    printf "%.1f\n", n * f }'
}
run_wrk() { wrk -t1 -c1 -d"$2" --latency "${urls[$1]}" >"$3" 2>&1 || { cat "$3" >&2; die "wrk against $1 failed"; }; }
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
  if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
if [ "$warmup" != 0 ] && [ "$warmup" != 0s ]; then
  for name in nginx broker healthz; do run_wrk "$name" "$warmup" "$work/wrk-$name-warmup.txt"; done
fi
for ((round = 1; round <= rounds; round++)); do
  if ((round % 2)); then order=(nginx broker healthz); else order=(healthz broker nginx); fi
  for name in "${order[@]}"; do
    out="$work/wrk-$name-$round.txt"
    run_wrk "$name" "$duration" "$out"
    if grep -q 'Non-2xx' "$out"; then die "$name answered non-2xx during the run"; fi
    p50=$(to_us "$(awk '/Latency Distribution/ { d = 1 } d && $1 == "50%" { print $2; exit }' "$out")")
    p99=$(to_us "$(awk '/Latency Distribution/ { d = 1 } d && $1 == "99%" { print $2; exit }' "$out")")
    r=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50s[$name]+="$p50 "; p99s[$name]+="$p99 "; rps[$name]+="$r "
    printf '  round %d  %-6s  p50 %7.3f ms  p99 %7.3f ms  %8.1f req/s\n' "$round" "$name" \
      "$(awk -v u="$p50" 'BEGIN { print u / 1000 }')" "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" "$r" >&2
  done
done
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
nginx_p50=$(median <<<"${p50s[nginx]}"); nginx_p99=$(median <<<"${p99s[nginx]}")
broker_p50=$(median <<<"${p50s[broker]}"); broker_p99=$(median <<<"${p99s[broker]}")
broker_rps=$(median <<<"${rps[broker]}"); nginx_rps=$(median <<<"${rps[nginx]}")
healthz_p50=$(median <<<"${p50s[healthz]}"); healthz_p99=$(median <<<"${p99s[healthz]}")
healthz_rps=$(median <<<"${rps[healthz]}")
result=$(awk -v p="$broker_p99" -v t="$target_ms" 'BEGIN { print (p < t * 1000) ? "PASS" : "FAIL" }')
commit=$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git -C "$repo_root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit+="-dirty"
fi
cores=$(nproc 2>/dev/null || echo 1)

echo
echo "GET /metrics: $vendors vendors, $jobs jobs running, $in_flight assignments in flight ($submitted at vendors)"
echo "  page: $body_bytes bytes, $samples samples, $families families; promtool: $promtool_result"
echo "  database reading behind it (every refresh_ms, off the request path): $snapshot_ms ms"
echo "  wrk -t1 -c1 -d$duration --latency, median of $rounds rounds; machine: $cores cores"
echo
printf '  %-12s %12s %12s %8s %16s\n' "" "nginx" "broker" "ratio" "broker /healthz"
printf '  %-12s %9s ms %9s ms %8s %13s ms\n' "p50" "$(ms "$nginx_p50")" "$(ms "$broker_p50")" \
  "$(awk -v a="$broker_p50" -v b="$nginx_p50" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')" "$(ms "$healthz_p50")"
printf '  %-12s %9s ms %9s ms %8s %13s ms\n' "p99" "$(ms "$nginx_p99")" "$(ms "$broker_p99")" \
  "$(awk -v a="$broker_p99" -v b="$nginx_p99" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')" "$(ms "$healthz_p99")"
printf '  %-12s %12.0f %12.0f %8s %16.0f\n' "req/s" "$nginx_rps" "$broker_rps" "" "$healthz_rps"
echo
echo "  target: broker p99 < ${target_ms} ms: $result"
echo
echo "Markdown row for docs/benchmarks.md:"
# shellcheck disable=SC2016  # the backticks are Markdown
printf '| %s | `%s` | %s | %s | %s | %s B / %s | %s / %s ms | %s / %s ms | %s / %s ms | %s ms | %s |\n' \
  "$(date -u +%Y-%m-%d)" "$commit" "$cores" "$vendors" "$jobs ($in_flight units)" "$body_bytes" "$samples" \
  "$(ms "$nginx_p50")" "$(ms "$nginx_p99")" "$(ms "$healthz_p50")" "$(ms "$healthz_p99")" \
  "$(ms "$broker_p50")" "$(ms "$broker_p99")" "$snapshot_ms" "$result"
[ "$keep" = 1 ] && echo && echo "temp dir kept: $work"
if [ "$strict" = 1 ] && [ "$result" = FAIL ]; then exit 3; fi
exit 0
