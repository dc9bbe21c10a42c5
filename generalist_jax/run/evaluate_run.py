"""Evaluating a run's checkpoint: restore a learner, run the attacks on a fixed
test subset, write `<workdir>/eval/<name>.{json,csv,md}` and plots.

The CLI is `python -m generalist_jax.evaluate`; the suite calls `evaluate_run`.
An interrupted evaluation resumes from `<name>.state.npz` (saved every batch).
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Sequence

import numpy as np

from generalist_jax.attacks import autoattack as aa
from generalist_jax.attacks import registry
from generalist_jax.attacks import threat
from generalist_jax.evaluation import plots
from generalist_jax.evaluation import reports
from generalist_jax.evaluation import runner
from generalist_jax.method import step as step_lib
from generalist_jax.run import restore


def default_name(attacks: str, norms: Sequence[str], checkpoint: str, learner: str,
                 n_ex: int) -> str:
  return f"{attacks.replace(',', '+')}_{'+'.join(norms)}_{checkpoint}_{learner}_n{n_ex}"


def evaluate_run(workdir, *, checkpoint: str = 'best', learner: str = 'global',
                 attacks: str = 'standard', norms: Sequence[str] = ('linf',),
                 eps: Sequence[float] | None = None, n_ex: int = 1000, batch_size: int = 256,
                 seed: int = 0, name: str | None = None, overrides: dict | None = None,
                 progress: bool = True, command: str = '', allow_large_eps: bool = False,
                 stop_after_batches: int | None = None) -> dict | None:
  """Evaluates `learner` of the run in `workdir` at `checkpoint` ('last', 'best', a step).

  attacks: 'standard', 'fast' or a comma list of `attacks.registry` names, run per norm
  in order; eps: one per norm, pixel units (default: the CIFAR-10 conventions 8/255,
  0.5, 12), refused when the ball would hold every image (eps in 0-255 units?) unless
  `allow_large_eps`; overrides: changes to the standard budgets (steps, n_targets,
  restarts).
  Returns the report dict, or None when stopped early (`stop_after_batches`, for
  tests). Raises ValueError for an unknown learner, attack or checkpoint, for n_ex,
  batch_size or a size override below 1 (before anything is read), and for attacks
  the model's classes cannot take (before any attack runs: `evaluation.checks`).
  """
  registry.check_positive({'n_ex': n_ex, 'batch_size': batch_size})
  workdir = pathlib.Path(workdir)
  norms = list(norms)
  eps = list(eps) if eps is not None else [aa.DEFAULT_EPS[n] for n in norms]
  if len(eps) != len(norms):
    raise ValueError(f'--eps needs one value per norm ({norms}), got {eps}')
  overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
  plan = runner.make_plan(norms, eps, attacks, overrides)

  # The whole test split, whatever subset the run tested on while training.
  config, dataset, setup, train_state, step = restore.restore_run(workdir, checkpoint,
                                                                   full_test=True)
  learners = step_lib.learners(train_state, setup)
  if learner not in learners:
    raise ValueError(f'--learner={learner!r}; this run has {sorted(learners)}')
  variables = learners[learner]
  images, labels, example_ids = runner.test_subset(*dataset.test, n_ex)
  if len(labels) < n_ex:
    print(f'--n_ex={n_ex}: the test split has {len(labels)} examples; evaluating all of them.')
  name = name or default_name(attacks, norms, checkpoint, learner, len(labels))
  for norm, e in zip(norms, eps):
    problem = threat.eps_problem(norm, float(e), int(np.prod(images.shape[1:])))
    if problem and not allow_large_eps:
      raise ValueError(f'--eps: {problem} (--allow_large_eps to run it anyway)')

  settings = {'checkpoint': checkpoint, 'step': step, 'learner': learner,
              'n_ex': int(len(labels)), 'n_ex_requested': int(n_ex),
              'test_split_size': int(len(dataset.test[1])),
              'batch_size': batch_size, 'seed': seed,
              'attacks': [dataclasses.asdict(s) for s in plan]}
  eval_dir = workdir / 'eval'
  eval_dir.mkdir(parents=True, exist_ok=True)
  state_path = eval_dir / f'{name}.state.npz'
  state = reports.load_state(state_path, settings)
  if state is not None:
    print(f'resuming {state_path}')
  started = time.time()
  apply_fn = runner.model_apply_fn(setup.model)
  state = runner.run_evaluation(apply_fn, variables, images, labels, plan,
                                batch_size=batch_size, seed=seed, example_ids=example_ids,
                                state=state,
                                save=lambda s: reports.save_state(state_path, s, settings),
                                progress=progress, stop_after_batches=stop_after_batches,
                                model_name=f'the {learner!r} learner of {workdir}')
  if not runner.is_complete(state, plan):
    print(f'stopped early; start the same command again to resume ({state_path})')
    return None
  missing = sorted({f'{n}/{m}' for n in norms for m in aa.missing_components(attacks, n)})
  meta = dict(settings, name=name, workdir=str(workdir), versions=reports.library_versions(),
              missing_components=missing, seconds_this_invocation=time.time() - started,
              command=command,
              sanity=runner.sanity_checks(state, plan, runner.determinism_gap(
                  apply_fn, variables, images[:min(len(labels), batch_size)])))
  report = reports.write_reports(eval_dir / name, state, plan, labels, meta)
  plots.safely(plots.eval_plots, report, workdir / 'plots', name)   # warns, never raises
  print(f"{name}: clean {100 * report['clean_acc']:.2f}%, robust (worst case) "
        f"{100 * report['robust_acc']:.2f}% -> {eval_dir / name}.md")
  for w in meta['sanity']['warnings']:
    print('WARNING:', w)
  return report
