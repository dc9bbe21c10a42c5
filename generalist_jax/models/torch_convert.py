"""Flax variables <-> PyTorch state_dicts of the `torch_models` twins (needs the
`torch` extra). The CLI that exports a run's learner is
`python -m generalist_jax.export_torch`; `load(path)` rebuilds an exported learner
in eval mode, e.g. for the official AutoAttack or RobustBench:

  from generalist_jax.models import torch_convert
  model = torch_convert.load('model.pt')   # inputs NCHW in [0, 1]

Layouts: conv kernels HWIO -> OIHW, dense kernels transposed, BatchNorm
scale/bias/mean/var -> weight/bias/running_mean/running_var, and SmallCNN's
fc1 rows reordered from flax's HWC flatten to PyTorch's CHW flatten.
"""
from __future__ import annotations

import json
import pathlib

import flax.traverse_util
import numpy as np
import torch

from generalist_jax.models import torch_models

_PARAM_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}
_STAT_NAMES = {'mean': 'running_mean', 'var': 'running_var'}


def _torch_param(name: str, value: np.ndarray) -> np.ndarray:
  if name != 'kernel':
    return value
  if value.ndim == 4:            # HWIO -> OIHW
    return value.transpose(3, 2, 0, 1)
  if value.ndim == 2:            # (in, out) -> (out, in)
    return value.T
  raise ValueError(f'unexpected kernel rank {value.ndim}')


def _hwc_to_chw_rows(kernel: np.ndarray, chw: tuple) -> np.ndarray:
  """A dense kernel (H*W*C, out) reading an HWC flatten -> one reading CHW."""
  c, h, w = chw
  return kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)


def state_dict(variables: dict, torch_model: torch.nn.Module) -> dict:
  """flax {'params', 'batch_stats'} -> a state_dict that `torch_model` loads strictly.

  Fails naming the keys when the two models do not match (other width, depth...).
  """
  params = {k: np.asarray(v) for k, v in
            flax.traverse_util.flatten_dict(variables['params']).items()}
  if isinstance(torch_model, torch_models.SmallCNN) and ('fc1', 'kernel') in params:
    params[('fc1', 'kernel')] = _hwc_to_chw_rows(params[('fc1', 'kernel')],
                                                 torch_model.flat_shape)
  out = {}
  for path, value in params.items():
    out['.'.join(path[:-1] + (_PARAM_NAMES[path[-1]],))] = _torch_param(path[-1], value)
  stats = flax.traverse_util.flatten_dict(variables.get('batch_stats') or {})
  for path, value in stats.items():
    prefix = '.'.join(path[:-1])
    out[f'{prefix}.{_STAT_NAMES[path[-1]]}'] = np.asarray(value)
    out[f'{prefix}.num_batches_tracked'] = np.zeros((), np.int64)

  expected = torch_model.state_dict()
  missing, extra = sorted(set(expected) - set(out)), sorted(set(out) - set(expected))
  if missing or extra:
    raise ValueError(f'flax variables do not match {type(torch_model).__name__}: missing '
                     f'{missing[:8]}, unexpected {extra[:8]} (same model config?)')
  result = {}
  for key, value in out.items():
    if tuple(value.shape) != tuple(expected[key].shape):
      raise ValueError(f'{key}: flax gives shape {value.shape}, the PyTorch twin wants '
                       f'{tuple(expected[key].shape)} (same width / image shape?)')
    result[key] = torch.from_numpy(np.array(value)).to(expected[key].dtype)   # a writable copy
  return result


def torch_twin(model_config, num_classes: int, mean, std, image_shape,
               variables: dict | None = None) -> torch.nn.Module:
  """The `torch_models` twin, in eval mode, with `variables` loaded if given."""
  model = torch_models.create_model(model_config, num_classes, mean, std, image_shape)
  if variables is not None:
    model.load_state_dict(state_dict(variables, model), strict=True)
  return model.eval()


def load(path: str | pathlib.Path) -> torch.nn.Module:
  """Rebuilds an exported learner from `path` and `path.json` (eval mode)."""
  path = pathlib.Path(path)
  spec = json.loads(pathlib.Path(f'{path}.json').read_text())
  model = torch_models.create_model(spec['model'], spec['num_classes'], spec['mean'],
                                    spec['std'], tuple(spec['image_shape']))
  model.load_state_dict(torch.load(path, map_location='cpu', weights_only=True), strict=True)
  return model.eval()
