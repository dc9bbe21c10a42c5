#!/usr/bin/env bash
# Kill a Generalist run part way (SIGKILL, no warning), start the same command
# again, and compare the final state with an uninterrupted run, bit for bit.
#   bash experiments/kill_resume/run.sh /path/to/cifar10.npz [RUNS_DIR] [KILL_AFTER_SECONDS]
# The kill comes KILL_AFTER_SECONDS after the first checkpoint (end of epoch 1)
# appears, so the restart really resumes mid-run, part way into epoch 2.
# (Re-running it re-uses a finished uninterrupted run: starting that command again
# only finds it complete.)
set -euo pipefail
NPZ=${1:?path to cifar10.npz}
RUNS=${2:-runs/kill_resume}
KILL_AFTER=${3:-20}
ARGS=(--config=configs/generalist_cifar10.py:smoke --config.data.source=npz
      --config.data.path="$NPZ" --config.eval.final_test=False --config.progress_bar=False)
python -m generalist_jax.main "${ARGS[@]}" --workdir="$RUNS/uninterrupted"
python -m generalist_jax.main "${ARGS[@]}" --workdir="$RUNS/killed" & pid=$!
until ls "$RUNS/killed/checkpoints/last" 2>/dev/null | grep -qx '[0-9]*'; do sleep 1; done
sleep "$KILL_AFTER"; kill -9 "$pid"; wait "$pid" || true
echo "SIGKILL ${KILL_AFTER}s after the first checkpoint; saved: $(ls "$RUNS/killed/checkpoints/last" | tr '\n' ' ')"
python -m generalist_jax.main "${ARGS[@]}" --workdir="$RUNS/killed"
python experiments/compare_checkpoints.py "$RUNS/uninterrupted" "$RUNS/killed"
