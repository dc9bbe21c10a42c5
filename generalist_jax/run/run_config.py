"""A workdir belongs to one config. Starting it again with another config is
refused before any work (naming the fields that differ), unless the difference is
only operational (logging, threads, where the data lives), or the user asks to
start over, which moves the old run aside: nothing saved is ever deleted."""
from __future__ import annotations

import json
import pathlib
import time

import jax
from jax.experimental import multihost_utils

from generalist_jax import parallel
from generalist_jax.config import builders
from generalist_jax.evaluation import compare
from generalist_jax.run import files
from generalist_jax.run import workdir_lock

# Fields that change how a run is executed or logged, not what it computes.
OPERATIONAL = ('progress_bar', 'log_every_steps', 'data.num_threads', 'data.prefetch',
               'data.data_dir', 'data.path', 'checkpoint.keep', 'eval.final_test',
               'eval.around_sync')
SUPERSEDED = 'superseded'


class ConfigChangedError(ValueError):
  """The workdir holds a run trained with another config."""


def config_differences(saved: dict, current: dict) -> dict:
  """{field: (saved value, current value)} for every flattened field that differs.

  A field the saved config lacks counts as its default (`builders.base_config()`):
  runs saved before the field existed computed exactly that, so they still resume.

  Args:
    saved: the saved config.json, as a dict.
    current: the current config, as a JSON dict.

  Returns:
    Dotted field -> (saved value, current value); '(absent)' for a missing side.
  """
  a, b = compare.flatten(saved), compare.flatten(current)
  defaults = compare.flatten(json.loads(builders.base_config().to_json_best_effort()))
  a.update({k: defaults[k] for k in b if k not in a and k in defaults})
  return {
      k: (a.get(k, '(absent)'), b.get(k, '(absent)'))
      for k in sorted(set(a) | set(b))
      if a.get(k, '(absent)') != b.get(k, '(absent)')
  }


def _run_defining(differences: dict) -> dict:
  return {k: v for k, v in differences.items() if k not in OPERATIONAL}


def start_over(workdir: pathlib.Path) -> pathlib.Path | None:
  """Moves everything of the old run into <workdir>/superseded/<time>/ (process 0;
  every process waits for it). The lock file and earlier superseded runs stay.

  Args:
    workdir: the run directory.

  Returns:
    Where it went; None for an empty workdir, and on processes other than 0.
  """
  target = None
  keep = (SUPERSEDED, workdir_lock.LOCK_NAME)  # the lock stays: this run holds it
  entries = [p for p in workdir.iterdir() if p.name not in keep] if workdir.exists() else []
  if entries and parallel.is_main_process():
    target = workdir / SUPERSEDED / time.strftime('%Y%m%d-%H%M%S')
    target.mkdir(parents=True)
    for p in entries:
      p.rename(target / p.name)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('start_over')
  return target


def has_checkpoints(workdir: pathlib.Path) -> bool:
  """Whether any training was saved (a config.json alone, e.g. after a data error, is
  not a run yet).

  Args:
    workdir: the run's directory.

  Returns:
    Whether <workdir>/checkpoints/last or best holds a numbered step.
  """
  return any(p.name.isdigit()
             for which in ('last', 'best')
             for p in (workdir / 'checkpoints' / which).glob('*'))


def check_and_write(config, workdir: pathlib.Path, *, start_over_allowed: bool = False) -> None:
  """Refuses (ConfigChangedError) a workdir whose saved config.json differs from
  `config` in a field that decides the run, once it has checkpoints; with
  `start_over_allowed` the old run is moved aside instead. Writes config.json
  (process 0), keeping a replaced one as config.previous.json.

  Args:
    config: the run config.
    workdir: the run directory.
    start_over_allowed: the --start_over flag.

  Raises:
    ConfigChangedError: naming the fields that differ (saved -> now).
  """
  path = workdir / 'config.json'
  current = json.loads(config.to_json_best_effort(sort_keys=True))
  saved_text = path.read_text() if path.exists() else None
  saved = None if saved_text is None else json.loads(saved_text)
  trained = has_checkpoints(workdir)
  if jax.process_count() > 1:  # all processes have read before process 0 moves or writes
    multihost_utils.sync_global_devices('config_read')
  if saved is not None:
    differences = config_differences(saved, current)
    defining = _run_defining(differences) if trained else {}
    if defining and start_over_allowed:
      moved = start_over(workdir)
      print(f'--start_over: the previous run in {workdir} was moved to {moved}.')
    elif defining:
      rows = '\n'.join(f'  {k}: {old!r} -> {new!r}' for k, (old, new) in defining.items())
      raise ConfigChangedError(
          f'{workdir} holds a run trained with another config; these fields differ '
          f'(saved -> now):\n{rows}\nNothing was changed. To resume it, run with its own '
          f'config ({path}); to train the new config, use another --workdir, or pass '
          '--start_over to move the old run into '
          f'{workdir / SUPERSEDED}/<time>/ (kept, not deleted) and start from step 0.')
    elif differences and parallel.is_main_process():
      print('config: ' + ', '.join(differences) + ' changed (operational, or nothing '
            f'trained yet); the old config is kept as {workdir / "config.previous.json"}.')
      files.write_text_atomic(workdir / 'config.previous.json', saved_text)
  if parallel.is_main_process():
    files.write_text_atomic(path, config.to_json_best_effort(indent=2, sort_keys=True))
