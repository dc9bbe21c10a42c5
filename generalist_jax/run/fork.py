"""Forking a run (`config.init_from`): a new workdir starts from another run's
checkpoint at a given step, with the whole state (step counter, experts, EMAs,
global learner, optimizer states, PRNG key; the data position is the step) and a
config that may differ only where the state's structure and the data stay the same:
sync, mixing, lr and weight-decay schedules, training attacks, evaluation,
checkpointing. Continued with nothing changed, a fork equals the uninterrupted run
bit for bit (tests/test_fork.py).

Why: warm starts and ablations that share a prefix. Before the first sync window
every row of a Generalist study is the same run, and Generalist equals its beta = 1
control until beta first moves, so the rows fork from shared checkpoints instead of
training each from scratch.

The fork also takes the source's validation records up to the step (metrics.jsonl,
so its plots show the whole trajectory), its best-on-validation checkpoint when that
is still the best at the step, and its data_info.json (the model's normalisation).
Nothing of the source is changed.
"""
from __future__ import annotations

import fnmatch
import json
import math
import pathlib

from generalist_jax import parallel
from generalist_jax.run import checkpoints
from generalist_jax.run import files
from generalist_jax.run import restore
from generalist_jax.run import run_config

# Fields a fork may change (fnmatch patterns over flattened names); any other
# difference changes the state's structure, the data or its order, and is refused.
FORKABLE = run_config.OPERATIONAL + (
    'num_epochs', 'init_from.*', 'eval.*', 'checkpoint.*', 'meta.sync.*', 'meta.mix_epochs',
    'meta.drift_lr_scale', 'meta.ema_max_decay', 'meta.ema_horizon', 'meta.timescale', 'meta.clock',
    'experts.*.mix_values', 'experts.*.optimizer.lr_epochs', 'experts.*.optimizer.lr_values',
    'experts.*.optimizer.lr', 'experts.*.optimizer.schedule', 'experts.*.optimizer.weight_decay',
    'experts.*.attack.*', 'experts.*.norm_attacks.*', 'experts.*.beta')


class ForkError(ValueError):
  """`init_from` names a run or a step this config cannot continue from."""


def source_workdir(config, workdir: pathlib.Path) -> pathlib.Path | None:
  """The run to fork from: `init_from.workdir` while `workdir` has no checkpoint of
  its own (once it has, it resumes itself like any run); None otherwise.

  Args:
    config: the fork's run config.
    workdir: the fork's run directory.

  Returns:
    The source's absolute path, or None.

  Raises:
    ForkError: init_from.workdir is `workdir` itself.
  """
  source = config.get('init_from', None)
  if source is None or not source.workdir or run_config.has_checkpoints(workdir):
    return None
  source = pathlib.Path(source.workdir).absolute()
  if source == pathlib.Path(workdir).absolute():
    raise ForkError(f'config.init_from.workdir is the workdir itself ({source}); name '
                    'another run.')
  return source


def refused_differences(source_config: dict, config) -> dict:
  """{field: (source value, fork value)} for every difference outside FORKABLE.

  Args:
    source_config: the source's config.json, as a dict.
    config: the fork's run config (ConfigDict).

  Returns:
    Flattened dotted field -> (source value, fork value); {} when it may fork.
  """
  current = json.loads(config.to_json_best_effort(sort_keys=True))
  differences = run_config.config_differences(source_config, current)
  return {
      k: v for k, v in differences.items() if not any(fnmatch.fnmatchcase(k, p) for p in FORKABLE)
  }


def check_source(config, source: pathlib.Path, total_steps: int) -> None:
  """Raises ForkError when `source` is no run, lacks the step (or it lies past the
  fork's `total_steps`), or was trained with a config that differs from `config` in
  a field a fork cannot change (all named).

  Args:
    config: the fork's run config.
    source: the source's run directory (`source_workdir`).
    total_steps: the fork's T, in optimizer steps.

  Raises:
    ForkError: as above.
  """
  try:
    source_config = json.loads((source / 'config.json').read_text())
  except FileNotFoundError:
    raise ForkError(f'config.init_from.workdir={str(source)!r} is not a run directory '
                    '(no config.json).') from None
  refused = refused_differences(source_config, config)
  if refused:
    rows = '\n'.join(f'  {k}: {a!r} -> {b!r}' for k, (a, b) in refused.items())
    raise ForkError(
        f'cannot fork {source}: these fields differ from its config (source -> fork) and '
        f'would change the state\'s structure, the data or its order:\n{rows}\n'
        'A fork may change only: ' + ', '.join(FORKABLE) + '. Train a new run instead.')
  step = int(config.init_from.step)
  if step > total_steps:
    raise ForkError(f'config.init_from.step={step} lies past the fork\'s last step '
                    f'{total_steps}; raise num_epochs or fork from an earlier step.')
  saved = checkpoints.RunCheckpoints(source / 'checkpoints', 1, read_only=True)
  try:
    steps = saved.steps('last')
  finally:
    saved.close()
  if step not in steps:
    raise ForkError(f'config.init_from.step={step}: {source} has no checkpoint at that step; '
                    f'its saved steps are {steps}. Train the source to it with '
                    f'--stop_at_step={step}, or pick one of those.')


def data_info(source: pathlib.Path, workdir: pathlib.Path, info, *, write: bool):
  """The source run's preprocessing constants, saved as the fork's own (so the model
  stays the function the source trained).

  Args:
    source: the source's run directory.
    workdir: the fork's run directory.
    info: the loaded data's `DatasetInfo`.
    write: whether this process writes the fork's data_info.json (process 0).

  Returns:
    The `DatasetInfo` to use (`restore.run_data_info` of the source).

  Raises:
    ValueError: the data's classes or image shape differ from the source's.
  """
  info = restore.run_data_info(source, info, write=False)
  if write:
    files.write_text_atomic(
        pathlib.Path(workdir) / restore.DATA_INFO, json.dumps(restore.info_dict(info), indent=2))
  return info


def _copy_metrics(source: pathlib.Path, workdir: pathlib.Path, step: int) -> None:
  path = source / 'metrics.jsonl'
  if not path.exists():
    return
  kept = [
      line for line in path.read_text().splitlines()
      if line.strip() and json.loads(line).get('step', 0) <= step
  ]
  files.write_text_atomic(
      pathlib.Path(workdir) / 'metrics.jsonl', ''.join(line + '\n' for line in kept))


def start(config, source: pathlib.Path, workdir: pathlib.Path, template,
          ckpts: checkpoints.RunCheckpoints) -> tuple:
  """Restores the source's state at `init_from.step` and saves it as the fork's first
  checkpoint (with the source's best one, when that is the best at the step), and
  on process 0 copies the source's metrics.jsonl records up to the step.

  Args:
    config: the fork's run config.
    source: the source's run directory (checked by `check_source`).
    workdir: the fork's run directory.
    template: what to restore into (`restore.state_template`).
    ckpts: the fork's own checkpoints.

  Returns:
    (state, run meta {'best_value', 'best_step'}); the best is reset (-inf, -1)
    when the source's best at the step is no longer saved.
  """
  step = int(config.init_from.step)
  saved = checkpoints.RunCheckpoints(source / 'checkpoints', 1, read_only=True)
  try:
    state, meta = saved.restore(template, 'last', step)
    best = None
    if 0 <= meta.get('best_step', -1) <= step and meta['best_step'] in saved.steps('best'):
      best = saved.restore(template, 'best', meta['best_step'])
  finally:
    saved.close()
  run_meta = {
      'best_value': meta.get('best_value', -math.inf), 'best_step': meta.get('best_step', -1)
  }
  if best is not None:
    ckpts.save(run_meta['best_step'], best[0], best[1], best=True)
  elif run_meta['best_step'] >= 0:
    # The source found a better state after the step; that one is not the fork's.
    print(f'fork: the best-on-validation checkpoint of {source} at step {step} '
          f'(step {run_meta["best_step"]}) is no longer saved there; the fork selects '
          f'among its own validations from step {step} on.')
    run_meta = {'best_value': -math.inf, 'best_step': -1}
  ckpts.save(step, state, dict(meta, **run_meta))
  ckpts.wait()
  if parallel.is_main_process():
    _copy_metrics(source, workdir, step)
    print(f'forked {workdir} from {source} at step {step}.')
  return state, run_meta
