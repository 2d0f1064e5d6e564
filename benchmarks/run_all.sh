#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, one after the other (about 50 minutes on 2 cores).
# Usage: bash benchmarks/run_all.sh [OUTPUT_DIR]   (default: benchmarks/output)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/output}"
mkdir -p "$out"
for bench in startup isolation_cost tiny_splits soak_grid first_wave sklearn_grid \
             dispatch_overhead dispatcher_message cpu_per_split load_balance idle_cpu \
             shared_memory sklearn_speedup scale; do
    echo "== $bench" >&2
    python "$here/$bench.py" | tee "$out/$bench.md"
done
