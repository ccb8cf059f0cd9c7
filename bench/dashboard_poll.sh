#!/usr/bin/env bash
# What an open dashboard costs the broker: CPU time of the broker process (and of PostgreSQL)
# while DASHBOARDS simulated dashboards poll it the way web/dashboard/dashboard.js does, against
# the same broker idle for the same time (its background loops run either way).
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'TEXT'
usage: bench/dashboard_poll.sh [--strict] [--keep] [--help]

Starts a throwaway PostgreSQL cluster, vendor-sim (config/sim/default.json) and a broker whose
vendors point at it (config/local.json; quality.scores_cache_ms=0, so every poll recomputes its
views from the database: the worst case for the broker). Submits JOBS jobs of ITEMS items (with
gold, redundancy 2, domains general and medical) with brokerctl and waits until the scores show
them. Then, with a viewer key:
  1. idle: the broker's and PostgreSQL's CPU time (/proc/PID/stat utime+stime) over DURATION_S s;
  2. polling: DASHBOARDS pollers, each loading the page (/dashboard and its files) and then, every
     INTERVAL s with a random phase, GET /v1/vendors/scores?window=7d and
     /v1/concentration?window=7d with If-None-Match of the last ETag (what dashboard.js does),
     over DURATION_S s.
Reports the CPU each open dashboard adds, as a share of one core: (polling - idle) / DASHBOARDS,
against the target < 1% of a core per dashboard at a 5 s interval; and the 304 share. Prints a
Markdown row for docs/benchmarks.md. Targets are reported, not enforced, unless --strict.

options:
  --strict   exit 3 when the target is missed
  --keep     keep the temp dir (configs, logs) and print its path
  --help     show this help

environment:
  DASHBOARDS=50 INTERVAL=5 DURATION_S=60 JOBS=4 ITEMS=500
  LABELBROKER_BUILD_DIR    build dir holding bin/labelbroker, bin/vendor-sim, bin/brokerctl (default: build)

requires: curl, ss, PostgreSQL 15 (via scripts/pg), the three binaries.
exit codes: 0 ran, 1 failure, 2 usage error, 3 target missed (--strict only)
TEXT
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_options dashboard_poll "$@"

die() { echo "dashboard_poll: $*" >&2; exit 1; }
say() { echo "dashboard_poll: $*" >&2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
build_dir=${LABELBROKER_BUILD_DIR:-$repo_root/build}
broker_bin=$build_dir/bin/labelbroker
sim_bin=$build_dir/bin/vendor-sim
ctl_bin=$build_dir/bin/brokerctl
for b in "$broker_bin" "$sim_bin" "$ctl_bin"; do [ -x "$b" ] || die "$b not built (cmake --build $build_dir)"; done
dashboards=${DASHBOARDS:-50}
interval=${INTERVAL:-5}
seconds=${DURATION_S:-60}
jobs=${JOBS:-4}
items=${ITEMS:-500}

work=$(mktemp -d "${TMPDIR:-/tmp}/labelbroker-dashpoll.XXXXXX")
chmod 0755 "$work"
pg_port=$(free_port)
sim_pid="" broker_pid="" poller_pids=()
cleanup() {
  local p
  for p in "${poller_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_process "$broker_pid"
  stop_process "$sim_pid"
  destroy_cluster "$work/pg" "$pg_port" "$repo_root/scripts/pg"
  if [ $keep -eq 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# CPU time of a process and its children that are alive now, in clock ticks.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    # Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
  done
  echo "$total"
}
postgres_pids() {
  local main
  main=$(head -1 "$work/pg/data/postmaster.pid" 2>/dev/null) || return 0
  echo "$main" $(pgrep -P "$main" 2>/dev/null || true)
}

say "starting PostgreSQL, vendor-sim and the broker in $work"
LABELBROKER_PG_DIR=$work/pg LABELBROKER_PG_PORT=$pg_port "$repo_root/scripts/pg" start >/dev/null || die "scripts/pg start failed"
db_url=$(LABELBROKER_PG_DIR=$work/pg LABELBROKER_PG_PORT=$pg_port "$repo_root/scripts/pg" url)
sim_port=$(free_port)
"$sim_bin" --listen "127.0.0.1:$sim_port" --scenario "$repo_root/config/sim/default.json" >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$sim_port/healthz" 2>/dev/null && break; sleep 0.1; done
broker_port=$(free_port)
base=http://127.0.0.1:$broker_port
sed -e "s#http://127.0.0.1:9100#http://127.0.0.1:$sim_port#g" \
    -e '0,/^{$/s//{ "quality": {"scores_cache_ms": 0}, "log": {"access_log": false},/' \
    "$repo_root/config/local.json" >"$work/broker.json"
broker_env=(env "LABELBROKER_CONFIG=$work/broker.json" "LABELBROKER_DATABASE_URL=$db_url"
            "LABELBROKER_LISTEN=127.0.0.1:$broker_port")
submit_key=$(migrate_and_make_key)
viewer_key=$("${broker_env[@]}" "$broker_bin" admin create-key --team bench --role viewer 2>>"$work/admin.log" | tail -n 1)
"${broker_env[@]}" "$broker_bin" serve >"$work/broker.log" 2>&1 &
broker_pid=$!
wait_ready "127.0.0.1:$broker_port" "$broker_pid" "$work/broker.log"

say "submitting $jobs jobs of $items items"
for j in $(seq 1 "$jobs"); do
  domain=general
  [ $((j % 2)) -eq 0 ] && domain=medical
  {
    printf '{"name":"dash-%d","task_type":"classification","domain":"%s","labels":["urgent","routine","not_medical"],' "$j" "$domain"
    printf '"redundancy":2,"budget_usd":"1000.00","deadline":"2099-01-01T00:00:00Z","items":['
    for i in $(seq 1 "$items"); do
      [ "$i" -gt 1 ] && printf ','
      printf '{"id":"i-%d","data":{"text":"note %d"}}' "$i" "$i"
    done
    printf '],"gold":['
    for g in $(seq 1 20); do
      [ "$g" -gt 1 ] && printf ','
      printf '{"id":"g-%d","data":{"text":"gold %d"},"answer":"routine"}' "$g" "$g"
    done
    printf ']}'
  } >"$work/job-$j.json"
  LABELBROKER_URL=$base LABELBROKER_API_KEY=$submit_key "$ctl_bin" jobs submit "$work/job-$j.json" --wait \
    >>"$work/submit.log" 2>&1 || die "job $j did not finish (see $work/submit.log)"
done
for _ in $(seq 1 300); do
  curl -fsS -H "Authorization: Bearer $viewer_key" "$base/v1/vendors/scores?window=7d" 2>/dev/null |
    grep -q '"judgments":[1-9]' && break
  sleep 0.2
done
scores_bytes=$(curl -fsS -H "Authorization: Bearer $viewer_key" "$base/v1/vendors/scores?window=7d" | wc -c)
concentration_bytes=$(curl -fsS -H "Authorization: Bearer $viewer_key" "$base/v1/concentration?window=7d" | wc -c)
sleep 2  # let the last roll-ups and webhooks settle

measure() {  # $1: label; prints "broker_ticks postgres_ticks"
  local b0 p0 b1 p1
  b0=$(cpu_ticks "$broker_pid"); p0=$(cpu_ticks $(postgres_pids))
  sleep "$seconds"
  b1=$(cpu_ticks "$broker_pid"); p1=$(cpu_ticks $(postgres_pids))
  echo "$((b1 - b0)) $((p1 - p0))"
}

say "idle: ${seconds} s"
read -r idle_broker idle_pg < <(measure idle)

poller() {  # one dashboard: load the page, then poll both views with If-None-Match
  local n=$1 etags=() urls=("$base/v1/vendors/scores?window=7d" "$base/v1/concentration?window=7d") i code etag
  for f in "" /dashboard.css /dashboard.js; do curl -fsS -o /dev/null "$base/dashboard$f" || true; done
  etags=("" "")
  sleep "$(awk -v s="$RANDOM" -v i="$interval" 'BEGIN { printf "%.3f", (s % 1000) / 1000 * i }')"
  while true; do
    for i in 0 1; do
      code=$(curl -sS -o /dev/null -D "$work/h-$n-$i" -w '%{http_code}' -H "Authorization: Bearer $viewer_key" \
             ${etags[$i]:+-H "If-None-Match: ${etags[$i]}"} "${urls[$i]}" 2>/dev/null || echo 000)
      etag=$(awk 'tolower($1) == "etag:" { sub(/\r$/, "", $2); print $2 }' "$work/h-$n-$i")
      [ -n "$etag" ] && etags[$i]=$etag
      echo "$code" >>"$work/codes-$n"
    done
    sleep "$interval"
  done
}

say "polling: $dashboards dashboards every ${interval} s for ${seconds} s"
for n in $(seq 1 "$dashboards"); do poller "$n" & poller_pids+=($!); done
sleep 2  # page loads
read -r busy_broker busy_pg < <(measure polling)
for p in "${poller_pids[@]}"; do kill "$p" 2>/dev/null || true; done
poller_pids=()

hz=$(getconf CLK_TCK)
cat "$work"/codes-* >"$work/codes"
requests=$(wc -l <"$work/codes")
not_modified=$(grep -c '^304$' "$work/codes" || true)
errors=$(grep -vcE '^(200|304)$' "$work/codes" || true)
[ "$errors" -eq 0 ] || die "$errors polls failed (codes in $work/codes; run with --keep)"
read -r per_dash per_dash_pg idle_pct busy_pct <<<"$(awk -v ib="$idle_broker" -v bb="$busy_broker" \
  -v ip="$idle_pg" -v bp="$busy_pg" -v n="$dashboards" -v s="$seconds" -v hz="$hz" 'BEGIN {
    printf "%.3f %.3f %.2f %.2f", (bb - ib) / hz / s / n * 100, (bp - ip) / hz / s / n * 100,
                                  ib / hz / s * 100, bb / hz / s * 100 }')"
pass=$(awk -v v="$per_dash" 'BEGIN { print (v < 1.0) ? "PASS" : "FAIL" }')

cat <<REPORT

dashboard polling ($dashboards dashboards, every ${interval} s, ${seconds} s; scores cache off)
  view sizes           scores ${scores_bytes} B, concentration ${concentration_bytes} B
  polls                $requests ($not_modified answered 304)
  broker CPU           idle ${idle_pct}% of a core, polling ${busy_pct}%
  per open dashboard   broker ${per_dash}% of a core (target < 1%): $pass; PostgreSQL ${per_dash_pg}%

| dashboard polling | $dashboards dashboards × 2 views every ${interval} s, scores cache off | broker +${per_dash}% of a core per dashboard (PostgreSQL +${per_dash_pg}%) | < 1% | $pass |
REPORT

if [ "$strict" -eq 1 ] && [ "$pass" != PASS ]; then exit 3; fi
