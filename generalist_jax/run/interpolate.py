"""The method's premise, measured: accuracy along the straight line between two
learners of a run (e.g. the final natural and robust EMAs).

Generalist mixes its experts' weights; that only works where the straight path
between them stays accurate. A dip below both ends (a barrier) means no mixing
schedule can give a global learner better than its experts at that scale.
"""
from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from generalist_jax.evaluation import learners as learner_eval
from generalist_jax.evaluation import plots
from generalist_jax.evaluation import runner
from generalist_jax.method import step as step_lib
from generalist_jax.run import restore


def mix(a, b, alpha: float):
  """(1 - alpha) * a + alpha * b, leaf by leaf (BatchNorm statistics too).

  Args:
    a, b: variable pytrees of one structure.
    alpha: in [0, 1]; 0 gives a, 1 gives b.

  Returns:
    The mixed pytree.
  """
  return jax.tree.map(lambda x, y: (1.0 - alpha) * x + alpha * y, a, b)


def barrier(values) -> float:
  """How far the path dips below the worse of its two ends (>= 0; in the values'
  units, here accuracy fractions).

  Args:
    values: the accuracies along the path, ends first and last.

  Returns:
    min(first, last) - min(values), at least 0.
  """
  values = np.asarray(values, float)
  return float(max(0.0, min(values[0], values[-1]) - values.min()))


def interpolate(workdir, a: str, b: str, *, checkpoint: str = 'last', points: int = 11,
                split: str = 'test', n_ex: int | None = 1000, batch_size: int | None = None,
                seed: int = 0) -> dict:
  """Clean and robust accuracy (the run's `eval.test_attack`, or `val_attack` on the
  'val' split) at `points` evenly spaced alphas from learner `a` (alpha 0) to `b`
  (alpha 1); writes <workdir>/interpolation/<a>_to_<b>_<checkpoint>.{json,png}.

  Args:
    workdir: the run directory.
    a, b: learner names (an expert, '<expert>_ema' or 'global').
    checkpoint: 'last', 'best' or a step number.
    points: alphas, >= 2 (the two ends included).
    split: 'test' (the whole test split, then `n_ex` of it) or 'val'.
    n_ex: test examples, a fixed random subset; None for all. Not read for 'val'.
    batch_size: None for the run's `eval.batch_size`.
    seed: the attack's randomness (the same at every alpha).

  Returns:
    The result written to the .json: alpha, clean_acc and robust_acc lists, their
    `barrier`s, and where they came from.

  Raises:
    ValueError: points < 2, an unknown learner, split or checkpoint.
  """
  if points < 2:
    raise ValueError(f'--points={points}: need at least the two ends.')
  config, dataset, setup, state, step = restore.restore_run(workdir, checkpoint,
                                                            full_test=split == 'test')
  learners = step_lib.learners(state, setup)
  for name in (a, b):
    if name not in learners:
      raise ValueError(f'learner {name!r} is not in this run; it has {sorted(learners)}')
  if split not in ('val', 'test'):
    raise ValueError(f"--split={split!r}: use 'val' or 'test'.")
  images, labels = dataset.val if split == 'val' else dataset.test
  if n_ex is not None and split == 'test':
    images, labels, _ = runner.sample_test_points(images, labels, n_ex)
  attack = config.eval.val_attack if split == 'val' else config.eval.test_attack
  eval_fn = learner_eval.make_eval_fn(setup.model, attack, setup.mesh, setup.compute_dtype)
  alphas = np.linspace(0.0, 1.0, points)
  rows = [
      learner_eval.summarize(
          learner_eval.evaluate_flags(eval_fn, mix(learners[a], learners[b], float(alpha)), images,
                                      labels, batch_size or config.eval.batch_size, seed))
      for alpha in alphas
  ]
  result = {
      'workdir': str(workdir), 'checkpoint': checkpoint, 'step': step, 'a': a, 'b': b,
      'split': split, 'n': int(len(labels)), 'attack': attack.to_dict(),
      'alpha': [float(x) for x in alphas], 'clean_acc': [r['clean_acc'] for r in rows],
      'robust_acc': [r['robust_acc'] for r in rows]
  }
  result['barrier'] = {
      'clean_acc': barrier(result['clean_acc']), 'robust_acc': barrier(result['robust_acc'])
  }
  stem = pathlib.Path(workdir) / 'interpolation' / f'{a}_to_{b}_{checkpoint}'
  stem.parent.mkdir(parents=True, exist_ok=True)
  stem.with_suffix('.json').write_text(json.dumps(result, indent=2))
  plots.safely(plots.interpolation_plot, result, stem.with_suffix('.png'))
  return result
