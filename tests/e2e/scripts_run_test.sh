#!/usr/bin/env bash
# End-to-end test of scripts/run: starts it twice (private Postgres + broker) on free ports,
# checks /readyz and /healthz, stops it with SIGINT (once to its process group, as Ctrl-C
# does, once to the script's pid only), asserts exit status 0 and that nothing is left
# running, and that the second run reuses the first run's database.
# Needs the labelbroker binary in $LABELBROKER_BUILD_DIR/bin (default <repo>/build/bin).
# exit codes: 0 pass, 1 fail, 2 usage error
set -euo pipefail

NAME=scripts_run_test
case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "$NAME: unknown argument '$1'" >&2; exit 2 ;;
esac

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
build_dir=${LABELBROKER_BUILD_DIR:-$repo_root/build}
READY_TIMEOUT=120

say() { echo "$NAME: $*" >&2; }
fail() { echo "$NAME: FAIL: $*" >&2; exit 1; }

[ -x "$build_dir/bin/labelbroker" ] || fail "$build_dir/bin/labelbroker not found (set LABELBROKER_BUILD_DIR)"
for tool in curl pgrep psql; do
  command -v "$tool" >/dev/null 2>&1 || fail "required tool '$tool' is not installed"
done

port_used() {  # something listens on (or, with ss, any socket uses) local TCP port $1
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Htan "sport = :$1" 2>/dev/null)" ]
  else
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
  fi
}

port_listening() {
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
  else
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
  fi
}

free_port() {  # a random free port below the ephemeral range, not in the exclusion list
  local _ p
  for _ in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
    case " $* " in *" $p "*) continue ;; esac
    port_used "$p" || { echo "$p"; return 0; }
  done
  return 1
}

tmp_dir=$(mktemp -d "${TMPDIR:-/tmp}/labelbroker-e2e.XXXXXX")
pg_dir=$tmp_dir/pg
broker_port=$(free_port) || fail "no free port"
pg_port=$(free_port "$broker_port") || fail "no free port"
sim_port=$(free_port "$broker_port $pg_port") || fail "no free port"
sim_base=http://127.0.0.1:$sim_port
base=http://127.0.0.1:$broker_port
db_url=postgresql://labelbroker@127.0.0.1:$pg_port/labelbroker
run_pid=""
broker_pids=""
postmaster_pid=""

pg() { LABELBROKER_PG_DIR=$pg_dir LABELBROKER_PG_PORT=$pg_port "$repo_root/scripts/pg" "$@"; }

cleanup() {
  local status=$?
  trap '' INT TERM
  if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then
    say "cleaning up: stopping scripts/run (pid $run_pid)"
    kill -TERM -- "-$run_pid" 2>/dev/null || true
    for _ in $(seq 1 400); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
  fi
  for pid in ${broker_pids:-}; do   # in case scripts/run itself had to be killed
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q labelbroker; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  pg destroy >/dev/null 2>&1 || pg stop >/dev/null 2>&1 || true
  rm -rf -- "$tmp_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

http_code() { curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" 2>/dev/null || true; }

# start_run LOG: scripts/run in the background, in its own process group. Job control (set -m)
# gives it its own group and, unlike a plain '&', leaves SIGINT deliverable to it.
start_run() {
  local log=$1
  set -m
  env -u LABELBROKER_DATABASE_URL \
    LABELBROKER_SKIP_BUILD=1 \
    LABELBROKER_BUILD_DIR="$build_dir" \
    LABELBROKER_LISTEN="127.0.0.1:$broker_port" \
    LABELBROKER_PG_DIR="$pg_dir" \
    LABELBROKER_PG_PORT="$pg_port" \
    VENDOR_SIM_LISTEN="127.0.0.1:$sim_port" \
    LABELBROKER_DEMO_KEY_FILE="$tmp_dir/demo-api-key" \
    "$repo_root/scripts/run" >"$log" 2>&1 </dev/null &
  run_pid=$!
  set +m
  say "scripts/run started (pid $run_pid, broker port $broker_port, postgres port $pg_port)"
}

wait_ready() {
  local log=$1 deadline code
  deadline=$(( SECONDS + READY_TIMEOUT ))
  while :; do
    code=$(http_code "$base/readyz")
    # ready = the broker answers 200 and scripts/run has printed its URLs
    [ "$code" = 200 ] && grep -qF "readiness  $base/readyz" "$log" && return 0
    if ! kill -0 "$run_pid" 2>/dev/null; then
      local rc=0; wait "$run_pid" || rc=$?; run_pid=""
      cat "$log" >&2
      fail "scripts/run exited with status $rc before /readyz returned 200 (log above)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      cat "$log" >&2
      fail "not ready within ${READY_TIMEOUT}s: /readyz returned $code, or scripts/run did not print its URLs (log above)"
    fi
    sleep 0.5
  done
}

# stop_run TARGET LOG: SIGINT to the process group ("group") or the script only ("pid").
stop_run() {
  local target=$1 log=$2 rc=0
  if [ "$target" = group ]; then
    kill -INT -- "-$run_pid"
  else
    kill -INT "$run_pid"
  fi
  for _ in $(seq 1 900); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$run_pid" 2>/dev/null; then
    cat "$log" >&2
    fail "scripts/run still running 90s after SIGINT ($target)"
  fi
  wait "$run_pid" || rc=$?
  run_pid=""
  if [ $rc -ne 0 ]; then
    cat "$log" >&2
    fail "scripts/run exited with status $rc after SIGINT ($target), expected 0 (log above)"
  fi
}

alive() {  # a process that exists and is not a zombie
  local state
  state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

leftovers() {  # prints a description of what is still running, if anything
  local pid pids
  for pid in $broker_pids $postmaster_pid; do
    if alive "$pid"; then
      echo "process $pid ($(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline)) is still running"; return
    fi
  done
  pids=$(pgrep -f -- "postgres.*(-D $pg_dir|-p $pg_port( |\$))" || true)
  [ -z "$pids" ] || { echo "postgres processes left behind: $pids"; return; }
  ! port_listening "$pg_port" || { echo "something still listens on postgres port $pg_port"; return; }
  ! port_listening "$broker_port" || { echo "something still listens on broker port $broker_port"; return; }
  ! port_listening "$sim_port" || { echo "something still listens on vendor-sim port $sim_port"; return; }
  pids=$(pgrep -f -- "$build_dir/bin/labelbroker" || true)
  for pid in $pids; do
    if tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qx "LABELBROKER_LISTEN=127.0.0.1:$broker_port"; then
      echo "labelbroker process $pid for port $broker_port left behind"; return
    fi
  done
  if pg status >/dev/null 2>&1; then echo "scripts/pg status says the cluster is still running"; fi
}

assert_nothing_left() {
  # scripts/run has returned, so everything must be gone; allow a moment for processes
  # that already announced their exit (e.g. the postmaster after removing its pid file).
  local what=$1 left
  for _ in $(seq 1 50); do
    left=$(leftovers)
    [ -n "$left" ] || return 0
    sleep 0.1
  done
  fail "$what: $left"
}

record_pids() {
  postmaster_pid=$(pg status 2>/dev/null | sed -n 's/.*running (pid \([0-9]*\),.*/\1/p')
  [ -n "$postmaster_pid" ] || fail "scripts/pg status does not report a running cluster while scripts/run is up"
  broker_pids=$(pgrep -P "$run_pid" || true)
  [ -n "$broker_pids" ] || fail "scripts/run has no child processes while ready"
}

# --- first run: fresh cluster ------------------------------------------------
log1=$tmp_dir/run1.log
start_run "$log1"
wait_ready "$log1"
code=$(http_code "$base/healthz")
[ "$code" = 200 ] || { cat "$log1" >&2; fail "/healthz returned $code, expected 200"; }
code=$(http_code "$sim_base/healthz")
[ "$code" = 200 ] || { cat "$log1" >&2; fail "vendor-sim /healthz returned $code, expected 200"; }
# The broker's vendors are the simulator's, at the address scripts/run gave it.
[ -s "$tmp_dir/demo-api-key" ] || fail "scripts/run did not write the demo API key"
demo_key=$(head -n 1 "$tmp_dir/demo-api-key")
grep -qF "API key    $demo_key" "$log1" || fail "scripts/run did not print the demo API key"
code=$(http_code "$base/v1/vendors")
[ "$code" = 401 ] || fail "GET /v1/vendors without a key returned $code, expected 401"
vendors=$(curl --noproxy '*' -s --max-time 5 -H "Authorization: Bearer $demo_key" "$base/v1/vendors")
for id in scale scale-small surge mercor; do
  grep -q "\"id\":\"$id\"" <<<"$vendors" || fail "GET /v1/vendors does not list $id: $vendors"
done
grep -qF "$sim_base/scale/v1" <<<"$vendors" || fail "vendors do not point at the vendor-sim this run started: $vendors"
psql -X -q -v ON_ERROR_STOP=1 "$db_url" -c "CREATE TABLE e2e_marker (note text); INSERT INTO e2e_marker VALUES ('first run')" \
  || fail "could not create the marker table through $db_url"
record_pids
say "run 1 ready; sending SIGINT to the process group"
stop_run group "$log1"
assert_nothing_left "after run 1"
say "run 1 stopped cleanly"

# --- second run: same directory, data must survive ---------------------------
log2=$tmp_dir/run2.log
start_run "$log2"
wait_ready "$log2"
code=$(http_code "$base/healthz")
[ "$code" = 200 ] || { cat "$log2" >&2; fail "/healthz returned $code on the second run"; }
note=$(psql -X -q -tA "$db_url" -c "SELECT note FROM e2e_marker" 2>&1) || fail "marker table missing on the second run: $note"
[ "$note" = "first run" ] || fail "marker table content changed on the second run: '$note'"
[ "$(head -n 1 "$tmp_dir/demo-api-key")" = "$demo_key" ] || fail "the second run replaced a demo API key that still works"
record_pids
say "run 2 ready and reused the data; sending SIGINT to the script's pid only"
stop_run pid "$log2"
assert_nothing_left "after run 2"

say "PASS"
