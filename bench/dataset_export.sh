#!/usr/bin/env bash
# Dataset export: build time of an ITEMS-item version, then its items.jsonl streamed by the broker
# against nginx serving the same bytes from a static file, in the same run.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'TEXT'
usage: bench/dataset_export.sh [--strict] [--keep] [--help]

Starts a throwaway PostgreSQL cluster and a broker (vendors point at a closed port: nothing is
dispatched), loads one completed job of ITEMS labeled items (each judged once) straight into the
database, then:
  1. POST /v1/datasets for it and waits until the version is ready: build seconds (target < 30 s
     for 1,000,000 items);
  2. downloads GET /v1/datasets/bench/versions/1/items.jsonl with curl, ROUNDS times, sampling the
     broker's VmRSS every 50 ms: the growth over its RSS before the download (target < 50 MB);
  3. serves the downloaded file from nginx and downloads it the same way, ROUNDS times, alternating
     with the broker: broker bytes/s >= 0.5 x nginx bytes/s (medians);
  4. checks the file's sha256 against the manifest.
Prints a summary and a Markdown row for docs/benchmarks.md. Targets are reported, not enforced,
unless --strict is given.

options:
  --strict   exit 3 when a target is missed
  --keep     keep the temp dir (configs, logs, the file) and print its path
  --help     show this help

environment:
  ITEMS=1000000   items in the job (and rows in the version)
  ROUNDS=3        downloads per server
  LABELBROKER_BUILD_DIR   build dir holding bin/labelbroker (default: build)

requires: nginx, curl, psql, sha256sum, PostgreSQL 15 (via scripts/pg), build/bin/labelbroker.
exit codes: 0 ran, 1 failure (including a checksum mismatch), 2 usage error, 3 target missed (--strict)
TEXT
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_options dataset_export "$@"
items=${ITEMS:-1000000}
rounds=${ROUNDS:-3}
[[ "$items" =~ ^[1-9][0-9]*$ ]] || { echo "dataset_export: ITEMS must be a positive integer" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "dataset_export: ROUNDS must be a positive integer" >&2; exit 2; }
build_target_s=30
rss_target_mb=50
ratio_target=0.5

die() { echo "dataset_export: $*" >&2; exit 1; }
log() { echo "dataset_export: $*" >&2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${LABELBROKER_BUILD_DIR:-build}
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"
broker_bin="$build_dir/bin/labelbroker"
pg_script="$repo_root/scripts/pg"
[ -x "$broker_bin" ] || die "$broker_bin not found; build first (cmake --build $build_dir --target labelbroker)"
for tool in nginx curl psql sha256sum; do command -v "$tool" >/dev/null || die "'$tool' not found; run scripts/setup-deps"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/labelbroker-export.XXXXXX")
chmod 755 "$work"
broker_pid=""
nginx_pid=""
pg_port=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_process "$broker_pid"
  stop_process "$nginx_pid"
  [ -n "$pg_port" ] && destroy_cluster "$work/pg" "$pg_port" "$pg_script"
  if [ "$keep" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

pg_port=$(free_port)
pg_env=(env LABELBROKER_PG_DIR="$work/pg" LABELBROKER_PG_PORT="$pg_port")
"${pg_env[@]}" "$pg_script" start >"$work/pg-start.log" 2>&1 || { cat "$work/pg-start.log" >&2; die "scripts/pg start failed"; }
database_url=$("${pg_env[@]}" "$pg_script" url)
sql() { psql -X -Atq -v ON_ERROR_STOP=1 "$database_url" -c "$1"; }

broker_port=$(free_port)
nginx_port=$(free_port)
[ "$nginx_port" != "$broker_port" ] || nginx_port=$(free_port)
cat >"$work/broker.json" <<JSON
// Written by bench/dataset_export.sh: one vendor that is never called (the job is loaded done).
{
  "listen": "127.0.0.1:$broker_port",
  "log": {"level": "warn", "access_log": false},
  "vendors": [
    {"id": "scale", "kind": "scale", "base_url": "http://127.0.0.1:9/scale/v1", "api_key": "bench",
     "callback_secret": "bench-scale-callback-secret",
     "capabilities": {"task_types": ["classification"], "domains": ["general"], "expertise": ["general"]},
     "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"}}
  ]
}
JSON
broker_env=(env LABELBROKER_CONFIG="$work/broker.json" LABELBROKER_DATABASE_URL="$database_url")
key=$(migrate_and_make_key)

log "loading a completed job of $items labeled items"
t0=$(now)
job=$(sql "WITH j AS (
    INSERT INTO jobs (team_id, name, status, task_type, domain, expertise, labels, redundancy, budget_micros,
                      deadline, eligible_vendors, optimize, item_count, planned_at, finished_at)
    SELECT id, 'export bench', 'completed', 'classification', 'general', 'general', '[\"pos\",\"neg\",\"neutral\"]',
           1, 0, now() + interval '1 day', '{scale}', 'balanced', $items, now(), now()
    FROM teams WHERE name = 'bench' RETURNING id)
  SELECT id FROM j" | head -n 1)
[[ "$job" =~ ^[0-9a-f-]{36}$ ]] || die "could not create the job (got '$job')"
PGOPTIONS='-c synchronous_commit=off' sql "
  INSERT INTO job_items (job_id, item_id, data, state, label, confidence, method, finished_at)
  SELECT '$job', 'item-' || lpad(g::text, 8, '0'),
         jsonb_build_object('text', 'review number ' || g || ': the product arrived on time and works as described',
                            'source', 'bench', 'n', g),
         'labeled', (ARRAY['pos','neg','neutral'])[1 + g % 3], 0.5 + (g % 50) / 100.0, 'majority', now()
  FROM generate_series(1, $items) g" >/dev/null
PGOPTIONS='-c synchronous_commit=off' sql "
  INSERT INTO assignments (job_id, item_id, vendor_id, state, answer, worker_id, quote_micros, cost_micros, completed_at)
  SELECT '$job', 'item-' || lpad(g::text, 8, '0'), 'scale', 'completed', (ARRAY['pos','neg','neutral'])[1 + g % 3],
         'w-' || (g % 97), 40000, 40000, now()
  FROM generate_series(1, $items) g" >/dev/null
sql "VACUUM ANALYZE job_items" >/dev/null
sql "VACUUM ANALYZE assignments" >/dev/null
log "loaded in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s"

"${broker_env[@]}" "$broker_bin" serve >"$work/broker.log" 2>&1 &
broker_pid=$!
wait_ready "127.0.0.1:$broker_port" "$broker_pid" "$work/broker.log"
base="http://127.0.0.1:$broker_port"
auth=(-H "Authorization: Bearer $key")

# --- 1. build -----------------------------------------------------------------------------------
t_build=$(now)
curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -X POST "$base/v1/datasets" \
  -d "{\"name\": \"bench\", \"jobs\": [\"$job\"]}" >"$work/create.json" || die "POST /v1/datasets failed"
manifest=""
for _ in $(seq 1 3600); do
  manifest=$(curl -fsS "${auth[@]}" "$base/v1/datasets/bench/versions/1") || die "manifest request failed"
  case "$manifest" in *'"status":"ready"'*) break ;; esac
  kill -0 "$broker_pid" 2>/dev/null || die "broker exited"
  sleep 0.1
done
case "$manifest" in *'"status":"ready"'*) ;; *) die "version not ready after 360 s" ;; esac
build_s=$(awk -v a="$t_build" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
sha=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' <<<"$manifest")
bytes=$(sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' <<<"$manifest")
rows=$(sed -n 's/.*"rows":\([0-9]*\).*/\1/p' <<<"$manifest")
[ "$rows" = "$items" ] || die "manifest has $rows rows, expected $items"
log "built in $build_s s: $bytes bytes, sha256 $sha"

# --- 2./3. downloads ----------------------------------------------------------------------------
nginx_prelude "$work"
mkdir -p "$work/www"
cat >"$work/nginx.conf" <<NGINX
$nginx_user_line
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 64; }
http {
$nginx_temp_paths
  access_log off;
  sendfile on;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { root $work/www; default_type application/x-ndjson; }
  }
}
NGINX

rss_growth_kb=0
broker_times=()
nginx_times=()
download() { # url file -> prints seconds
  curl -fsS "${auth[@]}" -o "$2" -w '%{time_total}' "$1"
}
for r in $(seq 1 "$rounds"); do
  rss_before=$(status_kb "$broker_pid" VmRSS)
  rss_max=$rss_before
  download "$base/v1/datasets/bench/versions/1/items.jsonl" "$work/items.jsonl" >"$work/time" &
  curl_pid=$!
  while kill -0 "$curl_pid" 2>/dev/null; do
    rss=$(status_kb "$broker_pid" VmRSS)
    [ "$rss" -le "$rss_max" ] || rss_max=$rss
    sleep 0.05
  done
  wait "$curl_pid" || die "broker download failed"
  broker_times+=("$(cat "$work/time")")
  growth=$((rss_max - rss_before))
  [ "$growth" -le "$rss_growth_kb" ] || rss_growth_kb=$growth
  got=$(sha256sum "$work/items.jsonl" | cut -d' ' -f1)
  [ "$got" = "$sha" ] || die "downloaded bytes hash to $got, manifest says $sha"
  if [ "$r" = 1 ]; then
    cp "$work/items.jsonl" "$work/www/items.jsonl"
    nginx -c "$work/nginx.conf" -p "$work" >"$work/nginx.log" 2>&1 &
    nginx_pid=$!
    for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$nginx_port/items.jsonl" 2>/dev/null && break; sleep 0.05; done
  fi
  nginx_times+=("$(download "http://127.0.0.1:$nginx_port/items.jsonl" "$work/nginx-copy.jsonl")")
  log "round $r: broker ${broker_times[-1]} s, nginx ${nginx_times[-1]} s, broker RSS +$((growth / 1024)) MB"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
broker_s=$(median "${broker_times[@]}")
nginx_s=$(median "${nginx_times[@]}")
broker_mbps=$(awk -v b="$bytes" -v s="$broker_s" 'BEGIN { printf "%.0f", b / s / 1e6 }')
nginx_mbps=$(awk -v b="$bytes" -v s="$nginx_s" 'BEGIN { printf "%.0f", b / s / 1e6 }')
ratio=$(awk -v a="$nginx_s" -v b="$broker_s" 'BEGIN { printf "%.2f", a / b }')
rss_mb=$(awk -v k="$rss_growth_kb" 'BEGIN { printf "%.1f", k / 1024 }')

verdict() { awk -v ok="$1" 'BEGIN { print ok ? "PASS" : "FAIL" }'; }
build_ok=$(awk -v s="$build_s" -v t="$build_target_s" 'BEGIN { print (s < t) }')
ratio_ok=$(awk -v r="$ratio" -v t="$ratio_target" 'BEGIN { print (r >= t) }')
rss_ok=$(awk -v m="$rss_mb" -v t="$rss_target_mb" 'BEGIN { print (m < t) }')
commit=$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)
cat <<TEXT

dataset_export: $items items, $bytes bytes, $rounds rounds, $(nproc) cores
  build     : $build_s s (target < $build_target_s s) $(verdict "$build_ok")
  download  : broker $broker_s s ($broker_mbps MB/s), nginx $nginx_s s ($nginx_mbps MB/s): $ratio x nginx (target >= $ratio_target) $(verdict "$ratio_ok")
  broker RSS: +$rss_mb MB during a download (target < $rss_target_mb MB) $(verdict "$rss_ok")
  checksum  : every download hashes to the manifest's sha256

Markdown row for docs/benchmarks.md:
| $(date -u +%F) | \`$commit\` | $(nproc) | $items items, $bytes bytes | $build_s s $(verdict "$build_ok") | $broker_mbps MB/s vs nginx $nginx_mbps MB/s: $ratio x $(verdict "$ratio_ok") | +$rss_mb MB $(verdict "$rss_ok") |
TEXT
if [ "$strict" = 1 ] && { [ "$build_ok" = 0 ] || [ "$ratio_ok" = 0 ] || [ "$rss_ok" = 0 ]; }; then exit 3; fi
