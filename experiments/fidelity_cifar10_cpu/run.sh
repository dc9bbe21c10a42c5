#!/usr/bin/env bash
# Run-relative-miniature protocol (issue 15; every time constant a share of the run,
# not the reference's clock: see results.md), one protocol for every row:
#   BN SmallCNN width 0.5, 10,000 CIFAR-10 training images + 1,000 held out for validation
#   (split seed 0, the same for every row and seed), batch 128, 20 epochs (T = 1,560 steps),
#   every training attack l-inf PGD-5 at 8/255 (step 4/255, `attack_steps=5`), the
#   run-relative timescale (`epochs=20` makes a miniature: EMA horizon 2.13% of T = 33
#   steps, sync on every step of virtual epochs 75, 80, ..., 120 of 13 steps each), lr and
#   mixing knots at 0, T/3, 2T/3, T; validation (PGD-5, every learner) every epoch and
#   around every sync window; a checkpoint every epoch, all kept (for selection on
#   validation afterwards).
#   bash experiments/fidelity_cifar10_cpu/run.sh NPZ RUNS_DIR SEED [ROW...]
# Rows: generalist, pgd_at (also gives PGD-AT's EMA), standard, generalist_beta1 (robust
# weight 1 throughout), generalist_nosync, generalist_drift10 (ablation: lr x10 from the
# first sync window on).
# Then: evaluate.py (test set) and collect.py.
set -euo pipefail
NPZ=${1:?path to cifar10.npz (python ../shared/data/cifar10_jpeg_to_npz.py OUT.npz)}
RUNS=${2:?runs dir}
SEED=${3:?seed}
shift 3
ROWS=${*:-generalist pgd_at standard generalist_beta1 generalist_nosync}
ARG='smoke,epochs=20,train_size=10000,test_size=0,attack_steps=5'
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$RUNS/xla_cache}
COMMON=(--config.data.source=npz "--config.data.path=$NPZ" --config.data.val_size=1000
        --config.eval.final_test=False --config.progress_bar=False --config.checkpoint.keep=25
        "--config.seed=$SEED")
for row in $ROWS; do
  case $row in
    generalist) cfg=generalist; extra=();;
    pgd_at) cfg=pgd_at; extra=();;
    standard) cfg=standard; extra=();;
    generalist_beta1) cfg=generalist; extra=('--config.experts.robust.mix_values=(1.0, 1.0, 1.0, 1.0)'
                                              '--config.experts.natural.mix_values=(0.0, 0.0, 0.0, 0.0)');;
    generalist_nosync) cfg=generalist; extra=(--config.meta.sync.kind=never);;
    generalist_drift10) cfg=generalist; extra=(--config.meta.drift_lr_scale=10.0);;
    *) echo "unknown row $row"; exit 2;;
  esac
  dir="$RUNS/${row}_s$SEED"
  start=$(date +%s)
  python -m generalist_jax.main --config="configs/${cfg}_cifar10.py:$ARG" --workdir="$dir" \
      "${COMMON[@]}" "${extra[@]}" > "$dir.log" 2>&1
  echo "{\"run\": \"${row}_s$SEED\", \"train_seconds\": $(( $(date +%s) - start )), \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$RUNS/times.jsonl"
done
