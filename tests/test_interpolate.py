"""The interpolation tool: its ends are the two learners themselves."""
import json

import numpy as np
import pytest

from generalist_jax.evaluation import learners as learner_eval
from generalist_jax.method import step as step_lib
from generalist_jax.run import interpolate
from generalist_jax.run import loop
from generalist_jax.run import restore
from tests.tiny_config import tiny_config


def test_interpolation_endpoints_equal_the_learners_own_accuracies(tmp_path, tiny_npz):
  config = tiny_config(tiny_npz)
  config.eval.final_test = False
  workdir = tmp_path / 'run'
  loop.train_and_evaluate(config, str(workdir))
  result = interpolate.interpolate(workdir, 'natural', 'robust_ema', points=3, split='test',
                                   n_ex=None, seed=5)
  run = restore.restore_run(workdir, 'last')
  eval_fn = learner_eval.make_eval_fn(run.setup.model, run.config.eval.test_attack)
  own = {
      name: learner_eval.summarize(
          learner_eval.evaluate_flags(eval_fn,
                                      step_lib.learners(run.state, run.setup)[name],
                                      *run.dataset.test, run.config.eval.batch_size,
                                      5)) for name in ('natural', 'robust_ema')
  }
  assert result['alpha'] == [0.0, 0.5, 1.0]
  for end, name in ((0, 'natural'), (-1, 'robust_ema')):
    assert result['clean_acc'][end] == own[name]['clean_acc']
    assert result['robust_acc'][end] == own[name]['robust_acc']
  on_disk = json.loads((workdir / 'interpolation' / 'natural_to_robust_ema_last.json').read_text())
  assert on_disk['barrier']['clean_acc'] >= 0 and on_disk['n'] == 16
  assert (workdir / 'interpolation' / 'natural_to_robust_ema_last.png').stat().st_size > 1000
  with pytest.raises(ValueError, match='not in this run'):
    interpolate.interpolate(workdir, 'natural', 'teacher', points=3)


def test_barrier_is_the_dip_below_the_worse_end():
  assert interpolate.barrier([0.5, 0.3, 0.6]) == pytest.approx(0.2)
  assert interpolate.barrier(np.array([0.5, 0.55, 0.6])) == 0.0
