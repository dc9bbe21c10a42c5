"""The offline demo end to end at a tiny size, its plots and the report; the digits source."""
import json
import logging
import math

import numpy as np
import pytest

from generalist_jax import data as data_lib
from generalist_jax.data import arrays
from generalist_jax.evaluation import compare as report
from generalist_jax.evaluation import plots
from generalist_jax.run import suite

RUNS = ('standard', 'pgd_at', 'generalist')


def test_sklearn_digits_is_a_fixed_offline_split():
  a = data_lib.load_dataset({'source': 'sklearn_digits', 'val_size': 100, 'split_seed': 0})
  b = data_lib.load_dataset({'source': 'sklearn_digits', 'val_size': 100, 'split_seed': 1})
  assert a.info.image_shape == (8, 8, 1) and a.info.num_classes == 10
  assert len(a.train) + len(a.val[1]) == 1797 - arrays.DIGITS_TEST_SIZE
  assert len(a.test[1]) == arrays.DIGITS_TEST_SIZE
  np.testing.assert_array_equal(a.test[0], b.test[0])  # test split: independent of seeds
  assert not np.array_equal(a.val[1], b.val[1])  # validation: split_seed picks it
  assert a.test[0].dtype == np.uint8 and a.test[0].max() == 255
  assert len(np.unique(a.test[1])) == 10


def test_plotting_errors_only_warn(caplog):

  def broken():
    raise KeyError('no such metric')

  with caplog.at_level(logging.WARNING):
    assert plots.safely(broken) is None
  assert 'plotting failed' in caplog.text


@pytest.mark.parametrize('field, value, message', [
    ('runs.pgd_at.experts.robust.attack.eps', -0.1,
     'config.runs.pgd_at.experts.robust.attack.eps: must be >= 0'),
    ('compare.eps', (0.2,), 'config.compare.eps: needs one eps per norm'),
    ('compare.attacks', 'pgd,fab-x', 'config.compare.attacks / norms: .*fab-x'),
])
def test_suite_refuses_a_bad_config_before_training(tmp_path, field, value, message):
  from configs import demo
  from generalist_jax import config as config_lib
  config = demo.get_config()
  *parents, last = field.split('.')
  node = config
  for part in parents:
    node = node[part]
  node[last] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    suite.run_suite(config, str(tmp_path / 'demo'))
  assert not (tmp_path / 'demo' / 'pgd_at').exists()


def _png_has_content(path):
  import matplotlib.image
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200, path
  assert image[..., :3].std() > 0.05, f'{path} is (nearly) blank'


@pytest.fixture(scope='module')
def tiny_demo(tmp_path_factory):
  """configs/demo.py at 2 epochs of 2 steps, 64 test images, PGD only in the comparison."""
  from configs import demo
  config = demo.get_config('epochs=2,train_size=128,test_size=64')
  config.compare.attacks = 'pgd'
  config.compare.steps = 3
  workdir = tmp_path_factory.mktemp('demo')
  suite.run_suite(config, str(workdir))
  return workdir


def test_tiny_demo_writes_a_table_of_real_numbers(tiny_demo):
  table = json.loads((tiny_demo / 'demo_table.json').read_text())
  assert [row[0] for row in table['rows']] == list(RUNS)
  header = table['header']
  assert header[:4] == ['run', 'learner', 'step', 'clean']
  assert 'worst union' in header and 'after linf/pgd' in header and 'after l2/pgd' in header
  assert [row[1] for row in table['rows']] == ['natural', 'robust', 'global']
  for row in table['rows']:
    accuracies = row[3:-1]
    assert all(math.isfinite(v) and 0 <= v <= 100 for v in accuracies), row
    # The worst case over norms cannot beat either norm, nor clean accuracy.
    values = dict(zip(header, row))
    assert values['worst union'] <= min(values['worst linf'], values['worst l2']) <= values['clean']
  md = (tiny_demo / 'demo_table.md').read_text()
  assert all(f'| {name} |' in md for name in RUNS)


def test_tiny_demo_writes_every_plot(tiny_demo):
  for name in RUNS:
    for png in ('tradeoff', 'schedules', 'eval_demo_attacks', 'eval_demo_norms'):
      _png_has_content(tiny_demo / name / 'plots' / f'{png}.png')
  _png_has_content(tiny_demo / 'plots' / 'demo_comparison.png')


def test_report_compares_the_demo_runs(tiny_demo, tmp_path):
  out = report.write_report([str(tiny_demo)], tmp_path / 'sub' / 'report.md')
  text = out.read_text()
  for section in ('## Config differences', '## Best on validation',
                  '## Test: final and best-on-validation checkpoints', '## Evaluation `demo`'):
    assert section in text, section
  # Only differing keys: the seed is shared; an expert one run lacks is one row.
  assert '`seed`' not in text and '`eval.best_metric`' in text
  assert '| `experts.natural` | yes | (absent) | yes |' in text
  assert '`experts.natural.task`' not in text
  links = [line[line.index('](') + 2:-1] for line in text.splitlines() if line.startswith('![')]
  assert len(links) == 3 * 4 + 1  # 4 per run, the suite's comparison
  for link in links:
    assert not link.startswith('/') and (out.parent / link).exists(), link
