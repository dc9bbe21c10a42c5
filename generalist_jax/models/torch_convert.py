"""Flax variables <-> PyTorch state_dicts of the `torch_models` twins (needs the
`torch` extra), both ways. The CLI that exports a run's learner is
`python -m generalist_jax.export_torch`; `load(path)` rebuilds an exported learner
in eval mode, e.g. for the official AutoAttack or RobustBench. The other way,
`flax_variables` reads a PyTorch state_dict (ours, or RobustBench's key names
for PreAct-ResNet-18, ResNet-18 and WideResNet, see `robustbench_keys`) into the
flax model, e.g. to evaluate it with our AutoAttack:

  from generalist_jax.models import torch_convert
  model = torch_convert.load('model.pt')   # inputs NCHW in [0, 1]

Layouts: conv kernels HWIO -> OIHW, dense kernels transposed, BatchNorm
scale/bias/mean/var -> weight/bias/running_mean/running_var, and SmallCNN's
fc1 rows reordered from flax's HWC flatten to PyTorch's CHW flatten.
"""
from __future__ import annotations

import json
import pathlib
import re

import flax.traverse_util
import numpy as np
import torch

from generalist_jax.models import torch_models

_PARAM_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}
_STAT_NAMES = {'mean': 'running_mean', 'var': 'running_var'}


def _torch_param(name: str, value: np.ndarray) -> np.ndarray:
  if name != 'kernel':
    return value
  if value.ndim == 4:  # HWIO -> OIHW
    return value.transpose(3, 2, 0, 1)
  if value.ndim == 2:  # (in, out) -> (out, in)
    return value.T
  raise ValueError(f'unexpected kernel rank {value.ndim}')


def _hwc_to_chw_rows(kernel: np.ndarray, chw: tuple) -> np.ndarray:
  """A dense kernel (H*W*C, out) reading an HWC flatten -> one reading CHW."""
  c, h, w = chw
  return kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)


def state_dict(variables: dict, torch_model: torch.nn.Module) -> dict:
  """flax {'params', 'batch_stats'} -> a state_dict that `torch_model` loads strictly.

  Args:
    variables: the flax model's {'params', 'batch_stats'}.
    torch_model: its twin (`torch_models.create_model` of the same config).

  Returns:
    name -> torch tensor (copies, in the twin's dtypes), with zero
    `num_batches_tracked` counters.

  Raises:
    ValueError: naming the keys or shapes when the two models do not match
      (other width, depth...).
  """
  params = {
      k: np.asarray(v) for k, v in flax.traverse_util.flatten_dict(variables['params']).items()
  }
  if isinstance(torch_model, torch_models.SmallCNN) and ('fc1', 'kernel') in params:
    params[('fc1', 'kernel')] = _hwc_to_chw_rows(params[('fc1', 'kernel')], torch_model.flat_shape)
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
    result[key] = torch.from_numpy(np.array(value)).to(expected[key].dtype)  # a writable copy
  return result


def _hwc_rows_from_chw(kernel: np.ndarray, chw: tuple) -> np.ndarray:
  """Inverse of `_hwc_to_chw_rows`."""
  c, h, w = chw
  return kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)


def _flax_param(name: str, value: np.ndarray) -> np.ndarray:
  """Inverse of `_torch_param`."""
  if name != 'kernel':
    return value
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T


_BLOCKS = (r'^(layer\d)\.(\d+)\.', r'\1_\2.')  # nn.Sequential blocks -> named blocks
_RENAMES = {   # twin class -> (pattern, replacement): RobustBench / kuangliu names -> ours
    'WideResNet': ((r'^(block\d)\.layer\.(\d+)\.', r'\1_\2.'), (r'\.convShortcut\.', '.shortcut.'),
                   (r'^bn1\.', 'bn.')),
    'PreActResNet18': (_BLOCKS, (r'\.shortcut\.0\.', '.shortcut.')),
    'ResNet18': (_BLOCKS, (r'\.shortcut\.0\.', '.shortcut_conv.'),
                 (r'\.shortcut\.1\.', '.shortcut_bn.')),
}


def robustbench_keys(torch_state: dict, twin: torch.nn.Module) -> dict:
  """`torch_state` with its keys renamed to the twin's where they are RobustBench's
  (or kuangliu/pytorch-cifar's; a DataParallel 'module.' prefix is dropped). RobustBench
  WRNs' unused `sub_block1` is left out.

  Args:
    torch_state: a PyTorch state_dict.
    twin: the twin whose key names to rename to (its class picks the renames).

  Returns:
    A new dict with the same values; keys the twin already has stay as they are.
  """
  expected = set(twin.state_dict())
  out = {}
  for key, value in torch_state.items():
    key = re.sub(r'^module\.', '', key)
    if key.startswith('sub_block1.'):
      continue
    if key not in expected:
      for pattern, replacement in _RENAMES.get(type(twin).__name__, ()):
        key = re.sub(pattern, replacement, key)
    out[key] = value
  return out


def flax_variables(torch_state: dict, twin: torch.nn.Module, template: dict) -> dict:
  """A PyTorch state_dict of `twin`'s architecture -> flax {'params', 'batch_stats'}.

  Args:
    torch_state: the state_dict (tensors or arrays; RobustBench key names are
      renamed by `robustbench_keys`).
    twin: the `torch_models` twin of the flax model.
    template: the flax variables whose structure and shapes to fill (e.g.
      `models.init_variables(model, ...)`).

  Returns:
    {'params', 'batch_stats'} of float32 numpy arrays.

  Raises:
    ValueError: naming the keys and shapes that do not match.
  """
  state = {
      k: v.detach().cpu().numpy() if hasattr(v, 'detach') else np.asarray(v)
      for k, v in robustbench_keys(torch_state, twin).items()
  }
  expected = twin.state_dict()
  missing = sorted(k for k in expected if k not in state and not k.endswith('num_batches_tracked'))
  if missing:
    raise ValueError(f'the state_dict has no {missing[:8]} that {type(twin).__name__} needs '
                     '(another architecture, depth or width?)')
  params = flax.traverse_util.flatten_dict(template['params'])
  out_params = {}
  for path, leaf in params.items():
    value = state['.'.join(path[:-1] + (_PARAM_NAMES[path[-1]],))]
    if isinstance(twin, torch_models.SmallCNN) and path == ('fc1', 'kernel'):
      value = _hwc_rows_from_chw(value.T, twin.flat_shape)
    else:
      value = _flax_param(path[-1], value)
    if value.shape != tuple(leaf.shape):
      raise ValueError(f"{'/'.join(path)}: the state_dict gives shape {value.shape}, the "
                       f'flax model wants {tuple(leaf.shape)} (same width / depth?)')
    out_params[path] = np.asarray(value, np.float32)
  stats = {}
  for path, leaf in flax.traverse_util.flatten_dict(template.get('batch_stats') or {}).items():
    stats[path] = np.asarray(state[f"{'.'.join(path[:-1])}.{_STAT_NAMES[path[-1]]}"],
                             np.float32).reshape(leaf.shape)
  return {
      'params': flax.traverse_util.unflatten_dict(out_params),
      'batch_stats': flax.traverse_util.unflatten_dict(stats) if stats else {}
  }


def torch_twin(model_config, num_classes: int, mean, std, image_shape,
               variables: dict | None = None) -> torch.nn.Module:
  """The `torch_models` twin, in eval mode, with `variables` loaded if given.

  Args:
    model_config, num_classes, mean, std, image_shape: as
      `torch_models.create_model`.
    variables: flax {'params', 'batch_stats'} to load (`state_dict`), or None to
      keep torch's random init.

  Returns:
    The torch module in eval mode.
  """
  model = torch_models.create_model(model_config, num_classes, mean, std, image_shape)
  if variables is not None:
    model.load_state_dict(state_dict(variables, model), strict=True)
  return model.eval()


def load(path: str | pathlib.Path) -> torch.nn.Module:
  """Rebuilds an exported learner from `path` and `path.json` (eval mode).

  Args:
    path: the exported state_dict (`export_torch`); `<path>.json` holds its
      model config, num_classes, mean, std and image_shape.

  Returns:
    The torch module in eval mode, on the CPU; inputs NCHW in [0, 1].
  """
  path = pathlib.Path(path)
  spec = json.loads(pathlib.Path(f'{path}.json').read_text())
  model = torch_models.create_model(spec['model'], spec['num_classes'], spec['mean'], spec['std'],
                                    tuple(spec['image_shape']))
  model.load_state_dict(torch.load(path, map_location='cpu', weights_only=True), strict=True)
  return model.eval()
