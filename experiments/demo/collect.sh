#!/usr/bin/env bash
# Copies the demo's small outputs (table, configs, metrics, evaluation reports, PNGs; no
# checkpoints) here and rebuilds report.md from the copies, so its image links work in
# the repository.
#   bash experiments/demo/collect.sh [RUNS_DIR]
set -euo pipefail
RUNS=${1:-runs/demo}
OUT=experiments/demo
cp "$RUNS"/demo_table.md "$RUNS"/demo_table.json "$OUT/"
mkdir -p "$OUT/plots" && cp "$RUNS"/plots/*.png "$OUT/plots/"
for run in standard pgd_at generalist; do
  mkdir -p "$OUT/$run/eval" "$OUT/$run/plots"
  cp "$RUNS/$run"/config.json "$RUNS/$run"/metrics.jsonl "$OUT/$run/"
  cp "$RUNS/$run"/eval/*.json "$RUNS/$run"/eval/*.md "$OUT/$run/eval/"
  cp "$RUNS/$run"/plots/*.png "$OUT/$run/plots/"
done
python -m generalist_jax.report "$OUT" --out "$OUT/report.md"
