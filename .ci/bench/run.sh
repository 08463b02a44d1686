#!/usr/bin/env bash
# `make bench`: results-day benchmarks against the local stack (`make up` first).
#
#   .ci/bench/run.sh                    # full run, about 12-14 minutes
#   BENCH_QUICK=1 .ci/bench/run.sh      # short version, about 3 minutes
#   BENCH_ONLY=point,sweep .ci/bench/run.sh
#
# Settings (environment): BENCH_DURATION, BENCH_SWEEP_DURATION, BENCH_CONNECTIONS, BENCH_SWEEP,
# BENCH_POOLS, BENCH_COLD_RUNS, BENCH_GROWTH_ROWS, BENCH_INSTR_REQUESTS, BENCH_INSTR_RUNS, BENCH_PERF, BENCH_OUT,
# BENCH_RD_* (results-day), BENCH_BATCH_* (batch);
# see .ci/bench/bench/settings.py. Results: bench-results/<UTC timestamp>.md (+ .json).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
missing=()
for tool in wrk pgbench psql; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]}; install the packages in .ci/apt-bench.txt (apt-get install $(grep -v '^#' "$ROOT/.ci/apt-bench.txt" | xargs))" >&2
  exit 1
fi
cd "$ROOT"
PYTHONPATH="$ROOT/.ci/bench${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m bench "$@"
