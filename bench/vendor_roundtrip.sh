#!/usr/bin/env bash
# Submits UNITS units through each vendor adapter to a zero-latency vendor-sim and reports
# units/s and the adapter-side CPU per unit. Target: >= 5,000 units/s per adapter.
set -euo pipefail

usage() {
  cat <<'TEXT'
usage: bench/vendor_roundtrip.sh [--help]

Starts vendor-sim (bench/vendor_roundtrip_scenario.json: instant work, no faults, no callbacks)
on a free port, then runs build/bin/vendor_roundtrip: for each adapter (scale, surge, mercor) it
submits UNITS units (default 10000) from THREADS submitting threads (default 4), batched as each
vendor's API allows (Scale creates one task per request; Surge and Mercor take bulk creates), and
prints units/s and the adapter process's CPU time per unit. vendor-sim runs as its own process,
so its CPU is not counted. Prints a Markdown row for docs/benchmarks.md.

environment: UNITS, THREADS, LABELBROKER_BUILD_DIR (default build)
exit codes: 0 ran (targets are reported, not enforced), 1 failure, 2 usage error
TEXT
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "vendor_roundtrip.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
bin=${LABELBROKER_BUILD_DIR:-$repo_root/build}/bin
for b in vendor-sim vendor_roundtrip; do
  [ -x "$bin/$b" ] || { echo "vendor_roundtrip.sh: $bin/$b missing; build first (cmake --build build)" >&2; exit 1; }
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$bin/vendor-sim" --scenario "$repo_root/bench/vendor_roundtrip_scenario.json" --listen "127.0.0.1:$port" 2>"$log" &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$log" >&2; echo "vendor_roundtrip.sh: vendor-sim died" >&2; exit 1; }
  sleep 0.1
done

out=$("$bin/vendor_roundtrip" --sim "http://127.0.0.1:$port" --units "${UNITS:-10000}" --threads "${THREADS:-4}")
echo "$out"
echo
status=PASS
row="| $(date -u +%F) | \`$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)\` | $(nproc) |"
while read -r adapter units _ rate cpu failed; do
  [ "$adapter" = adapter ] && continue
  verdict=PASS
  [ "${rate%.*}" -ge 5000 ] && [ "$failed" = 0 ] || { verdict=FAIL; status=FAIL; }
  echo "  $adapter: ${rate} units/s (target >= 5000) $verdict, ${cpu} us CPU per unit"
  row="$row $adapter ${rate}/s ${cpu} us |"
done <<<"$out"
echo "  overall: $status"
echo
echo "Markdown row for docs/benchmarks.md:"
echo "$row $status |"
