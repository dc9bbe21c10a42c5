"""Forking a run (`config.init_from`, run/fork.py) and pausing one (`stop_at_step`)."""
import json

import pytest

from generalist_jax.run import fork
from generalist_jax.run import loop
from generalist_jax.run import restore
from tests import run_helpers
from tests.conftest import write_tiny_npz
from tests.tiny_config import tiny_config

EPOCHS = 4  # 5 steps an epoch with the tiny npz: 20 steps, a checkpoint every 2
FORK_STEP = 10


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """(npz, the uninterrupted run's workdir, a source paused at FORK_STEP)."""
  base = tmp_path_factory.mktemp('fork')
  npz = write_tiny_npz(base / 'tiny.npz')
  config = tiny_config(npz, EPOCHS)
  config.eval.final_test = False
  loop.train_and_evaluate(config, str(base / 'straight'))
  loop.train_and_evaluate(config, str(base / 'source'), stop_at_step=FORK_STEP)
  return npz, base / 'straight', base / 'source'


def _fork_config(npz, source, step=FORK_STEP):
  config = tiny_config(npz, EPOCHS)
  config.eval.final_test = False
  config.init_from.workdir = str(source)
  config.init_from.step = step
  return config


def test_stop_at_step_pauses_with_a_checkpoint_there(runs):
  _, _, source = runs
  assert restore.restore_run(source, 'last').step == FORK_STEP


def test_fork_without_change_equals_the_uninterrupted_run(runs, tmp_path):
  npz, straight, source = runs
  loop.train_and_evaluate(_fork_config(npz, source), str(tmp_path / 'fork'))
  run_helpers.assert_same_state(run_helpers.final_state(tmp_path / 'fork'),
                                run_helpers.final_state(straight))
  # Where it came from is in its config; its log holds the source's records up to the step.
  saved = json.loads((tmp_path / 'fork' / 'config.json').read_text())
  assert saved['init_from'] == {'workdir': str(source), 'step': FORK_STEP}
  steps = [
      json.loads(line)['step']
      for line in (tmp_path / 'fork' / 'metrics.jsonl').read_text().splitlines()
  ]
  assert min(steps) < FORK_STEP < max(steps)
  # The source is left as it was: paused at the step.
  assert restore.restore_run(source, 'last').step == FORK_STEP


def test_fork_resumes_itself_once_started(runs, tmp_path):
  npz, straight, source = runs
  config = _fork_config(npz, source)
  loop.train_and_evaluate(config, str(tmp_path / 'fork'), stop_after_steps=3)  # a kill
  loop.train_and_evaluate(config, str(tmp_path / 'fork'))
  run_helpers.assert_same_state(run_helpers.final_state(tmp_path / 'fork'),
                                run_helpers.final_state(straight))


def test_fork_may_change_the_schedules(runs, tmp_path):
  npz, straight, source = runs
  config = _fork_config(npz, source)
  config.meta.sync.kind = 'never'
  config.experts.robust.mix_values = (1.0,) * 4
  config.experts.natural.mix_values = (0.0,) * 4
  loop.train_and_evaluate(config, str(tmp_path / 'fork'))
  state = run_helpers.final_state(tmp_path / 'fork')
  assert int(state.step) == 5 * EPOCHS
  with pytest.raises(AssertionError):  # another continuation than the straight run
    run_helpers.assert_same_state(state, run_helpers.final_state(straight))


@pytest.mark.parametrize('field, value', [('model.width', 0.25), ('seed', 1), ('batch_size', 4),
                                          ('data.val_size', 4)])
def test_fork_refuses_a_structural_change_naming_the_field(runs, tmp_path, field, value):
  npz, _, source = runs
  config = _fork_config(npz, source)
  section, _, name = field.rpartition('.')
  (config[section] if section else config)[name] = value
  with pytest.raises(fork.ForkError, match=field.replace('.', r'\.')):
    loop.train_and_evaluate(config, str(tmp_path / 'fork'))
  assert not (tmp_path / 'fork' / 'checkpoints' / 'last').exists() or not any(
      (tmp_path / 'fork' / 'checkpoints' / 'last').iterdir())


def test_fork_from_a_step_not_saved_lists_the_saved_ones(runs, tmp_path):
  npz, _, source = runs
  with pytest.raises(fork.ForkError, match=r'saved steps are \[.*10\]'):
    loop.train_and_evaluate(_fork_config(npz, source, step=7), str(tmp_path / 'fork'))


def test_fork_of_a_directory_that_is_no_run(runs, tmp_path):
  npz, _, _ = runs
  with pytest.raises(fork.ForkError, match='not a run directory'):
    loop.train_and_evaluate(_fork_config(npz, tmp_path / 'nothing'), str(tmp_path / 'fork'))
