#!/usr/bin/env bash
# Multi-norm robustness at CPU scale on real CIFAR-10 (issue 5). Same model, data,
# epochs and seed for every row: BN SmallCNN width 0.5 (`:smoke`), 5,000 training
# images (+500 held out for validation), 10 epochs (390 steps: the shortest faithful
# miniature, an EMA horizon of 8.3 steps), batch 128, seed 0, every training attack
# 3 steps (`attack_steps=3`), last checkpoint evaluated with APGD-CE + APGD-T
# (20 iterations, 3 targets, 1 restart) in l1 (eps 12), l2 (0.5) and l-inf (8/255)
# and their union, on a fixed random 500 of a 500-image test subset.
#   bash experiments/multinorm_cifar10_cpu/run.sh /path/to/cifar10.npz [RUNS_DIR]
# Then: python experiments/multinorm_cifar10_cpu/collect.py RUNS_DIR
# The first versions of this table (results_2k_3epochs.md: 2,000 images, 3 epochs = 48 steps,
# N_EX=300; results_5k.md: 5,000 images, 5 epochs = 195 steps) predate the run-relative
# timescale, which now refuses runs that short (collect.py reads the scale back).
set -euo pipefail
NPZ=${1:?path to cifar10.npz (python ../shared/data/cifar10_jpeg_to_npz.py OUT.npz)}
RUNS=${2:-runs/multinorm_cifar10_cpu}
ARG=${ARG:-'smoke,epochs=10,train_size=5000,test_size=500,attack_steps=3'}
N_EX=${N_EX:-500}
for row in generalist_pp_multinorm:global eat:robust msd:robust generalist_pp_full:global \
           avg:robust max:robust; do
  name=${row%%:*}; learner=${row##*:}
  start=$(date +%s)
  python -m generalist_jax.main --config="configs/${name}_cifar10.py:${ARG}" \
      --workdir="$RUNS/$name" --config.data.source=npz --config.data.path="$NPZ" \
      --config.eval.every_epochs=3 --config.eval.final_test=False --config.progress_bar=False
  mid=$(date +%s)
  python -m generalist_jax.evaluate --workdir="$RUNS/$name" --checkpoint=last \
      --learner="$learner" --attacks=apgd-ce,apgd-t --norm=l1,l2,linf --n_ex="$N_EX" --steps=20 \
      --n_targets=3 --restarts=1 --name=apgd_union --no_progress
  echo "{\"run\": \"$name\", \"train_seconds\": $(( mid - start )), \"eval_seconds\": $(( $(date +%s) - mid ))}" >> "$RUNS/times.jsonl"
done
