"""Reading a run back: its config, data, static setup and a checkpoint's state."""
from __future__ import annotations

import json
import pathlib
from typing import Any, NamedTuple

import jax
import ml_collections
import orbax.checkpoint as ocp

from generalist_jax import data as data_lib
from generalist_jax.method import step as step_lib
from generalist_jax.run import checkpoints


class RestoredRun(NamedTuple):
  config: ml_collections.ConfigDict
  dataset: data_lib.Dataset
  setup: step_lib.Setup
  state: Any          # step_lib.TrainState
  step: int


def state_template(state) -> Any:
  """Shapes, dtypes and shardings of a TrainState: what orbax restores into."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def read_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The config a run saved (`config.json`); ValueError when there is none."""
  path = pathlib.Path(workdir) / 'config.json'
  if not path.exists():
    raise ValueError(f'{workdir} is not a run directory (no config.json).')
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def restore_run(workdir, checkpoint: str = 'last', *, full_test: bool = False) -> RestoredRun:
  """A run's checkpoint ('last', 'best' or a step number), read-only (safe beside a
  live run). `full_test`: the whole test split, not the run's `data.test_size`
  subset. Raises ValueError when there is no such checkpoint."""
  workdir = pathlib.Path(workdir)
  config = read_config(workdir)
  data_config = config.data.copy_and_resolve_references()
  if full_test:
    data_config.test_size = None
  dataset = data_lib.load_dataset(data_config)
  setup = step_lib.make_setup(config, dataset.info,
                              data_lib.steps_per_epoch(dataset, config.batch_size))
  template = state_template(step_lib.create_train_state(setup, dataset.info.image_shape,
                                                        config.seed))
  ckpts = checkpoints.RunCheckpoints(workdir / 'checkpoints', config.checkpoint.keep,
                                     read_only=True)
  try:
    which, step = (checkpoint, None) if checkpoint in ('last', 'best') else (
        'last', int(checkpoint))
    restored = ckpts.restore(template, which, step)
  finally:
    ckpts.close()
  if restored is None:
    raise ValueError(f'no {checkpoint!r} checkpoint in {workdir / "checkpoints"}')
  state, _ = restored
  return RestoredRun(config, dataset, setup, state, int(state.step))
