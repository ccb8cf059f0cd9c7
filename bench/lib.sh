# shellcheck shell=bash
# shellcheck disable=SC2154  # work, broker_env, broker_bin: set by the sourcing script
# shellcheck disable=SC2034  # nginx_*, strict, keep: set here for the sourcing script
# Helpers shared by the benchmark scripts (sourced, not run). The caller defines die().

# The options every benchmark takes: --strict (exit 3 on a missed target), --keep (keep the temp
# dir) and --help (the caller's usage()). Sets strict and keep; $1 names the script in errors.
bench_options() {
  local name=$1 arg
  shift
  strict=0
  keep=0
  for arg in "$@"; do
    case "$arg" in
      --strict) strict=1 ;;
      --keep) keep=1 ;;
      -h|--help) usage; exit 0 ;;
      *) echo "$name: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
  done
}

# A TCP port nobody listens on right now.
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 30000))
    ss -Htan "( sport = :$port )" 2>/dev/null | grep -q . || { echo "$port"; return 0; }
  done
  die "no free TCP port"
}

now() { date +%s.%N; }

# A field of /proc/PID/status in kB, e.g. status_kb "$pid" VmHWM (0 once the process is gone).
status_kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# SIGTERM, up to 10 s of grace, then SIGKILL. A no-op for an empty or finished PID.
stop_process() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Removes the throwaway cluster in $1 (data dir) on port $2 (scripts/pg at $3), or at least stops it.
destroy_cluster() {
  LABELBROKER_PG_DIR="$1" LABELBROKER_PG_PORT="$2" "$3" destroy >/dev/null 2>&1 ||
    LABELBROKER_PG_DIR="$1" LABELBROKER_PG_PORT="$2" "$3" stop >/dev/null 2>&1 || true
}

# Migrates the database and creates team "bench" with a submitter key, which it prints. Runs the
# broker through the caller's broker_env array and broker_bin; logs go to $work.
migrate_and_make_key() {
  local key
  "${broker_env[@]}" "$broker_bin" migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; die "migrate failed"; }
  "${broker_env[@]}" "$broker_bin" admin create-team bench >/dev/null 2>>"$work/admin.log" || die "create-team failed"
  key=$("${broker_env[@]}" "$broker_bin" admin create-key --team bench --role submitter 2>>"$work/admin.log" | tail -n 1)
  [ -n "$key" ] || die "create-key printed nothing"
  echo "$key"
}

# Waits (up to 30 s) until http://$1/readyz answers 200 while process $2 lives (log file $3).
wait_ready() {
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null --max-time 2 "http://$1/readyz" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { tail -20 "$3" >&2; die "broker exited"; }
    sleep 0.1
  done
  tail -20 "$3" >&2
  die "broker not ready"
}

# For an nginx reference server run from a temp dir: sets nginx_temp_paths (a temp path directive,
# under $1, for each module this nginx build has) and nginx_user_line (as root, nginx's workers
# would switch to 'nobody', which may not be able to read our files: run them as us).
nginx_prelude() {
  local tmp=$1 build module
  build=$(nginx -V 2>&1)
  nginx_temp_paths=""
  for module in client_body proxy fastcgi uwsgi scgi; do
    case "$module" in
      client_body) nginx_temp_paths+="  client_body_temp_path $tmp/client_body;"$'\n' ;;
      *) case "$build" in
           *"--without-http_${module}_module"*) ;;
           *) nginx_temp_paths+="  ${module}_temp_path $tmp/$module;"$'\n' ;;
         esac ;;
    esac
  done
  nginx_user_line=""
  if [ "$(id -u)" -eq 0 ]; then nginx_user_line="user $(id -un) $(id -gn);"; fi
}
