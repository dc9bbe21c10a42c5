"""PyTorch twins of the flax models (optional: needs the `torch` extra).

Same architectures, widths and input normalisation (inside the model, inputs in
[0, 1], NCHW), so an exported learner (`export_torch.py`) gives the same logits
in eval mode and can be checked by the official AutoAttack / RobustBench, and the
benchmark (`experiments/benchmarks/bench.py`) times the same network in both
frameworks.

Sub-module names mirror the flax module names (`layer1_0.bn1`, `conv1_bn`, ...)
so the export is a rename plus the layout changes. One real difference in
layout: SmallCNN flattens CHW before its first dense layer, as the TRADES
original does (flax flattens HWC); the export permutes that kernel.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from generalist_jax.models import layers
from generalist_jax.models import resnets

# PyTorch's BatchNorm momentum weights the new batch: 1 - flax's.
_BN_MOMENTUM = 1.0 - layers.BN_MOMENTUM


def _bn(channels: int) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(channels, eps=layers.BN_EPSILON, momentum=_BN_MOMENTUM)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class _Normalize(nn.Module):
  """(x - mean) / std per channel; constants, not in the state_dict."""

  def __init__(self, mean: Sequence[float], std: Sequence[float]):
    super().__init__()
    self.register_buffer('mean',
                         torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                         persistent=False)
    self.register_buffer('std',
                         torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

  def forward(self, x):
    return (x - self.mean) / self.std


class _Twin(nn.Module):
  """A flax model's twin: inputs NCHW in [0, 1], normalised inside, then `_logits`."""

  def __init__(self, mean: Sequence[float], std: Sequence[float]):
    super().__init__()
    self.normalize = _Normalize(mean, std)

  def forward(self, x):
    """The logits.

    Args:
      x: [B, C, H, W] float images in [0, 1].

    Returns:
      [B, num_classes] logits.
    """
    return self._logits(self.normalize(x))

  def _logits(self, x):
    raise NotImplementedError


class PreActBlock(nn.Module):
  """Twin of `resnets.PreActBlock`: the projection shortcut, where there is one,
  takes relu(bn1(x))."""

  def __init__(self, cin: int, features: int, stride: int):
    super().__init__()
    self.bn1 = _bn(cin)
    self.conv1 = _conv3x3(cin, features, stride)
    self.bn2 = _bn(features)
    self.conv2 = _conv3x3(features, features)
    self.shortcut = (_conv1x1(cin, features, stride) if stride != 1 or cin != features else None)

  def forward(self, x):
    """The block's output.

    Args:
      x: [B, cin, H, W] activations.

    Returns:
      [B, features, ceil(H / stride), ceil(W / stride)].
    """
    out = F.relu(self.bn1(x))
    shortcut = self.shortcut(out) if self.shortcut is not None else x
    out = self.conv1(out)
    out = self.conv2(F.relu(self.bn2(out)))
    return out + shortcut


class BasicBlock(nn.Module):
  """Twin of `resnets.BasicBlock` (post-activation, kuangliu/pytorch-cifar)."""

  def __init__(self, cin: int, features: int, stride: int):
    super().__init__()
    self.conv1 = _conv3x3(cin, features, stride)
    self.bn1 = _bn(features)
    self.conv2 = _conv3x3(features, features)
    self.bn2 = _bn(features)
    self.has_shortcut = stride != 1 or cin != features
    if self.has_shortcut:
      self.shortcut_conv = _conv1x1(cin, features, stride)
      self.shortcut_bn = _bn(features)

  def forward(self, x):
    """The block's output.

    Args:
      x: [B, cin, H, W] activations.

    Returns:
      [B, features, ceil(H / stride), ceil(W / stride)].
    """
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    shortcut = self.shortcut_bn(self.shortcut_conv(x)) if self.has_shortcut else x
    return F.relu(out + shortcut)


class _ResNetBase(_Twin):
  """Normalisation, stem conv, named blocks; subclasses add the head."""

  def __init__(self, mean, std, in_channels: int, stem_channels: int):
    super().__init__(mean, std)
    self.conv1 = _conv3x3(in_channels, stem_channels)

  def _add_blocks(self, block, prefix: str, cin: int, stages, blocks_per_stage: int) -> int:
    self.block_names = []
    for i, (channels, stride) in enumerate(stages):
      for j in range(blocks_per_stage):
        name = f'{prefix}{i + 1}_{j}'
        self.add_module(name, block(cin, channels, stride if j == 0 else 1))
        self.block_names.append(name)
        cin = channels
    return cin

  def _blocks(self, x):
    for name in self.block_names:
      x = getattr(self, name)(x)
    return x


def _scaled(stages, width: float) -> list:
  return [(layers.scale(c, width), stride) for c, stride in stages]


class _PreActNet(_ResNetBase):
  """Stem conv, pre-activation blocks, then BN-ReLU, global average pool and the dense
  head (`head_name`: the flax twin's name for it)."""

  def __init__(self, num_classes: int, mean, std, in_channels: int, stem_channels: int,
               blocks: tuple, head_name: str):
    super().__init__(mean, std, in_channels, stem_channels)
    prefix, stages, blocks_per_stage = blocks
    cin = self._add_blocks(PreActBlock, prefix, stem_channels, stages, blocks_per_stage)
    self.bn = _bn(cin)
    self.head_name = head_name
    self.add_module(head_name, nn.Linear(cin, num_classes))

  def _logits(self, x):
    x = F.relu(self.bn(self._blocks(self.conv1(x))))
    return getattr(self, self.head_name)(x.mean(dim=(2, 3)))


class PreActResNet18(_PreActNet):
  """Twin of `resnets.PreActResNet18`; `in_channels` is the images' C."""

  def __init__(self, num_classes: int, width: float = 1.0, mean=(0.0,), std=(1.0,),
               in_channels: int = 3):
    super().__init__(num_classes, mean, std, in_channels, layers.scale(64, width),
                     ('layer', _scaled(resnets.RESNET18_STAGES, width), 2), 'linear')


class ResNet18(_ResNetBase):
  """Twin of `resnets.ResNet18`; `in_channels` is the images' C."""

  def __init__(self, num_classes: int, width: float = 1.0, mean=(0.0,), std=(1.0,),
               in_channels: int = 3):
    super().__init__(mean, std, in_channels, layers.scale(64, width))
    self.bn1 = _bn(layers.scale(64, width))
    cin = self._add_blocks(BasicBlock, 'layer', layers.scale(64, width),
                           _scaled(resnets.RESNET18_STAGES, width), 2)
    self.linear = nn.Linear(cin, num_classes)

  def _logits(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    return self.linear(self._blocks(x).mean(dim=(2, 3)))


class WideResNet(_PreActNet):
  """Twin of `resnets.WideResNet` (same `depth` rule); `in_channels` is the
  images' C."""

  def __init__(self, num_classes: int, depth: int = 34, widen_factor: int = 10, width: float = 1.0,
               mean=(0.0,), std=(1.0,), in_channels: int = 3):
    super().__init__(num_classes, mean, std, in_channels, layers.scale(16, width),
                     ('block', _scaled(resnets.wrn_stages(widen_factor),
                                       width), resnets.wrn_blocks_per_stage(depth)), 'fc')


class SmallCNN(_Twin):
  """TRADES SmallCNN (without dropout), optionally with BatchNorm; CHW flatten."""

  def __init__(self, num_classes: int, batch_norm: bool = False, width: float = 1.0, mean=(0.0,),
               std=(1.0,), image_shape=(32, 32, 3)):
    super().__init__(mean, std)
    s = lambda c: layers.scale(c, width)
    self.batch_norm = batch_norm
    h, w, cin = image_shape
    for name, cout in (('conv1', 32), ('conv2', 32), ('conv3', 64), ('conv4', 64)):
      self.add_module(name, nn.Conv2d(cin, s(cout), 3, bias=not batch_norm))
      if batch_norm:
        self.add_module(f'{name}_bn', _bn(s(cout)))
      cin = s(cout)
    for _ in range(2):  # two VALID convs, then a floor 2x2 pool
      h, w = (h - 4) // 2, (w - 4) // 2
    self.flat_shape = (cin, h, w)  # CHW before fc1
    fin = cin * h * w
    for name in ('fc1', 'fc2'):
      self.add_module(name, nn.Linear(fin, s(200), bias=not batch_norm))
      if batch_norm:
        self.add_module(f'{name}_bn',
                        nn.BatchNorm1d(s(200), eps=layers.BN_EPSILON, momentum=_BN_MOMENTUM))
      fin = s(200)
    self.fc3 = nn.Linear(fin, num_classes)

  def _act(self, x, name):
    if self.batch_norm:
      x = getattr(self, f'{name}_bn')(x)
    return F.relu(x)

  def _logits(self, x):
    for i, name in enumerate(('conv1', 'conv2', 'conv3', 'conv4')):
      x = self._act(getattr(self, name)(x), name)
      if i % 2 == 1:
        x = F.max_pool2d(x, 2, 2)
    x = x.flatten(1)
    x = self._act(self.fc1(x), 'fc1')
    x = self._act(self.fc2(x), 'fc2')
    return self.fc3(x)


class MLP(_Twin):
  """The flax MLP's twin: two hidden layers (BatchNorm optional). Flattens HWC, as
  flax does, so the dense kernels need no reordering."""

  def __init__(self, num_classes: int, batch_norm: bool = True, width: float = 1.0, mean=(0.0,),
               std=(1.0,), image_shape=(8, 8, 1)):
    super().__init__(mean, std)
    self.batch_norm = batch_norm
    fin, hidden = int(np.prod(image_shape)), layers.scale(256, width)
    for name in ('fc1', 'fc2'):
      self.add_module(name, nn.Linear(fin, hidden, bias=not batch_norm))
      if batch_norm:
        self.add_module(f'{name}_bn',
                        nn.BatchNorm1d(hidden, eps=layers.BN_EPSILON, momentum=_BN_MOMENTUM))
      fin = hidden
    self.logits = nn.Linear(fin, num_classes)

  def _logits(self, x):
    x = x.permute(0, 2, 3, 1).flatten(1)  # NCHW -> HWC rows
    for name in ('fc1', 'fc2'):
      x = getattr(self, name)(x)
      if self.batch_norm:
        x = getattr(self, f'{name}_bn')(x)
      x = F.relu(x)
    return self.logits(x)


def _resnet(cls):
  return lambda c, common, image_shape: cls(in_channels=int(image_shape[-1]), **common)


# The same keys as models.MODELS: (model config, common fields, image shape) -> module.
TWINS = {
    'preact_resnet18': _resnet(PreActResNet18),
    'resnet18': _resnet(ResNet18),
    'wide_resnet': lambda c, common, image_shape: WideResNet(
        depth=int(c.get('depth', 34)), widen_factor=int(c.get('widen_factor', 10)), in_channels=int(
            image_shape[-1]), **common),
    'small_cnn': lambda c, common, image_shape: SmallCNN(
        batch_norm=bool(c.get('batch_norm', False)), image_shape=tuple(image_shape), **common),
    'mlp': lambda c, common, image_shape: MLP(batch_norm=bool(c.get('batch_norm', True)),
                                              image_shape=tuple(image_shape), **common),
}


def create_model(model_config, num_classes: int, mean: tuple, std: tuple,
                 image_shape: tuple = (32, 32, 3)) -> nn.Module:
  """The twin of `models.create_model(model_config, ...)`; NCHW inputs in [0, 1].

  Args:
    model_config: the flax model's config; the same fields are read, except
      `ops` (a flax-only choice).
    num_classes: the number of logits.
    mean, std: per-channel input normalisation in [0, 1] units.
    image_shape: (H, W, C) of one image: C for the stem, and H, W for SmallCNN's
      and the MLP's first dense layer.

  Returns:
    The torch module, in training mode and randomly initialised (load weights
    with `torch_convert`).

  Raises:
    ValueError: the model has no twin in TWINS.
  """
  name = model_config.get('name')
  if name not in TWINS:
    raise ValueError(f'Model {name!r} has no PyTorch twin; twins: {", ".join(TWINS)}.')
  common = dict(num_classes=num_classes, width=float(model_config.get('width', 1.0)),
                mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))
  return TWINS[name](model_config, common, image_shape)
