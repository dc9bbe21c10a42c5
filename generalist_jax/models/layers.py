"""Layers shared by the models: channel scaling, BatchNorm with PyTorch's
defaults, convolutions with torch's inits and padding, in-model normalisation."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from generalist_jax.models import cpu_ops

# PyTorch BatchNorm2d defaults. PyTorch's momentum 0.1 weights the *new* batch,
# flax's momentum weights the *old* running value: 0.1 there == 0.9 here.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# ResNets / WRN: He-normal with fan_out, i.e. torch's
# kaiming_normal_(mode='fan_out', nonlinearity='relu') and TRADES' WRN init
# normal(0, sqrt(2 / (k * k * out_channels))). Untruncated, like torch.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# SmallCNN: TRADES uses torch's kaiming_normal_ defaults (fan_in).
conv_init_fan_in = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


def scale(channels: int, width: float) -> int:
  """A layer's channels at the model's width.

  Args:
    channels: the channels at width 1.
    width: the model's `width` multiplier.

  Returns:
    `channels` x `width`, rounded, at least 1.
  """
  return max(1, int(round(channels * width)))


def batch_norm(train: bool, name: str, ops: str = 'xla') -> nn.BatchNorm:
  """flax's BatchNorm with PyTorch's defaults; with ops='cpu' its training-mode
  gradient takes the closed form (`ClosedFormBatchNorm`). `name` is required: flax's
  automatic names follow the class, and the variables must not depend on `ops`.

  Args:
    train: True normalises with batch statistics and updates the running ones;
      False uses the running ones.
    name: the submodule's name.
    ops: 'xla' or 'cpu' (see cpu_ops).

  Returns:
    An unbound BatchNorm module, to call on [..., C] inputs.
  """
  cls = ClosedFormBatchNorm if ops == 'cpu' else nn.BatchNorm
  return cls(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


class ClosedFormBatchNorm(nn.BatchNorm):
  """`nn.BatchNorm` whose training-mode step on float32 inputs normalised over
  every axis but the last runs `cpu_ops.batch_norm_train` (same forward, closed-form
  VJP); the same variables, and flax's own code for everything else (running
  averages, initialisation, other dtypes, axes, masks, axis_name)."""

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    if not self._closed_form_applies(x, use_running_average, mask):
      return super().__call__(x, use_running_average, mask=mask)
    features = (x.shape[-1],)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    scale = self.param('scale', self.scale_init, features, self.param_dtype)
    bias = self.param('bias', self.bias_init, features, self.param_dtype)
    y, mean, var = cpu_ops.batch_norm_train(x, scale, bias, self.epsilon)
    ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
    ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y

  def _closed_form_applies(self, x, use_running_average, mask) -> bool:
    running = nn.merge_param('use_running_average', self.use_running_average, use_running_average)
    if running or self.is_initializing() or mask is not None or x.dtype != jnp.float32:
      return False
    params = [nn.unbox(self.get_variable('params', n)) for n in ('scale', 'bias')]
    return (self.axis in (-1, x.ndim - 1) and self.axis_name is None and self.use_scale and
            self.use_bias and self.use_fast_variance and self.force_float32_reductions and
            self.dtype in (None, jnp.float32) and
            all(p is not None and p.dtype == jnp.float32 for p in params))


def conv_fn(ops: str):
  """The convolution primitive for `ops`.

  Args:
    ops: 'xla' or 'cpu' (see cpu_ops).

  Returns:
    `cpu_ops.conv_general_dilated` for 'cpu', else `lax.conv_general_dilated`.
  """
  return cpu_ops.conv_general_dilated if ops == 'cpu' else lax.conv_general_dilated


def max_pool_2x2(x: jax.Array, ops: str) -> jax.Array:
  """2x2 max-pool with stride 2 (odd sizes floor, like MaxPool2d).

  Args:
    x: [B, H, W, C].
    ops: 'cpu' runs `cpu_ops.max_pool_2x2`, else flax's `nn.max_pool`.

  Returns:
    [B, H // 2, W // 2, C].
  """
  if ops == 'cpu':
    return cpu_ops.max_pool_2x2(x)
  return nn.max_pool(x, (2, 2), strides=(2, 2))  # Floors, like MaxPool2d.


def conv3x3(features: int, strides: int = 1, name: str | None = None, ops: str = 'xla'):
  """A bias-free 3x3 `nn.Conv` with torch's padding=1 and `conv_init`.

  Args:
    features: output channels.
    strides: the stride of both spatial axes.
    name: the submodule's name (the PyTorch twins mirror it).
    ops: 'xla' or 'cpu': whose convolution runs it (`conv_fn`).

  Returns:
    An unbound `nn.Conv`, to call on [B, H, W, C].
  """
  # Explicit (1, 1) padding, not 'SAME': for stride 2 on even sizes flax's
  # SAME pads (0, 1) while PyTorch's padding=1 pads (1, 1).
  return nn.Conv(features, (3, 3), strides=(strides, strides), padding=((1, 1), (1, 1)),
                 use_bias=False, kernel_init=conv_init, conv_general_dilated=conv_fn(ops),
                 name=name)


def conv1x1(features: int, strides: int = 1, name: str | None = None, ops: str = 'xla'):
  """A bias-free 1x1 `nn.Conv` (shortcut projections) with `conv_init`, no padding.

  Args:
    features, strides, name, ops: as `conv3x3`.

  Returns:
    An unbound `nn.Conv`, to call on [B, H, W, C].
  """
  return nn.Conv(features, (1, 1), strides=(strides, strides), padding='VALID', use_bias=False,
                 kernel_init=conv_init, conv_general_dilated=conv_fn(ops), name=name)


def normalize(x: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """(x - mean) / std per channel: the first op of every model.

  Args:
    x: [..., C] images in [0, 1].
    mean, std: per-channel statistics in [0, 1] units, of length 1 or C.

  Returns:
    The normalised x, of x's shape and dtype.

  Raises:
    ValueError: mean or std has neither 1 nor C entries.
  """
  channels = x.shape[-1]
  for what, v in (('mean', mean), ('std', std)):
    # Length 1 broadcasts; anything else must match, because a 3-channel mean
    # silently broadcasting a 1-channel image to 3 channels is a nasty bug.
    if len(v) not in (1, channels):
      raise ValueError(f'{what} has {len(v)} entries but the input has '
                       f'{channels} channels.')
  mean = jnp.asarray(mean, x.dtype)
  std = jnp.asarray(std, x.dtype)
  return (x - mean) / std


class Classifier(nn.Module):
  """The fields every image classifier here takes (see `models.create_model`)."""
  num_classes: int
  width: float = 1.0  # multiplier on every channel count
  mean: tuple = (0.0,)  # per-channel input normalisation, [0, 1] units
  std: tuple = (1.0,)
  ops: str = 'xla'  # 'xla' or 'cpu' (cpu_ops formulations); see create_model
