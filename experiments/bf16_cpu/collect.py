"""Loss curves and throughput of the float32 and bfloat16 runs of run.sh.

  python experiments/bf16_cpu/collect.py RUNS_DIR   -> results.json, results.md here
"""
import json
import pathlib
import platform
import sys

import jax
import numpy as np

HERE = pathlib.Path(__file__).parent
DTYPES = ('float32', 'bfloat16')


def read_metrics(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]


def summarize(workdir: pathlib.Path) -> dict:
  rows = read_metrics(workdir)
  train = [r for r in rows if 'train/robust/loss' in r]
  speeds = [r['perf/img_per_sec'] for r in train]
  test = json.loads((workdir / 'eval' / 'test_last.json').read_text())['learners']['global']
  return {
      'loss_curve': {
          name: [(r['step'], r[f'train/{name}/loss']) for r in train]
          for name in ('natural', 'robust')
      },
      # The first interval includes compilation: throughput from the rest.
      'img_per_sec_median': float(np.median(speeds[1:])),
      'test_global_clean_acc': test['clean_acc'],
      'test_global_pgd_acc': test.get('robust_acc', test.get('pgd_acc')),
  }


def main(runs: pathlib.Path):
  results = {d: summarize(runs / d) for d in DTYPES}
  results['machine'] = {
      'backend': jax.default_backend(), 'devices': jax.device_count(),
      'cpu': platform.processor() or platform.machine(), 'jax': jax.__version__
  }
  (HERE / 'results.json').write_text(json.dumps(results, indent=1))
  f32, bf16 = (results[d] for d in DTYPES)
  lines = [
      '| step | natural loss f32 | natural loss bf16 | robust loss f32 | robust loss bf16 |',
      '|---|---|---|---|---|'
  ]
  for (s, n32), (_, n16), (_, r32), (_, r16) in zip(f32['loss_curve']['natural'],
                                                    bf16['loss_curve']['natural'],
                                                    f32['loss_curve']['robust'],
                                                    bf16['loss_curve']['robust']):
    lines.append(f'| {s} | {n32:.3f} | {n16:.3f} | {r32:.3f} | {r16:.3f} |')
  lines += ['', '| | float32 | bfloat16 | bf16/f32 |', '|---|---|---|---|']
  lines.append(f"| train img/s (median over log intervals) | {f32['img_per_sec_median']:.1f} | "
               f"{bf16['img_per_sec_median']:.1f} | "
               f"{bf16['img_per_sec_median'] / f32['img_per_sec_median']:.2f} |")
  for k in ('test_global_clean_acc', 'test_global_pgd_acc'):
    lines.append(f'| {k} (%) | {100 * f32[k]:.2f} | {100 * bf16[k]:.2f} | |')
  (HERE / 'table.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main(pathlib.Path(sys.argv[1]))
