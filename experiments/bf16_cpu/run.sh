#!/usr/bin/env bash
# float32 vs bfloat16 compute (float32 parameters, optimizer state, loss and attack
# perturbations) on real CIFAR-10: the same Generalist smoke run twice, only
# config.compute_dtype differs. BN SmallCNN width 0.5, 5,000 training images
# (+500 validation), 10 epochs (390 steps; 3 epochs are refused today: README),
# batch 128, PGD-10 robust expert, seed 0.
#   bash experiments/bf16_cpu/run.sh /path/to/cifar10.npz [RUNS_DIR]
# Then: python experiments/bf16_cpu/collect.py RUNS_DIR
set -euo pipefail
NPZ=${1:?path to cifar10.npz (python ../shared/data/cifar10_jpeg_to_npz.py OUT.npz)}
RUNS=${2:-runs/bf16_cpu}
for dtype in float32 bfloat16; do
  python -m generalist_jax.main --config="configs/generalist_cifar10.py:smoke,epochs=10" \
      --workdir="$RUNS/$dtype" --config.data.source=npz --config.data.path="$NPZ" \
      --config.compute_dtype="$dtype" --config.progress_bar=False
done
