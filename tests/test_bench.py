"""The benchmark script's quick mode runs end to end at a tiny size and writes
finite numbers (it measures nothing here: speed is the script's job)."""
import importlib.util
import json
import math
import pathlib
import sys

import pytest

pytest.importorskip('torch')

BENCH = pathlib.Path(__file__).resolve().parents[1] / 'experiments' / 'benchmarks' / 'bench.py'


def _load_bench():
  spec = importlib.util.spec_from_file_location('bench', BENCH)
  module = importlib.util.module_from_spec(spec)
  sys.modules['bench'] = module   # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


def test_quick_mode_writes_finite_numbers(tmp_path):
  bench = _load_bench()
  kinds = ['pgd', 'generalist2', 'apgd_ce']   # natural: the same path as pgd, minus the attack
  result = bench.main(['--quick', '--models=small_cnn:0.125@4', '--k=1', '--apgd_steps=2',
                       f'--kinds={",".join(kinds)}', '--warmup=0', f'--out_dir={tmp_path}',
                       '--machine=test'])
  written = json.loads((tmp_path / 'test.json').read_text())
  assert [l['kind'] for l in written['lines']] == kinds
  table = (tmp_path / 'test.md').read_text()
  assert all(f'| small_cnn:0.125 | 4 | {kind} |' in table for kind in kinds)
  for line in written['lines']:
    for key in ('jax_s', 'torch_s', 'jax_img_s', 'torch_img_s', 'gflop', 'compile_s',
                'jax_over_torch_throughput'):
      assert math.isfinite(line[key]) and line[key] > 0, (line['kind'], key, line[key])
  (ratio,) = written['generalist']
  assert ratio['kind'] == 'generalist2' and math.isclose(ratio['work_count'], 8 / 5)
  assert math.isfinite(ratio['jax_ratio']) and ratio['jax_ratio'] > 0
  assert written['machine']['cpu'] and written['uptime_before']
  assert result['settings']['k'] == 1
