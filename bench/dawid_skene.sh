#!/usr/bin/env bash
# Dawid-Skene on a simulated 100,000-item job, in process: time of the fit (target < 1 s single-
# threaded) and label accuracy against majority vote. No database, no broker.
set -euo pipefail

usage() {
  cat <<'TEXT'
usage: bench/dawid_skene.sh [--items N] [--classes K] [--seed S] [--help]

Builds the dawid_skene_bench target (cmake --build $BUILD_DIR --target dawid_skene_bench) and runs
it: N items (default 100000) with K classes (default 5), each judged by 3 of 5 simulated vendors of
different accuracies (one wrong in a fixed direction), seeded by S (default 1). Prints JSON lines
(sizes, iterations, convergence, seconds for the fit, label accuracy of Dawid-Skene and of
majority vote, each vendor's true and estimated accuracy) and "target: < 1 s" with PASS/FAIL.

environment:
  BUILD_DIR   configured build dir to build in and run from (default: build)

exit codes: 0 ran and converged (the time target is reported, not enforced), 1 build failure or
            no convergence, 2 usage error
TEXT
}

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --items|--classes|--seed)
      if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
        echo "dawid_skene.sh: $1 needs a non-negative integer" >&2
        exit 2
      fi
      args+=("$1" "$2")
      shift 2 ;;
    *) echo "dawid_skene.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
build_dir=${BUILD_DIR:-build}
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"
[ -f "$build_dir/CMakeCache.txt" ] || {
  echo "dawid_skene.sh: $build_dir is not a configured build dir; configure first (cmake -S . -B $build_dir)" >&2
  exit 1
}
cmake --build "$build_dir" --target dawid_skene_bench >/dev/null ||
  { echo "dawid_skene.sh: building dawid_skene_bench failed" >&2; exit 1; }
echo "dawid_skene: $(nproc) cores, commit $(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)" >&2
exec "$build_dir/bin/dawid_skene_bench" "${args[@]}"
