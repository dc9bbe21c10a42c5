"""Reading a run back: its config, data, static setup and a checkpoint's state."""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, NamedTuple

import jax
import ml_collections
import orbax.checkpoint as ocp

from generalist_jax import data as data_lib
from generalist_jax.method import step as step_lib
from generalist_jax.run import checkpoints
from generalist_jax.run import files
from generalist_jax.run import run_config


class RestoredRun(NamedTuple):
  """What `restore_run` reads back: the run's config, its dataset (with the run's
  saved preprocessing constants), static setup, the checkpoint's TrainState and
  its step."""
  config: ml_collections.ConfigDict
  dataset: data_lib.Dataset
  setup: step_lib.Setup
  state: Any  # step_lib.TrainState
  step: int


def state_template(state) -> Any:
  """Shapes, dtypes and shardings of a TrainState: what orbax restores into.

  Args:
    state: a TrainState (e.g. `create_train_state`'s, or `jax.eval_shape` of it).

  Returns:
    The same pytree of `jax.ShapeDtypeStruct`s.
  """
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def read_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The config a run saved (`config.json`).

  Args:
    workdir: the run directory.

  Returns:
    The ConfigDict.

  Raises:
    ValueError: there is no config.json.
  """
  path = pathlib.Path(workdir) / 'config.json'
  if not path.exists():
    raise ValueError(f'{workdir} is not a run directory (no config.json).')
  return ml_collections.ConfigDict(json.loads(path.read_text()))


DATA_INFO = 'data_info.json'


def info_dict(info: data_lib.DatasetInfo) -> dict:
  """The JSON-able form of a dataset's info.

  Args:
    info: the `data.DatasetInfo`.

  Returns:
    The dict of data_info.json (lists, ints and floats).
  """
  return {
      'num_classes': int(info.num_classes), 'image_shape': list(info.image_shape),
      'mean': [float(m) for m in info.mean], 'std': [float(s) for s in info.std]
  }


def run_data_info(workdir, info: data_lib.DatasetInfo, *, write: bool) -> data_lib.DatasetInfo:
  """The run's preprocessing constants (classes, image shape, normalisation mean/std),
  saved in <workdir>/data_info.json when the run first starts (`write`) and used
  from then on by resumes, evaluation and export, so the model stays the same
  function when the data file changes. A changed mean/std is reported (the saved
  one is used); other classes or image shapes are refused.

  Before the run's first checkpoint the data's own constants hold (and are written
  again with `write`), on every process alike.

  Args:
    workdir: the run directory.
    info: the loaded data's `DatasetInfo`.
    write: whether this process writes data_info.json (process 0 of a training
      start; False for readers).

  Returns:
    The `DatasetInfo` the run uses.

  Raises:
    ValueError: the data's classes or image shape differ from the saved ones.
  """
  path = pathlib.Path(workdir) / DATA_INFO
  # Decided alike on every process of a job (the file alone could be old or just
  # rewritten by process 0): before the first checkpoint the data's own constants hold.
  if not path.exists() or not run_config.has_checkpoints(pathlib.Path(workdir)):
    if write:  # first start (or nothing trained yet): these constants define the run
      files.write_text_atomic(path, json.dumps(info_dict(info), indent=2))
    return info
  saved = json.loads(path.read_text())
  now = info_dict(info)
  for field in ('num_classes', 'image_shape'):
    if saved[field] != now[field]:
      raise ValueError(f'the data now has {field}={now[field]}, but the run in {workdir} was '
                       f'trained with {saved[field]} ({path}); use the data it was trained on.')
  if any(abs(a - b) > 1e-7 for k in ('mean', 'std') for a, b in zip(saved[k], now[k])):
    print(f'WARNING: the data\'s normalisation statistics differ from the run\'s '
          f'(mean {now["mean"]} vs {saved["mean"]}, std {now["std"]} vs {saved["std"]}); '
          f'using the run\'s saved ones ({path}).')
  return data_lib.DatasetInfo(num_classes=saved['num_classes'],
                              image_shape=tuple(saved['image_shape']), mean=tuple(saved['mean']),
                              std=tuple(saved['std']))


def restore_run(workdir, checkpoint: str = 'last', *, full_test: bool = False) -> RestoredRun:
  """A run's checkpoint, read-only (safe beside a live run).

  Args:
    workdir: the run directory.
    checkpoint: 'last', 'best' or a step number (as a string or int).
    full_test: load the whole test split, not the run's `data.test_size` subset.

  Returns:
    The `RestoredRun`.

  Raises:
    ValueError: no config.json, data that does not fit the run
      (`run_data_info`), or no such checkpoint.
  """
  workdir = pathlib.Path(workdir)
  config = read_config(workdir)
  data_config = config.data.copy_and_resolve_references()
  if full_test:
    data_config.test_size = None
  dataset = data_lib.load_dataset(data_config)
  dataset = dataclasses.replace(dataset, info=run_data_info(workdir, dataset.info, write=False))
  setup = step_lib.make_setup(config, dataset.info,
                              data_lib.steps_per_epoch(dataset, config.batch_size))
  template = state_template(
      step_lib.create_train_state(setup, dataset.info.image_shape, config.seed))
  ckpts = checkpoints.RunCheckpoints(workdir / 'checkpoints', config.checkpoint.keep,
                                     read_only=True)
  try:
    which, step = (checkpoint, None) if checkpoint in ('last', 'best') else ('last',
                                                                             int(checkpoint))
    restored = ckpts.restore(template, which, step)
  finally:
    ckpts.close()
  if restored is None:
    raise ValueError(f'no {checkpoint!r} checkpoint in {workdir / "checkpoints"}')
  state, _ = restored
  return RestoredRun(config, dataset, setup, state, int(state.step))
