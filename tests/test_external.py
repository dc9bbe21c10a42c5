"""Evaluating a PyTorch checkpoint trained elsewhere (RobustBench key names), from the CLI."""
import json
import re
import subprocess
import sys

import pytest

torch = pytest.importorskip('torch')

from generalist_jax.models import torch_models  # noqa: E402
from tests.conftest import write_tiny_npz  # noqa: E402
from tests.test_config import ROOT  # noqa: E402


def test_a_robustbench_style_wrn_checkpoint_evaluates_from_the_cli(tmp_path):
  torch.manual_seed(0)
  twin = torch_models.create_model({'name': 'wide_resnet', 'depth': 10, 'widen_factor': 1},
                                   10, (0.0,), (1.0,), (32, 32, 3))
  state = {}
  for key, value in twin.state_dict().items():     # RobustBench's names for the same weights
    key = re.sub(r'^(block\d)_(\d+)\.', r'\1.layer.\2.', key)
    state['module.' + re.sub(r'^bn\.', 'bn1.', key.replace('.shortcut.', '.convShortcut.'))] = value
  torch.save({'state_dict': state}, tmp_path / 'model.pt')
  npz = write_tiny_npz(tmp_path / 'd.npz', n_test=24)
  out = subprocess.run(
      [sys.executable, '-m', 'generalist_jax.evaluate', f'--torch_checkpoint={tmp_path / "model.pt"}',
       '--arch=wrn-10-1', f'--data={npz}', '--attacks=apgd-ce,square', '--eps=8/255', '--n_ex=16',
       '--steps=3', '--batch_size=8', f'--out={tmp_path / "eval"}', '--no_progress'],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  (report,) = (tmp_path / 'eval').glob('*.json')
  r = json.loads(report.read_text())
  assert r['n_ex'] == 16 and 0 <= r['robust_acc'] <= r['clean_acc'] <= 1
  assert set(r['attacks']) == {'linf/apgd-ce', 'linf/square'}
