#!/usr/bin/env bash
# CPU-scale comparison on real CIFAR-10 (issue: core). Same model, data, epochs
# and seed for every row: BN SmallCNN (width 0.5), 10,000 training images
# (1,000 more held out for validation, evaluated every 2 epochs), 10 epochs,
# batch 128; the first 2,000 test images; reference lr values rescaled to 10 epochs.
#   bash experiments/core_cifar10_cpu/run.sh /path/to/cifar10.npz [RUNS_DIR]
# Then: python experiments/core_cifar10_cpu/collect.py RUNS_DIR
# About 55 minutes on 2 CPU cores (see results.md for the measured times).
set -euo pipefail
NPZ=${1:?path to cifar10.npz (python ../shared/data/cifar10_jpeg_to_npz.py OUT.npz)}
RUNS=${2:-runs/core_cifar10_cpu}
ARG='smoke,epochs=10,train_size=10000,test_size=2000'
for name in generalist pgd_at standard; do
  start=$(date +%s)
  python -m generalist_jax.main --config="configs/${name}_cifar10.py:${ARG}" \
      --workdir="$RUNS/$name" --config.data.source=npz --config.data.path="$NPZ" \
      --config.data.val_size=1000 --config.eval.every_epochs=2 --config.progress_bar=False
  echo "{\"run\": \"$name\", \"wall_seconds\": $(( $(date +%s) - start ))}" >> "$RUNS/times.jsonl"
done
