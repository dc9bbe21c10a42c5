#!/usr/bin/env bash
# The outputs that must not change when code is only reorganised: the demo suite (three
# runs, their checkpoints, the table) and a small smoke Generalist run on CIFAR-10 (the
# :smoke preset with 2 attack steps: 2 epochs of 2,000 images, 30 steps, is now refused by
# the relative-timescale floors).
#   bash experiments/refactor_check/run.sh SRC_CHECKOUT OUT_DIR CIFAR10_NPZ
# Run it on the checkout before and after the change (same venv), then compare with
#   python experiments/compare_checkpoints.py OUT_BEFORE/demo/generalist OUT_AFTER/demo/generalist
# (and demo/standard, demo/pgd_at, smoke) and `cmp` the eval/demo.csv flag files.
set -euo pipefail
SRC=$1; OUT=$2; NPZ=$3
cd "$SRC"
python -m generalist_jax.main --config=configs/demo.py --workdir="$OUT/demo" > "$OUT/demo.log" 2>&1
python -m generalist_jax.main --config=configs/generalist_cifar10.py:smoke,attack_steps=2,test_size=500 \
  --workdir="$OUT/smoke" --config.data.source=npz --config.data.path="$NPZ" \
  --config.progress_bar=False > "$OUT/smoke.log" 2>&1
echo done
