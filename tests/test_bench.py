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
  sys.modules['bench'] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


def test_quick_mode_writes_finite_numbers(tmp_path):
  bench = _load_bench()
  kinds = ['pgd', 'generalist2', 'apgd_ce']  # natural: the same path as pgd, minus the attack
  result = bench.main([
      '--quick', '--models=small_cnn:0.125@4', '--k=1', '--apgd_steps=2',
      f'--kinds={",".join(kinds)}', '--warmup=0', f'--out_dir={tmp_path}', '--machine=test'
  ])
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


def test_gpu_check_quick_runs_on_cpu_and_writes_one_report(tmp_path):
  """The GPU check script works before a GPU is ever used (its --quick mode)."""
  import os
  import subprocess
  script = BENCH.parent / 'gpu_check.sh'
  env = dict(os.environ, GPU_CHECK_OUT_DIR=str(tmp_path), PYTHON=sys.executable)
  env.pop('OUT', None)
  proc = subprocess.run(['bash', str(script), '--quick'], env=env, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  (report,) = [p for p in tmp_path.glob('gpu_check_*.json') if '_steps_' not in p.name]
  result = json.loads(report.read_text())
  assert set(result['bench']) == {'float32', 'bfloat16'}
  for dtype, b in result['bench'].items():
    assert [l['kind'] for l in b['lines']] == ['natural', 'pgd', 'generalist2'], dtype
    assert all(math.isfinite(l['jax_s']) and l['torch_s'] > 0 for l in b['lines'])
  assert result['loop']['loop_img_s'] > 0 and result['seconds'] > 0
  md = report.with_suffix('.md').read_text()
  assert '## Steps, bfloat16' in md and '## Training loop on CIFAR-10' in md
  aa = result['autoattack']
  assert aa['first_s'] > 0 and aa['second_s'] > 0 and aa['clean_acc'] >= 0.9
  assert list(aa['attacked']) == ['apgd-ce', 'apgd-t', 'fab-t', 'square']
  assert aa['attacked']['apgd-ce'] == aa['n_ex'] == 16
  assert "## AutoAttack 'standard', l-inf 8/255" in md


def test_step_profile_attributes_op_time_to_model_layers(tmp_path):
  """step_profile.py (run as users run it: its own process, so its XLA flag is
  read at start) lists op time per layer and writes the report."""
  import subprocess
  script = BENCH.parent / 'step_profile.py'
  proc = subprocess.run([
      sys.executable,
      str(script), '--model=small_cnn:0.125@4', '--kind=natural', '--reps=1',
      f'--out_dir={tmp_path}'
  ], capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  result = json.loads((tmp_path / 'profile_small_cnn_w0p125_b4_natural.json').read_text())
  groups = result['ms_per_group']
  assert result['listed_ms'] > 0 and all(ms >= 0 for ms in groups.values())
  # Time attributed to convolution layers themselves (conv1, not conv1_bn) and to the
  # gradient of a named BatchNorm layer.
  import re
  assert any(re.match(r'(jvp|transpose\(jvp\))/conv\d+/', g) for g in groups), sorted(groups)
  assert any(re.match(r'transpose\(jvp\)/conv\d+_bn/', g) for g in groups), sorted(groups)
  assert result['step_ms_traced'] > 0 and result['conv_engine'] in ('eigen', 'ynnpack')
  assert '| ms per step | op group |' in (tmp_path /
                                          'profile_small_cnn_w0p125_b4_natural.md').read_text()


def _load_spread():
  _load_bench()
  path = BENCH.parent / 'bench_spread.py'
  spec = importlib.util.spec_from_file_location('bench_spread', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_bench_spread_summarizes_each_process_run(tmp_path):
  """Two tiny bench.py processes: the summary lists each run's ratio, and its median,
  min, max and count >= 1 are those of the per-run files."""
  spread = _load_spread()
  result = spread.main([
      '--runs=2', '--name=s', f'--out_dir={tmp_path}', '--', '--models=small_cnn:0.125@4',
      '--kinds=pgd,generalist2', '--k=1', '--reps=1', '--warmup=0'
  ])
  runs = [json.loads((tmp_path / 's-runs' / f'run{i}.json').read_text()) for i in range(2)]
  for kind in ('pgd', 'generalist2'):
    per_run = [
        next(l['jax_over_torch_throughput'] for l in r['lines'] if l['kind'] == kind) for r in runs
    ]
    line = result['summary']['lines'][f'small_cnn:0.125@4 {kind}']
    assert line['ratio']['values'] == per_run
    assert line['ratio']['min'] == min(per_run) and line['ratio']['max'] == max(per_run)
    assert math.isclose(line['ratio']['median'], sum(per_run) / 2)
    assert line['runs_at_least_1'] == sum(r >= 1.0 for r in per_run)
  gen = result['summary']['generalist']['small_cnn:0.125@4 generalist2/pgd']
  assert gen['jax_ratio']['values'] == [r['generalist'][0]['jax_ratio'] for r in runs]
  assert '| small_cnn:0.125@4 generalist2 |' in (tmp_path / 's.md').read_text()
  assert json.loads((tmp_path / 's.json').read_text())['runs'] == 2


@pytest.mark.parametrize('argv, message', [
    (['--runs=1', '--name=s'], 'at least 2 runs'),
    (['--name=s', '--', '--machine=x'], 'this driver sets them'),
])
def test_bench_spread_rejects_bad_arguments(tmp_path, argv, message):
  spread = _load_spread()
  with pytest.raises(ValueError, match=message):
    spread.main([*argv[:1], f'--out_dir={tmp_path}', *argv[1:]])
