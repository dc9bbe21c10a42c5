#!/usr/bin/env bash
# Multi-norm robustness at CPU scale on real CIFAR-10 (issue 5). Same model, data,
# epochs and seed for every row: BN SmallCNN width 0.5 (`:smoke`), 2,000 training
# images (+500 held out for validation), 3 epochs (48 steps), batch 128, seed 0,
# every training attack 3 steps (`attack_steps=3`), last checkpoint evaluated with
# APGD-CE + APGD-T (20 iterations, 3 targets, 1 restart) in l1 (eps 12), l2 (0.5)
# and l-inf (8/255) and their union, on a fixed random 300 of a 500-image test subset.
# (Smaller than the trade-off table: it has 6 rows of 1-4 attacks per step and the
# 2 shared CPU cores were at load 15-18.)
#   bash experiments/multinorm_cifar10_cpu/run.sh /path/to/cifar10.npz [RUNS_DIR]
# Then: python experiments/multinorm_cifar10_cpu/collect.py RUNS_DIR
# Another scale: ARG='smoke,epochs=5,train_size=5000,test_size=500,attack_steps=3' N_EX=500
# (collect.py reads the scale back from the runs).
set -euo pipefail
NPZ=${1:?path to cifar10.npz (python ../shared/data/cifar10_jpeg_to_npz.py OUT.npz)}
RUNS=${2:-runs/multinorm_cifar10_cpu}
ARG=${ARG:-'smoke,epochs=3,train_size=2000,test_size=500,attack_steps=3'}
N_EX=${N_EX:-300}
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
