#!/usr/bin/env bash
# The GPU check (issue 16), ready for the day a GPU is lent: JAX vs PyTorch steps, the
# real loop's img/s and our AutoAttack 'standard' (l-inf 8/255, 500 images) wall time,
# one JSON + Markdown under experiments/benchmarks/results/.
#   bash experiments/benchmarks/gpu_check.sh [--quick] [ARCHIVE.tar.gz]
# On the device machine (its image has jax, flax, optax, orbax, chex, torch): the packages
# it lacks (ml_collections, grain, tensorboardX, tensorflow-datasets, array_record, ...)
# travel as wheels in .whl/ (see ../.library/device/README.md: pip download --no-deps
# --python-version 3.12 ... -d .whl NAME==VERSION, with .whl in .git/info/exclude and
# named in `carry`), and the CIFAR-10 JPEG archive as data/cifar10-jpeg.tar.gz (ignored,
# carried). Results also land in $OUT when it is set (the device tool fetches them).
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK=()
if [[ "${1:-}" == --quick ]]; then QUICK=(--quick); shift; fi
ARCHIVE=${1:-}
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONUNBUFFERED=1
ARGS=("${QUICK[@]}")
[ -n "$ARCHIVE" ] && ARGS+=("--archive=$ARCHIVE")
[ -n "${GPU_CHECK_OUT_DIR:-}" ] && ARGS+=("--out_dir=$GPU_CHECK_OUT_DIR")
$PY experiments/benchmarks/gpu_check.py "${ARGS[@]}"
if [ -n "${OUT:-}" ]; then cp experiments/benchmarks/results/gpu_check_* "$OUT"/ 2>/dev/null || true; fi
