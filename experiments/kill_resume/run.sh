#!/usr/bin/env bash
# Kill a Generalist run part way (SIGKILL, no warning), start the same command
# again, and compare the final state with an uninterrupted run, bit for bit.
#   bash experiments/kill_resume/run.sh /path/to/cifar10.npz [RUNS_DIR] [KILL_AFTER_SECONDS]
set -euo pipefail
NPZ=${1:?path to cifar10.npz}
RUNS=${2:-runs/kill_resume}
KILL_AFTER=${3:-150}
cmd() {
  python -m generalist_jax.main --config=configs/generalist_cifar10.py:smoke --workdir="$1" \
      --config.data.source=npz --config.data.path="$NPZ" --config.eval.final_test=False \
      --config.progress_bar=False
}
cmd "$RUNS/uninterrupted"
cmd "$RUNS/killed" & pid=$!
sleep "$KILL_AFTER"; kill -9 "$pid"; wait "$pid" || true
echo "killed after ${KILL_AFTER}s; checkpoints then: $(ls "$RUNS/killed/checkpoints/last" | tr '\n' ' ')"
cmd "$RUNS/killed"
python experiments/compare_checkpoints.py "$RUNS/uninterrupted" "$RUNS/killed"
