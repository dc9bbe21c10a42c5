"""Evaluating a run's checkpoint: restore a learner, run the attacks on a fixed
test subset, write `<workdir>/eval/<name>.{json,csv,md}` and plots.

The CLI is `python -m generalist_jax.evaluate`; the suite calls `evaluate_run`.
An interrupted evaluation resumes from `<name>.state.npz` (saved every batch).
"""
from __future__ import annotations

import pathlib
from typing import Sequence

from generalist_jax import parallel
from generalist_jax.attacks import autoattack as aa
from generalist_jax.attacks import registry
from generalist_jax.evaluation import jitted
from generalist_jax.evaluation import leaderboard
from generalist_jax.evaluation import pipeline
from generalist_jax.evaluation import plots
from generalist_jax.method import step as step_lib
from generalist_jax.run import restore


def default_name(attacks: str, norms: Sequence[str], checkpoint: str, learner: str, n_ex: int,
                 subset: str = 'random') -> str:
  """The evaluation's file name.

  Args:
    attacks, norms, checkpoint, learner, n_ex: as `evaluate_run` (n_ex: the
      examples actually evaluated).
    subset: '_first' marks a --subset=first evaluation.

  Returns:
    '<attacks>_<norms>_<checkpoint>_<learner>_n<n_ex>[_first]' (commas of an attack
    list become '+').
  """
  name = f"{attacks.replace(',', '+')}_{'+'.join(norms)}_{checkpoint}_{learner}_n{n_ex}"
  return name + ('_first' if subset == 'first' else '')


def dataset_name(data_config) -> str:
  """The data's name for a leaderboard entry.

  Args:
    data_config: the run's `config.data`.

  Returns:
    The tfds name (or an npz's name), or the source ('sklearn_digits'); a
    downsampled one says so ('cifar10 (downsampled x2)').
  """
  name = data_config.name if data_config.source in ('tfds', 'npz') else data_config.source
  k = data_config.get('downsample', 1)
  return name if k == 1 else f'{name} (downsampled x{k})'


def _checked_settings(norms, eps, attacks: str, overrides: dict | None, n_ex: int, batch_size: int,
                      *, save_adv: bool, subset: str):
  """(norms, eps, overrides) with eps defaulted per norm and None overrides dropped,
  once they pass every check that needs no data (ValueError otherwise)."""
  registry.check_positive({'n_ex': n_ex, 'batch_size': batch_size})
  norms = list(norms)
  eps = list(eps) if eps is not None else [aa.DEFAULT_EPS[n] for n in norms]
  overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
  pipeline.check_settings(norms, eps, attacks, overrides)
  pipeline.check_save_adv(save_adv, norms)
  pipeline.check_subset(subset)
  return norms, eps, overrides


def _restore_learner(workdir: pathlib.Path, checkpoint: str, learner: str):
  """(config, dataset, setup, variables, step) of `learner` at `checkpoint`, with the
  whole test split, whatever subset the run tested on while training. Raises
  ValueError for a learner the run does not have."""
  config, dataset, setup, train_state, step = restore.restore_run(workdir, checkpoint,
                                                                  full_test=True)
  learners = step_lib.learners(train_state, setup)
  if learner not in learners:
    raise ValueError(f'--learner={learner!r}; this run has {sorted(learners)}')
  return config, dataset, setup, learners[learner], step


def _identity(checkpoint: str, step, learner: str, *, n_ex: int, split_size: int, batch_size: int,
              subset: str) -> dict:
  """What defines the evaluation beyond seed, n_ex and the plan: a resume must match
  it. A random subset is the default and left out, so older state files still resume."""
  return {
      'checkpoint': checkpoint, 'step': step, 'learner': learner, 'n_ex_requested': int(n_ex),
      'test_split_size': int(split_size), 'batch_size': batch_size,
      **({'subset': subset} if subset != 'random' else {})
  }


def evaluate_run(workdir, *, checkpoint: str = 'best', learner: str = 'global',
                 attacks: str = 'standard', norms: Sequence[str] = ('linf',),
                 eps: Sequence[float] | None = None, n_ex: int = 1000, batch_size: int = 256,
                 seed: int = 0, name: str | None = None, overrides: dict | None = None,
                 progress: bool = True, command: str = '', allow_large_eps: bool = False,
                 stop_after_batches: int | None = None, subset: str = 'random',
                 save_adv: bool = False) -> dict | None:
  """Evaluates `learner` of the run in `workdir` at `checkpoint`; writes
  <workdir>/eval/<name>.{json,csv,md} (`pipeline.evaluate_and_write`; resumable from
  <name>.state.npz) and the evaluation's plots in <workdir>/plots.

  Args:
    workdir: the run's directory.
    checkpoint, learner: 'last', 'best' or a step; a learner of the run ('global', ...).
    attacks: an AutoAttack version ('standard', 'fast', ...) or a comma list of attacks.
    norms, eps: one radius per norm, pixel units of [0, 1] (default: the CIFAR-10
      conventions 8/255, 0.5, 12).
    n_ex: test examples to evaluate (all when not fewer than the split).
    batch_size, seed: examples per attack call; the attacks' randomness.
    name: the files' name; None for `default_name`.
    overrides: changes to the standard budgets (steps, n_targets, restarts; None: standard).
    progress, command: show a progress bar; the command line, for the report.
    allow_large_eps: run even when the ball would hold every image (0-255 units?).
    stop_after_batches: stop early, as an interruption would (tests).
    subset: 'random' (a fixed random n_ex of the test split) or 'first' (as RobustBench).
    save_adv: also write <name>.adv.npz (`pipeline.write_adversarial`; one norm only).

  Returns:
    The report as written (a single-norm 'standard' evaluation at the standard budgets
    also writes the RobustBench entry <name>.model_info.json), or None if stopped early.

  Raises:
    ValueError: before anything is read: an unknown attack or subset, a size below 1,
      save_adv with several norms; an unknown learner or checkpoint; before any attack
      runs, attacks the model's classes cannot take (`evaluation.checks`).
  """
  norms, eps, overrides = _checked_settings(norms, eps, attacks, overrides, n_ex, batch_size,
                                            save_adv=save_adv, subset=subset)
  workdir = pathlib.Path(workdir)
  config, dataset, setup, variables, step = _restore_learner(workdir, checkpoint, learner)
  images, labels, example_ids = pipeline.choose_subset(*dataset.test, n_ex, subset)
  if len(labels) < n_ex:
    print(f'--n_ex={n_ex}: the test split has {len(labels)} examples; evaluating all of them.')
  name = name or default_name(attacks, norms, checkpoint, learner, len(labels), subset)
  identity = _identity(checkpoint, step, learner, n_ex=n_ex, split_size=len(dataset.test[1]),
                       batch_size=batch_size, subset=subset)
  eval_dir = workdir / 'eval'
  eval_dir.mkdir(parents=True, exist_ok=True)
  report = pipeline.evaluate_and_write(
      jitted.model_apply_fn(setup.model), variables, images, labels, stem=eval_dir / name,
      meta={'name': name, 'workdir': str(workdir), 'command': command, 'subset': subset
           }, norms=norms, eps=eps, attacks=attacks, overrides=overrides, seed=seed,
      batch_size=batch_size, example_ids=example_ids, identity=identity, save_adv=save_adv,
      allow_large_eps=allow_large_eps, progress=progress, stop_after_batches=stop_after_batches,
      model_name=f'the {learner!r} learner of {workdir}', dataset=dataset_name(config.data),
      architecture=leaderboard.architecture_name(config.model.to_dict()))
  if report is not None and parallel.is_main_process():
    plots.safely(plots.eval_plots, report, workdir / 'plots', name)  # warns, never raises
  return report
