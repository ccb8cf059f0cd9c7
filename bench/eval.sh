#!/usr/bin/env bash
# labelbroker-eval on config/scenarios/steady.json at 1,000,000 items, every policy, in process:
# wall time against the issue's target (< 30 s for a 1,000,000-item scenario).
set -euo pipefail

usage() {
  cat <<'TEXT'
usage: bench/eval.sh [--items N] [--scenario FILE] [--help]

Builds labelbroker-eval (cmake --build $BUILD_DIR --target labelbroker-eval) and runs it on the
scenario (default config/scenarios/steady.json) with --items N (default 1000000): all five
policies (labelbroker, oracle, single-vendor, round-robin, cheapest-first), one after another on
one thread. Prints the evaluation table, the wall time against the target "< 30 s" with the ratio
time / target, PASS/FAIL, and a Markdown row for docs/benchmarks.md. Use a Release build.

environment:
  BUILD_DIR   configured build dir to build in and run from (default: build)

exit codes: 0 ran (the time target is reported, not enforced), 1 build or run failure,
            2 usage error
TEXT
}

items=1000000
scenario=config/scenarios/steady.json
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --items)
      if [ $# -lt 2 ] || ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
        echo "eval.sh: --items needs a positive integer" >&2
        exit 2
      fi
      items=$2
      shift 2 ;;
    --scenario)
      [ $# -ge 2 ] || { echo "eval.sh: --scenario needs a file" >&2; exit 2; }
      scenario=$2
      shift 2 ;;
    *) echo "eval.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
build_dir=${BUILD_DIR:-build}
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"
[[ "$scenario" = /* ]] || scenario="$repo_root/$scenario"
[ -f "$build_dir/CMakeCache.txt" ] || {
  echo "eval.sh: $build_dir is not a configured build dir; configure first (cmake -S . -B $build_dir)" >&2
  exit 1
}
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
[ "$build_type" = Release ] || echo "eval.sh: warning: $build_dir is a '$build_type' build; the target is for Release" >&2
cmake --build "$build_dir" --target labelbroker-eval >/dev/null ||
  { echo "eval.sh: building labelbroker-eval failed" >&2; exit 1; }
commit=$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "eval: $(nproc) cores, commit $commit, $items items, $(basename "$scenario")" >&2

start=$(date +%s.%N)
"$build_dir/bin/labelbroker-eval" --scenario "$scenario" --items "$items" ||
  { echo "eval.sh: labelbroker-eval failed" >&2; exit 1; }
end=$(date +%s.%N)

seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
ratio=$(awk -v s="$seconds" 'BEGIN { printf "%.3f", s / 30 }')
verdict=$(awk -v s="$seconds" 'BEGIN { print (s < 30 ? "PASS" : "FAIL") }')
echo
echo "target: $items items x 5 policies in < 30 s: ${seconds} s (${ratio} of the target) $verdict"
echo
echo "Markdown row for docs/benchmarks.md:"
echo "| $(date -u +%F) | \`$commit\` | $(nproc) | $(basename "$scenario") | $items | ${seconds} s | ${ratio} | $verdict |"
