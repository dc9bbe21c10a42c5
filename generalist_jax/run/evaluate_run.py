"""Evaluating a run's checkpoint: restore a learner, run the attacks on a fixed
test subset, write `<workdir>/eval/<name>.{json,csv,md}` and plots.

The CLI is `python -m generalist_jax.evaluate`; the suite calls `evaluate_run`.
An interrupted evaluation resumes from `<name>.state.npz` (saved every batch).
"""
from __future__ import annotations

import pathlib
import time
from typing import Sequence

from generalist_jax.attacks import autoattack as aa
from generalist_jax.attacks import registry
from generalist_jax.evaluation import leaderboard
from generalist_jax.evaluation import pipeline
from generalist_jax.evaluation import plots
from generalist_jax.evaluation import runner
from generalist_jax.method import step as step_lib
from generalist_jax.run import restore


def default_name(attacks: str, norms: Sequence[str], checkpoint: str, learner: str,
                 n_ex: int, subset: str = 'random') -> str:
  """The evaluation's file name; '_first' marks a --subset=first evaluation."""
  name = f"{attacks.replace(',', '+')}_{'+'.join(norms)}_{checkpoint}_{learner}_n{n_ex}"
  return name + ('_first' if subset == 'first' else '')


def dataset_name(data_config) -> str:
  """The data's name for a leaderboard entry: the tfds name (or an npz's label), or
  the source ('sklearn_digits'); a downsampled one says so."""
  name = data_config.name if data_config.source in ('tfds', 'npz') else data_config.source
  k = data_config.get('downsample', 1)
  return name if k == 1 else f'{name} (downsampled x{k})'


def evaluate_run(workdir, *, checkpoint: str = 'best', learner: str = 'global',
                 attacks: str = 'standard', norms: Sequence[str] = ('linf',),
                 eps: Sequence[float] | None = None, n_ex: int = 1000, batch_size: int = 256,
                 seed: int = 0, name: str | None = None, overrides: dict | None = None,
                 progress: bool = True, command: str = '', allow_large_eps: bool = False,
                 stop_after_batches: int | None = None, subset: str = 'random',
                 save_adv: bool = False) -> dict | None:
  """Evaluates `learner` of the run in `workdir` at `checkpoint` ('last', 'best', a step).

  attacks: 'standard', 'fast' or a comma list of `attacks.registry` names, run per norm
  in order; eps: one per norm, pixel units (default: the CIFAR-10 conventions 8/255,
  0.5, 12), refused when the ball would hold every image (eps in 0-255 units?) unless
  `allow_large_eps`; overrides: changes to the standard budgets (steps, n_targets,
  restarts); subset: 'random' (a fixed random n_ex of the test split) or 'first' (the
  first n_ex, as RobustBench); save_adv: also write <name>.adv.npz
  (`pipeline.write_adversarial`; one norm only). A single-norm 'standard' evaluation
  at the standard budgets also writes the RobustBench entry <name>.model_info.json.
  Returns the report dict, or None when stopped early (`stop_after_batches`, for
  tests). Raises ValueError for an unknown learner, attack, subset or checkpoint, for
  n_ex, batch_size or a size override below 1, for save_adv with several norms (before
  anything is read), and for attacks the model's classes cannot take (before any
  attack runs: `evaluation.checks`).
  """
  registry.check_positive({'n_ex': n_ex, 'batch_size': batch_size})
  workdir = pathlib.Path(workdir)
  norms = list(norms)
  eps = list(eps) if eps is not None else [aa.DEFAULT_EPS[n] for n in norms]
  overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
  pipeline.check_settings(norms, eps, attacks, overrides)
  pipeline.check_save_adv(save_adv, norms)
  pipeline.check_subset(subset)

  # The whole test split, whatever subset the run tested on while training.
  config, dataset, setup, train_state, step = restore.restore_run(workdir, checkpoint,
                                                                   full_test=True)
  learners = step_lib.learners(train_state, setup)
  if learner not in learners:
    raise ValueError(f'--learner={learner!r}; this run has {sorted(learners)}')
  variables = learners[learner]
  images, labels, example_ids = pipeline.choose_subset(*dataset.test, n_ex, subset)
  if len(labels) < n_ex:
    print(f'--n_ex={n_ex}: the test split has {len(labels)} examples; evaluating all of them.')
  name = name or default_name(attacks, norms, checkpoint, learner, len(labels), subset)
  # What defines the evaluation (with seed, n_ex and the plan): a resume must match.
  # A random subset is the default and left out, so older state files still resume.
  identity = {'checkpoint': checkpoint, 'step': step, 'learner': learner,
              'n_ex_requested': int(n_ex), 'test_split_size': int(len(dataset.test[1])),
              'batch_size': batch_size, **({'subset': subset} if subset != 'random' else {})}
  eval_dir = workdir / 'eval'
  eval_dir.mkdir(parents=True, exist_ok=True)
  started = time.time()
  x_adv = pipeline.clean_floats(images) if save_adv else None
  done = pipeline.evaluate(
      runner.model_apply_fn(setup.model), variables, images, labels, norms=norms, eps=eps,
      attacks=attacks, overrides=overrides, seed=seed, batch_size=batch_size,
      example_ids=example_ids, state_path=eval_dir / f'{name}.state.npz', identity=identity,
      x_adv=x_adv, allow_large_eps=allow_large_eps, progress=progress,
      stop_after_batches=stop_after_batches, model_name=f'the {learner!r} learner of {workdir}')
  if done is None:
    print(f"stopped early; start the same command again to resume "
          f"({eval_dir / f'{name}.state.npz'})")
    return None
  meta = {'name': name, 'workdir': str(workdir), 'command': command, 'subset': subset,
          'seconds_this_invocation': time.time() - started}
  report = pipeline.write_outputs(
      eval_dir / name, done, labels, meta, x_adv=x_adv, example_ids=example_ids,
      dataset=dataset_name(config.data), architecture=leaderboard.architecture_name(
          config.model.to_dict()))
  plots.safely(plots.eval_plots, report, workdir / 'plots', name)   # warns, never raises
  return report

