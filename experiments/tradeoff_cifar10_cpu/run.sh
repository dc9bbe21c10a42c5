#!/usr/bin/env bash
# Natural-vs-robust trade-off at CPU scale on real CIFAR-10 (issue 5). Same model,
# data, epochs and seed for every row: BN SmallCNN width 0.5 (`:smoke`), 5,000
# training images (+500 held out for validation), 10 epochs (390 steps: the shortest
# faithful miniature, an EMA horizon of 8.3 steps; 3 epochs, the first version of
# this table, is now refused), batch 128, seed 0,
# every training attack 5 steps (`attack_steps=5`), last checkpoint evaluated by
# the evaluation entry point on the same fixed random 500 test images: l-inf PGD-20
# (step 2.5 eps / 20) and APGD-CE + APGD-T (`fast`, 50 iterations, 3 targets).
#   bash experiments/tradeoff_cifar10_cpu/run.sh /path/to/cifar10.npz [RUNS_DIR]
# Then: python experiments/tradeoff_cifar10_cpu/collect.py RUNS_DIR
set -euo pipefail
NPZ=${1:?path to cifar10.npz (python ../shared/data/cifar10_jpeg_to_npz.py OUT.npz)}
RUNS=${2:-runs/tradeoff_cifar10_cpu}
ARG="smoke,epochs=${EPOCHS:-10},train_size=5000,test_size=1000,attack_steps=5"
# run:learner, the learner evaluated (Generalist: its global learner).
for row in generalist:global pgd_at:robust trades:robust mart:robust standard:natural; do
  name=${row%%:*}; learner=${row##*:}
  start=$(date +%s)
  python -m generalist_jax.main --config="configs/${name}_cifar10.py:${ARG}" \
      --workdir="$RUNS/$name" --config.data.source=npz --config.data.path="$NPZ" \
      --config.eval.every_epochs=3 --config.eval.final_test=False --config.progress_bar=False
  mid=$(date +%s)
  python -m generalist_jax.evaluate --workdir="$RUNS/$name" --checkpoint=last \
      --learner="$learner" --attacks=pgd --norm=linf --n_ex=500 --name=pgd20_linf --no_progress
  python -m generalist_jax.evaluate --workdir="$RUNS/$name" --checkpoint=last \
      --learner="$learner" --attacks=fast --norm=linf --n_ex=500 --steps=50 --n_targets=3 \
      --name=aa_fast_linf --no_progress
  echo "{\"run\": \"$name\", \"train_seconds\": $(( mid - start )), \"eval_seconds\": $(( $(date +%s) - mid ))}" >> "$RUNS/times.jsonl"
done
