#!/usr/bin/env bash
# The reference's clock in steps, on 16x16 CIFAR-10 and a BN SmallCNN w0.5 (issue 30):
# every row of one seed from one shared prefix, by forking (config.init_from).
#   bash experiments/reference_clock_cifar10_cpu/run.sh NPZ RUNS_DIR SEED
# Run it pinned to one core (../shared/tools/quiet --cores N -- bash run.sh ...); start it
# again to resume: every segment resumes from its workdir or is skipped when done.
#
# Segments (382 steps an epoch, T = 45,840; sync on every step of epochs 75, 80, ..., 120):
#   1. generalist   steps 0 -> 28,268 (end of epoch 74): before the first window every row
#                   is this run (beta = 1 until epoch 80, no sync yet)
#   2. nosync       forked at 28,268 with meta.sync.kind=never: its robust expert (and EMA)
#                   is PGD-AT, its natural expert standard training, with the same data/keys
#   3. generalist   -> 30,560 (end of epoch 80: the last step where beta is still 1)
#   4. beta1        forked at 30,560 with the robust mixing weight 1 to the end (control)
#   5-7. generalist, nosync, beta1 -> 45,840
# Each fork is made (its first checkpoint written) before the trunk moves on, so the
# trunk's own checkpoints may rotate. Wall times and loads go to RUNS_DIR/times.jsonl.
set -euo pipefail
NPZ=${1:?path to cifar10.npz (python ../shared/data/cifar10_jpeg_to_npz.py OUT.npz)}
RUNS=${2:?runs dir}
SEED=${3:?seed}
PY=${PYTHON:-python}
DIR="$RUNS/s$SEED"
mkdir -p "$DIR"
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$RUNS/xla_cache}
# Every epoch's checkpoint is kept (about 1 MB each): a row's learner is selected afterwards
# on its own validation record, and the selected step must still be there.
COMMON=(--config.data.source=npz "--config.data.path=$NPZ" "--config.seed=$SEED"
        --config.progress_bar=False --config.eval.final_test=False --config.checkpoint.keep=200)
NOSYNC=(--config.meta.sync.kind=never)
BETA1=('--config.experts.robust.mix_values=(1.0, 1.0, 1.0, 1.0)'
       '--config.experts.natural.mix_values=(0.0, 0.0, 0.0, 0.0)')
PREFIX_END=28268   # 74 x 382
BETA_MOVES=30560   # 80 x 382

segment() {  # name row stop_at_step(or 'end') extra args...
  local name=$1 row=$2 stop=$3; shift 3
  local start; start=$(date +%s)
  local stop_flag=(); [[ $stop == end ]] || stop_flag=("--stop_at_step=$stop")
  "$PY" -m generalist_jax.main --config=configs/generalist_cifar10.py:reference_clock \
      --workdir="$DIR/$row" "${COMMON[@]}" "${stop_flag[@]}" "$@" >> "$DIR/$row.log" 2>&1
  echo "{\"seed\": $SEED, \"segment\": \"$name\", \"row\": \"$row\", \"to\": \"$stop\", \"seconds\": $(( $(date +%s) - start )), \"load_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"date\": \"$(date -u +%FT%TZ)\"}" >> "$RUNS/times.jsonl"
}
fork_args() {  # source step
  echo "--config.init_from.workdir=$DIR/$1" "--config.init_from.step=$2"
}

segment prefix generalist $PREFIX_END
segment fork_nosync nosync $PREFIX_END $(fork_args generalist $PREFIX_END) "${NOSYNC[@]}"
segment sync75 generalist $BETA_MOVES
segment fork_beta1 beta1 $BETA_MOVES $(fork_args generalist $BETA_MOVES) "${BETA1[@]}"
segment generalist generalist end
segment nosync nosync end $(fork_args generalist $PREFIX_END) "${NOSYNC[@]}"
segment beta1 beta1 end $(fork_args generalist $BETA_MOVES) "${BETA1[@]}"
