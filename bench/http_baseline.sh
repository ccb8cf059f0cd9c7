#!/usr/bin/env bash
# HTTP baseline: labelbroker GET /healthz against nginx serving the same bytes from a static file.
#
# Both servers run on this machine in the same run, with one process and one I/O thread each,
# keep-alive, one access-log line written to a file per request, and the same wrk settings.
# Rounds alternate between the two servers; the median of the rounds is reported.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'TEXT'
usage: bench/http_baseline.sh [--strict] [--keep] [--help]

Measures labelbroker `GET /healthz` against nginx serving a static file with the same body
bytes and Content-Type, in the same run, on the same machine, and prints:
  - requests/sec and p99 latency of each server (median of ROUNDS alternating rounds),
  - the broker/nginx ratios and PASS/FAIL against the targets
      broker req/s >= 0.6 x nginx req/s,   broker p99 <= 2 x nginx p99,
  - a Markdown row to paste into docs/benchmarks.md.

Fairness: single process and single I/O thread each (broker `http.io_threads: 1`, nginx
`worker_processes 1`), keep-alive, both write one access-log line per request to a file
(unbuffered), same wrk command (`wrk -t1 -cCONNECTIONS -dDURATION --latency`), a warm-up run for
each before measuring, servers pinned to CPU 0 and wrk to CPU 1 when there are >= 2 cores.

It starts a throwaway PostgreSQL cluster (scripts/pg, temp dir, free port), a broker and an
nginx on free ports, and removes all of it on exit.

options:
  --strict   exit 3 when a target is missed (default: report only, exit 0; the bench is
             informational and shared machines are noisy)
  --keep     keep the temp dir (configs, logs, wrk output) and print its path
  --help     show this help

environment:
  CONNECTIONS=64         wrk connections (-c)
  DURATION=10s           wrk duration per measured run (-d)
  WARMUP=2s              wrk duration of the warm-up run per server
  ROUNDS=3               measured runs per server, alternating; median is reported
  PIN=auto               auto|1|0: pin servers to CPU 0 and wrk to CPU 1 (auto: when >= 2 cores)
  LABELBROKER_BUILD_DIR  build dir holding bin/labelbroker (default: build)

requires: wrk, nginx, curl, PostgreSQL 15 (via scripts/pg), build/bin/labelbroker.
exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 target missed (--strict only)
TEXT
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # nginx_prelude and more (this script keeps its own free_port, defined below)
bench_options http_baseline "$@"

connections=${CONNECTIONS:-64}
duration=${DURATION:-10s}
warmup=${WARMUP:-2s}
rounds=${ROUNDS:-3}
pin=${PIN:-auto}

die() { echo "http_baseline: $*" >&2; exit 1; }
usage_error() { echo "http_baseline: $*" >&2; exit 2; }
log() { echo "http_baseline: $*" >&2; }

[[ "$connections" =~ ^[1-9][0-9]*$ ]] || usage_error "CONNECTIONS must be a positive integer, got '$connections'"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || usage_error "ROUNDS must be a positive integer, got '$rounds'"
[[ "$duration" =~ ^[1-9][0-9]*[smh]?$ ]] || usage_error "DURATION must look like 10s, 1m, got '$duration'"
[[ "$warmup" =~ ^[0-9]+[smh]?$ ]] || usage_error "WARMUP must look like 2s (0 disables), got '$warmup'"
case "$pin" in auto|0|1) ;; *) usage_error "PIN must be auto, 0 or 1, got '$pin'" ;; esac

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${LABELBROKER_BUILD_DIR:-build}
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"
broker_bin="$build_dir/bin/labelbroker"
pg_script="$repo_root/scripts/pg"

for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null || die "'$tool' not found; run scripts/setup-deps"
done
[ -x "$broker_bin" ] || die "broker binary not found at $broker_bin; build first (scripts/run or scripts/test build it)"
[ -x "$pg_script" ] || die "scripts/pg not found or not executable at $pg_script"

cores=$(nproc 2>/dev/null || echo 1)
server_cpu=()
client_cpu=()
if [ "$pin" = 1 ] || { [ "$pin" = auto ] && [ "$cores" -ge 2 ]; }; then
  if command -v taskset >/dev/null && [ "$cores" -ge 2 ]; then
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
  elif [ "$pin" = 1 ]; then
    die "PIN=1 needs taskset and at least 2 cores"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Temp dir and cleanup. Everything this script starts is recorded here and stopped on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/labelbroker-bench.XXXXXX")
# The cluster may run as another user when we are root (scripts/pg decides); let it traverse.
chmod 755 "$work"
broker_pid=""
nginx_pid=""
pg_started=0
pg_port=""
broker_port=""
nginx_port=""

# shellcheck disable=SC2317  # stop_pid and cleanup run from the EXIT trap
stop_pid() {
  local pid=$1 name=$2 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) did not stop within 10s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$broker_pid" broker
  stop_pid "$nginx_pid" nginx
  if [ "$pg_started" = 1 ]; then
    # destroy also removes the data scripts/pg may keep outside the temp dir when run as root.
    if ! LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port" "$pg_script" destroy >/dev/null 2>&1; then
      LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port" "$pg_script" stop >/dev/null 2>&1 ||
        log "scripts/pg stop failed; cluster dir was $work/pg"
    fi
  fi
  if [ "$keep" = 1 ]; then
    log "kept temp dir $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() {
  local file=$1
  [ -s "$file" ] || return 0
  echo "---- last lines of $file ----" >&2
  tail -n 20 "$file" >&2
  echo "----" >&2
}

# Sets variable $1 to a port nobody uses right now (best effort; the server binds it a moment
# later). Not a subshell, so ports handed out earlier in this run are remembered.
taken_ports=" "
free_port() {
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + RANDOM % 30000))
    case "$taken_ports" in *" $port "*) continue ;; esac
    if ! ss -Htan "( sport = :$port )" 2>/dev/null | grep -q .; then
      taken_ports+="$port "
      printf -v "$1" '%s' "$port"
      return 0
    fi
  done
  die "could not find a free TCP port"
}
command -v ss >/dev/null || die "'ss' (iproute2) not found"

wait_http_ok() { # url timeout_s pid name logfile
  local url=$1 timeout=$2 pid=$3 name=$4 logfile=$5 i
  for ((i = 0; i < timeout * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log "$logfile"
      die "$name exited before $url answered"
    fi
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  show_log "$logfile"
  die "$name did not answer 200 on $url within ${timeout}s"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster in the temp dir.
free_port pg_port
log "starting throwaway PostgreSQL on port $pg_port"
if ! LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port" "$pg_script" start >"$work/pg-start.log" 2>&1; then
  pg_started=1 # a half-started cluster still needs stopping
  show_log "$work/pg-start.log"
  die "scripts/pg start failed"
fi
pg_started=1
database_url=$(LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port" "$pg_script" url) ||
  die "scripts/pg url failed"
[ -n "$database_url" ] || die "scripts/pg url printed nothing"

# ---------------------------------------------------------------------------------------------
# Broker: one I/O thread, access log on (stderr redirected to a file).
free_port broker_port
broker_listen="127.0.0.1:$broker_port"
cat >"$work/labelbroker.json" <<JSON
// Written by bench/http_baseline.sh. One I/O thread to match nginx worker_processes 1.
// The database URL comes from LABELBROKER_DATABASE_URL.
{
  "listen": "$broker_listen",
  "database": {"pool_size": 2},
  "http": {"io_threads": 1},
  "log": {"level": "info", "access_log": true}
}
JSON
broker_env=(env LABELBROKER_CONFIG="$work/labelbroker.json"
  LABELBROKER_DATABASE_URL="$database_url" LABELBROKER_LISTEN="$broker_listen")

log "applying migrations"
if ! "${broker_env[@]}" "$broker_bin" migrate >"$work/migrate.log" 2>&1; then
  show_log "$work/migrate.log"
  die "labelbroker migrate failed"
fi

log "starting labelbroker on $broker_listen"
"${broker_env[@]}" "${server_cpu[@]}" "$broker_bin" serve >"$work/broker.stdout" 2>"$work/broker-access.log" &
broker_pid=$!
wait_http_ok "http://$broker_listen/readyz" 30 "$broker_pid" labelbroker "$work/broker-access.log"

# The reference serves exactly what the broker serves: same body bytes, same Content-Type.
curl -fsS -o "$work/healthz.body" -D "$work/healthz.headers" "http://$broker_listen/healthz" ||
  die "GET /healthz on the broker failed"
content_type=$(tr -d '\r' <"$work/healthz.headers" | awk -F': *' 'tolower($1) == "content-type" { print $2; exit }')
[ -n "$content_type" ] || die "broker /healthz has no Content-Type"
[[ "$content_type" =~ ^[[:print:]]+$ && "$content_type" != *'"'* && "$content_type" != *\\* ]] ||
  die "unexpected Content-Type '$content_type'"

# ---------------------------------------------------------------------------------------------
# nginx: one worker, its own prefix, config, pid, logs and temp paths in the temp dir.
free_port nginx_port
mkdir -p "$work/nginx/www" "$work/nginx/logs" "$work/nginx/tmp"
cp "$work/healthz.body" "$work/nginx/www/healthz"
nginx_prelude "$work/nginx/tmp"
temp_paths=$nginx_temp_paths
user_line=$nginx_user_line
cat >"$work/nginx/nginx.conf" <<CONF
# Written by bench/http_baseline.sh.
$user_line
daemon off;
master_process on;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;

events {
  worker_connections 4096;
}

http {
$temp_paths
  # One JSON line per request, written unbuffered, like the broker's access log.
  log_format bench escape=json '{"ts":"\$time_iso8601","method":"\$request_method",'
                               '"path":"\$uri","status":\$status,"bytes":\$body_bytes_sent,'
                               '"duration_ms":\$request_time}';
  access_log $work/nginx/logs/access.log bench;

  # Keep-alive like the broker: 75s idle timeout, no per-connection request cap.
  keepalive_timeout 75s;
  keepalive_requests 100000000;
  server_tokens off;
  # Tuned for a tiny file so the reference is strong: the descriptor stays open between
  # requests (the broker answers from memory), and sendfile is off because for a 15-byte body it
  # costs an extra syscall per response (header writev + sendfile) and measured ~25% slower.
  open_file_cache max=16 inactive=60s;
  open_file_cache_valid 60s;
  sendfile off;

  server {
    listen 127.0.0.1:$nginx_port;
    root $work/nginx/www;
    location = /healthz {
      types { }
      default_type "$content_type";
    }
  }
}
CONF
nginx_cmd=(nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log")
"${nginx_cmd[@]}" -t >"$work/nginx-test.log" 2>&1 || { cat "$work/nginx-test.log" >&2; die "nginx rejected its config"; }
log "starting nginx on 127.0.0.1:$nginx_port"
"${server_cpu[@]}" "${nginx_cmd[@]}" >"$work/nginx/logs/stdout.log" 2>&1 &
nginx_pid=$!
wait_http_ok "http://127.0.0.1:$nginx_port/healthz" 10 "$nginx_pid" nginx "$work/nginx/logs/error.log"

# Check that both answer with the same body and Content-Type before measuring.
curl -fsS -o "$work/nginx-healthz.body" -D "$work/nginx-healthz.headers" "http://127.0.0.1:$nginx_port/healthz"
cmp -s "$work/healthz.body" "$work/nginx-healthz.body" || die "nginx body differs from the broker's"
nginx_ct=$(tr -d '\r' <"$work/nginx-healthz.headers" | awk -F': *' 'tolower($1) == "content-type" { print $2; exit }')
[ "$nginx_ct" = "$content_type" ] || die "Content-Type differs: nginx '$nginx_ct', broker '$content_type'"
header_bytes() { tr -d '\r' <"$1" | awk 'NF { n += length($0) + 2 } END { print n + 2 }'; }

# ---------------------------------------------------------------------------------------------
# Measurement.
declare -A urls=([nginx]="http://127.0.0.1:$nginx_port/healthz" [broker]="http://$broker_listen/healthz")
declare -A pids=([nginx]="$nginx_pid" [broker]="$broker_pid")
declare -A rps_list=([nginx]="" [broker]="")
declare -A cpu_list=([nginx]="" [broker]="")
clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)

# CPU time (utime + stime, in clock ticks) of a server: the process (all threads) and its
# direct children (nginx's worker). Tells whether a server was saturated during a run.
cpu_ticks() {
  local pid total=0 t
  for pid in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || continue
    total=$((total + t))
  done
  echo "$total"
}
declare -A p99_list=([nginx]="" [broker]="")

# Latency like "812.00us", "1.23ms", "2.00s", "1.00m" -> microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    if (match(v, /^[0-9.]+/) == 0) { exit 1 }
    n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
    if (u == "us") f = 1; else if (u == "ms") f = 1000; else if (u == "s") f = 1000000;
    else if (u == "m") f = 60000000; else if (u == "h") f = 3600000000; else exit 1
    printf "%.1f\n", n * f
  }'
}

run_wrk() { # name duration outfile
  "${client_cpu[@]}" wrk -t1 -c"$connections" -d"$2" --latency "${urls[$1]}" >"$3" 2>&1 ||
    { cat "$3" >&2; die "wrk against $1 failed"; }
}

measure() { # name round
  local name=$1 round=$2 out rps p99 errors non2xx t0 t1 c0 c1 cpu
  out="$work/wrk-$name-$round.txt"
  c0=$(cpu_ticks "${pids[$name]}")
  t0=$(date +%s%N)
  run_wrk "$name" "$duration" "$out"
  t1=$(date +%s%N)
  c1=$(cpu_ticks "${pids[$name]}")
  cpu=$(awk -v c="$((c1 - c0))" -v hz="$clk_tck" -v ns="$((t1 - t0))" \
    'BEGIN { printf "%.0f", (ns > 0) ? 100 * (c / hz) / (ns / 1e9) : 0 }')
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  p99=$(awk '/Latency Distribution/ { d = 1 } d && $1 == "99%" { print $2; exit }' "$out")
  if [ -z "$rps" ] || [ -z "$p99" ]; then
    cat "$out" >&2
    die "could not parse wrk output for $name"
  fi
  p99=$(to_us "$p99") || { cat "$out" >&2; die "unknown latency unit in wrk output for $name"; }
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
  errors=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")
  if [ -n "$non2xx" ] || [ "${errors:-0}" != 0 ]; then
    log "warning: $name round $round had non-2xx responses (${non2xx:-0}) or socket errors (${errors:-0})"
  fi
  rps_list[$name]+="$rps "
  p99_list[$name]+="$p99 "
  cpu_list[$name]+="$cpu "
  printf '  round %d  %-6s  %12.1f req/s  p99 %9.3f ms  server CPU %3d%%\n' "$round" "$name" "$rps" \
    "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" "$cpu" >&2
}

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
  if (NR == 0) exit 1
  if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

pinning="none"
[ ${#server_cpu[@]} -gt 0 ] && pinning="servers on CPU 0, wrk on CPU 1"
log "wrk -t1 -c$connections -d$duration --latency; warm-up $warmup; $rounds rounds; pinning: $pinning"
if [ "$warmup" != 0 ] && [ "$warmup" != 0s ]; then
  for name in nginx broker; do
    log "warm-up $name ($warmup)"
    run_wrk "$name" "$warmup" "$work/wrk-$name-warmup.txt"
  done
fi
for ((round = 1; round <= rounds; round++)); do
  # Alternate who goes first so slow drift (thermal, neighbours) does not favour one side.
  if ((round % 2)); then order=(nginx broker); else order=(broker nginx); fi
  for name in "${order[@]}"; do
    measure "$name" "$round"
  done
done

nginx_rps=$(median <<<"${rps_list[nginx]}")
broker_rps=$(median <<<"${rps_list[broker]}")
nginx_p99=$(median <<<"${p99_list[nginx]}")
broker_p99=$(median <<<"${p99_list[broker]}")
nginx_cpu=$(median <<<"${cpu_list[nginx]}")
broker_cpu=$(median <<<"${cpu_list[broker]}")

read -r rps_ratio p99_ratio rps_ok p99_ok < <(awk -v nr="$nginx_rps" -v br="$broker_rps" \
  -v np="$nginx_p99" -v bp="$broker_p99" 'BEGIN {
    rr = (nr > 0) ? br / nr : 0; pr = (np > 0) ? bp / np : 999
    printf "%.2f %.2f %s %s\n", rr, pr, (rr >= 0.6) ? "PASS" : "FAIL", (pr <= 2.0) ? "PASS" : "FAIL" }')
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
round_int() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }

overall=PASS
[ "$rps_ok" = PASS ] && [ "$p99_ok" = PASS ] || overall=FAIL

commit=$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git -C "$repo_root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit+="-dirty"
fi
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)

echo
echo "HTTP baseline: GET /healthz, wrk -t1 -c$connections -d$duration --latency, median of $rounds rounds"
echo "  body $(wc -c <"$work/healthz.body") bytes, Content-Type $content_type;" \
  "response headers: nginx $(header_bytes "$work/nginx-healthz.headers") bytes," \
  "broker $(header_bytes "$work/healthz.headers") bytes"
echo "  machine: $cores cores${cpu_model:+ ($cpu_model)}; pinning: $pinning"
echo
printf '  %-14s %14s %14s %10s %8s %s\n' metric nginx broker ratio target result
printf '  %-14s %14s %14s %10s %8s %s\n' "requests/sec" "$(round_int "$nginx_rps")" "$(round_int "$broker_rps")" \
  "$rps_ratio" ">= 0.60" "$rps_ok"
printf '  %-14s %14s %14s %10s %8s %s\n' "p99 latency" "$(ms "$nginx_p99") ms" "$(ms "$broker_p99") ms" \
  "$p99_ratio" "<= 2.00" "$p99_ok"
read -r nginx_eff broker_eff eff_ratio < <(awk -v nr="$nginx_rps" -v br="$broker_rps" \
  -v nc="$nginx_cpu" -v bc="$broker_cpu" 'BEGIN {
    ne = (nc > 0) ? nr / (nc / 100) : 0; be = (bc > 0) ? br / (bc / 100) : 0
    printf "%.0f %.0f %.2f\n", ne, be, (ne > 0) ? be / ne : 0 }')
printf '  %-14s %14s %14s\n' "server CPU" "$(round_int "$nginx_cpu")%" "$(round_int "$broker_cpu")%"
printf '  %-14s %14s %14s %10s %8s %s\n' "req/CPU-sec" "$nginx_eff" "$broker_eff" "$eff_ratio" "-" "(info)"
echo
echo "  overall: $overall"
echo "  server CPU is the share of one core the server used during the runs. Well below 100% means"
echo "  something else was the limit (wrk, or other processes on the machine); req/CPU-sec then"
echo "  compares the two servers' efficiency more robustly than req/s."
echo
echo "Markdown row for docs/benchmarks.md:"
printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
  "$(date -u +%Y-%m-%d)" "\`$commit\`" "$cores" "c$connections d$duration x$rounds" \
  "$(round_int "$nginx_rps")" "$(round_int "$broker_rps")" "$rps_ratio" \
  "$(ms "$nginx_p99") ms" "$(ms "$broker_p99") ms" "$p99_ratio" \
  "$(round_int "$nginx_cpu")% / $(round_int "$broker_cpu")%" "$overall" "$pinning"

if [ "$keep" = 1 ]; then
  echo
  echo "temp dir kept: $work (wrk output, configs, access logs)"
fi

if [ "$strict" = 1 ] && [ "$overall" = FAIL ]; then
  exit 3
fi
exit 0
