"""Evaluating a PyTorch checkpoint trained elsewhere (RobustBench key names), from the CLI."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from generalist_jax.evaluation import external  # noqa: E402
from generalist_jax.evaluation import jitted  # noqa: E402
from generalist_jax.models import torch_models  # noqa: E402
from tests.conftest import write_tiny_npz  # noqa: E402
from tests.test_config import ROOT  # noqa: E402


def robustbench_checkpoint(path, seed=0):
  """A WRN-10-1 saved under RobustBench's key names, as their checkpoints are."""
  torch.manual_seed(seed)
  twin = torch_models.create_model({'name': 'wide_resnet', 'depth': 10, 'widen_factor': 1}, 10,
                                   (0.0,), (1.0,), (32, 32, 3))
  state = {}
  for key, value in twin.state_dict().items():  # RobustBench's names for the same weights
    key = re.sub(r'^(block\d)_(\d+)\.', r'\1.layer.\2.', key)
    state['module.' + re.sub(r'^bn\.', 'bn1.', key.replace('.shortcut.', '.convShortcut.'))] = value
  torch.save({'state_dict': state}, path)
  return path


def test_a_robustbench_style_wrn_checkpoint_evaluates_from_the_cli(tmp_path):
  robustbench_checkpoint(tmp_path / 'model.pt')
  npz = write_tiny_npz(tmp_path / 'd.npz', n_test=24)
  out = subprocess.run([
      sys.executable, '-m', 'generalist_jax.evaluate',
      f'--torch_checkpoint={tmp_path / "model.pt"}', '--arch=wrn-10-1', f'--data={npz}',
      '--attacks=apgd-ce,square', '--eps=8/255', '--n_ex=16', '--steps=3', '--batch_size=8',
      f'--out={tmp_path / "eval"}', '--no_progress'
  ], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  (report,) = (tmp_path / 'eval').glob('*.json')
  r = json.loads(report.read_text())
  assert r['n_ex'] == 16 and 0 <= r['robust_acc'] <= r['clean_acc'] <= 1
  assert set(r['attacks']) == {'linf/apgd-ce', 'linf/square'}


def test_a_torch_checkpoint_evaluation_resumes_as_a_runs_does(tmp_path):
  """Fault kind: --torch_checkpoint kept no state, so an interrupted evaluation
  started over; now <out>/<name>.state.npz resumes it, and other settings or other
  weights under the same name are refused."""
  checkpoint = robustbench_checkpoint(tmp_path / 'model.pt')
  npz = write_tiny_npz(tmp_path / 'd.npz', n_test=24)
  kwargs = dict(arch='wrn-10-1', data_config={'source': 'npz', 'path': str(npz),
                                              'val_size': 1}, attacks='apgd-ce,square',
                eps=(8 / 255,), n_ex=16, batch_size=8, overrides={'steps': 3}, progress=False)
  out = tmp_path / 'eval'
  assert external.evaluate_torch_checkpoint(checkpoint, out_dir=out, stop_after_batches=2,
                                            **kwargs) is None
  (state,) = out.glob('*.state.npz')
  resumed = external.evaluate_torch_checkpoint(checkpoint, out_dir=out, **kwargs)
  straight = external.evaluate_torch_checkpoint(checkpoint, out_dir=tmp_path / 'straight', **kwargs)
  name = resumed['name']
  assert state.name == f'{name}.state.npz'
  assert (out / f'{name}.csv').read_text() == (tmp_path / 'straight' / f'{name}.csv').read_text()
  assert resumed['robust_acc'] == straight['robust_acc']
  with pytest.raises(ValueError, match='other settings'):
    external.evaluate_torch_checkpoint(checkpoint, out_dir=out, **dict(kwargs, seed=4))
  robustbench_checkpoint(checkpoint, seed=1)  # other weights, same file name
  with pytest.raises(ValueError, match='other settings'):
    external.evaluate_torch_checkpoint(checkpoint, out_dir=out, **kwargs)


def test_the_cli_saves_x_adv_of_the_first_examples(tmp_path):
  """--subset=first --save_adv: x_adv of test examples 0..n-1 that reproduces the
  flags, no RobustBench entry for a custom list (and why), the compile cache on disk."""
  checkpoint = robustbench_checkpoint(tmp_path / 'model.pt')
  npz = write_tiny_npz(tmp_path / 'd.npz', n_test=24)
  env = dict(os.environ, GENERALIST_JAX_CACHE_DIR=str(tmp_path / 'xla'))
  out = subprocess.run([
      sys.executable, '-m', 'generalist_jax.evaluate', f'--torch_checkpoint={checkpoint}',
      '--arch=wrn-10-1', f'--data={npz}', '--attacks=apgd-ce,square', '--steps=3', '--eps=8/255',
      '--n_ex=8', '--subset=first', '--save_adv', '--batch_size=8', f'--out={tmp_path / "eval"}',
      '--no_progress'
  ], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "no RobustBench entry: entries are AutoAttack 'standard' results" in out.stdout
  stem = tmp_path / 'eval' / 'model_wrn-10-1_apgd-ce+square_n8_first'
  report = json.loads(stem.with_suffix('.json').read_text())
  assert report['subset'] == 'first' and report['missing_components'] == []
  with np.load(f'{stem}.adv.npz') as f:
    saved = dict(f)
  with np.load(npz) as f:
    x_test, y_test = f['x_test'][:8] / np.float32(255), f['y_test'][:8]
  np.testing.assert_array_equal(saved['example_ids'], np.arange(8))
  np.testing.assert_array_equal(saved['y'], y_test)
  assert saved['x_adv'].dtype == np.float32 and saved['x_adv'].shape == (8, 32, 32, 3)
  model, variables = external.load_torch_learner(checkpoint, 'wrn-10-1', 10, (0.0,), (1.0,),
                                                 (32, 32, 3))
  correct = np.argmax(jitted.model_apply_fn(model)(variables, saved['x_adv']), -1) == y_test
  np.testing.assert_array_equal(correct, saved['robust'])
  assert np.abs(saved['x_adv'] - x_test).max() <= 8 / 255 + 1e-6
  assert any((tmp_path / 'xla').iterdir())  # compiled attacks kept on disk
