#!/usr/bin/env bash
# The README's main command (the offline digits demo), timed, with the machine's load
# before and after. Then: bash experiments/demo/collect.sh [RUNS_DIR]
#   bash experiments/demo/run.sh [RUNS_DIR]
set -euo pipefail
RUNS=${1:-runs/demo}
OUT=experiments/demo
uptime | tee "$OUT/uptime_before.txt"
/usr/bin/time -v -o "$OUT/time.txt" \
    python -m generalist_jax.main --config=configs/demo.py --workdir="$RUNS"
uptime | tee "$OUT/uptime_after.txt"
