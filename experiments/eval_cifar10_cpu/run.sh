#!/bin/bash
# Robustness tables of the CPU-scale CIFAR-10 runs (experiments/core_cifar10_cpu):
# AutoAttack 'standard' for l-inf 8/255, l2 0.5, l1 12 and their union, plus the
# single attacks of the l-inf table, each run alone on every clean-correct example.
# evaluate writes eval/ into the run dir, so it works on copies of the runs.
# Usage: bash experiments/eval_cifar10_cpu/run.sh [run ...]   (default: generalist pgd_at)
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${SRC:-runs/core_cifar10_cpu}   # the trained runs (experiments/core_cifar10_cpu/run.sh)
DST=${DST:-runs/eval_cifar10_cpu}   # copies that evaluate writes eval/ into
N_EX=${N_EX:-100}
COMMON="--checkpoint=best --learner=global --n_ex=$N_EX --batch_size=64 --seed=0 --no_progress"
RUNS=${*:-generalist pgd_at}
mkdir -p "$DST"
for run in $RUNS; do
  [ -d "$DST/$run" ] || cp -r "$SRC/$run" "$DST/$run"
done
for run in $RUNS; do
  W="--workdir=$DST/$run"
  (
    # AutoAttack standard per norm (its first l-inf column, APGD-CE, runs on every
    # clean-correct example, so it is also APGD-CE alone).
    .venv/bin/python -m generalist_jax.evaluate $W $COMMON --attacks=standard \
        --norm=linf,l2,l1 --eps=8/255,0.5,12 --name=aa_union
    .venv/bin/python -m generalist_jax.evaluate $W $COMMON --attacks=pgd --name=pgd20
    .venv/bin/python -m generalist_jax.evaluate $W $COMMON --attacks=pgd-cw --name=cw20
    .venv/bin/python -m generalist_jax.evaluate $W $COMMON --attacks=pgd --steps=100 --name=pgd100
    for a in apgd-t fab-t square; do
      .venv/bin/python -m generalist_jax.evaluate $W $COMMON --attacks=$a --name=alone_$a
    done
  ) > "$DST/$run.log" 2>&1 &
  # The l1 part on its own, in parallel (the same examples): on the shared 2-core
  # machine aa_union did not reach l1 in time; collect.py takes l1 from here.
  .venv/bin/python -m generalist_jax.evaluate $W $COMMON --attacks=standard --norm=l1 \
      --eps=12 --name=aa_l1 > "$DST/$run.l1.log" 2>&1 &
done
wait
.venv/bin/python -m experiments.eval_cifar10_cpu.collect "$DST"
