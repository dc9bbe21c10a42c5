#!/usr/bin/env bash
# Multi-norm robustness at CPU scale on real CIFAR-10 (issue 5). Same model, data,
# epochs and seed for every row: BN SmallCNN width 0.5 (`:smoke`), 5,000 training
# images (+500 held out for validation), 3 epochs, batch 128, seed 0, every
# training attack 5 steps (`attack_steps=5`), last checkpoint evaluated in l1 (eps
# 12), l2 (0.5) and l-inf (8/255) and their union.
#   bash experiments/multinorm_cifar10_cpu/run.sh /path/to/cifar10.npz [RUNS_DIR]
# Then: python experiments/multinorm_cifar10_cpu/collect.py RUNS_DIR
set -euo pipefail
NPZ=${1:?path to cifar10.npz (python ../shared/data/cifar10_jpeg_to_npz.py OUT.npz)}
RUNS=${2:-runs/multinorm_cifar10_cpu}
ARG='smoke,epochs=3,train_size=5000,test_size=1000,attack_steps=5'
for row in generalist_pp_multinorm:global generalist_pp_full:global avg:robust max:robust \
           msd:robust eat:robust; do
  name=${row%%:*}; learner=${row##*:}
  start=$(date +%s)
  python -m generalist_jax.main --config="configs/${name}_cifar10.py:${ARG}" \
      --workdir="$RUNS/$name" --config.data.source=npz --config.data.path="$NPZ" \
      --config.eval.every_epochs=3 --config.progress_bar=False
  mid=$(date +%s)
  python -m generalist_jax.evaluate --workdir="$RUNS/$name" --checkpoint=last \
      --learner="$learner" --attacks=fast --norm=l1,l2,linf --n_ex=500 --steps=50 \
      --n_targets=3 --restarts=1 --name=aa_fast_union --no_progress
  echo "{\"run\": \"$name\", \"train_seconds\": $(( mid - start )), \"eval_seconds\": $(( $(date +%s) - mid ))}" >> "$RUNS/times.jsonl"
done
