"""Residual networks of the adversarial-training literature (flax.linen, NHWC).

* `PreActResNet18`: Rice et al. 2020 ("Overfitting in adversarially robust
  deep learning"), 11,171,146 params at 10 classes.
* `ResNet18`: kuangliu/pytorch-cifar, 11,173,962 params.
* `WideResNet`: TRADES / MART WRN (pre-activation blocks), WRN-34-10 has
  46,160,474 params.

Inputs [B, H, W, C] float32 in [0, 1] (normalised inside); logits [B, K].
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from generalist_jax.models import layers


class PreActBlock(nn.Module):
  """Pre-activation basic block (He et al. 2016b).

  Shared by PreActResNet18 and the TRADES WRN, whose `BasicBlock` is the same
  block: when the shortcut needs a projection it takes relu(bn1(x)), otherwise
  it is the raw input.
  """
  features: int
  strides: int = 1
  ops: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out = nn.relu(layers.batch_norm(train, 'bn1', self.ops)(x))
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = layers.conv1x1(self.features, self.strides, 'shortcut', self.ops)(out)
    else:
      shortcut = x
    out = layers.conv3x3(self.features, self.strides, 'conv1', self.ops)(out)
    out = nn.relu(layers.batch_norm(train, 'bn2', self.ops)(out))
    out = layers.conv3x3(self.features, 1, 'conv2', self.ops)(out)
    return out + shortcut


class BasicBlock(nn.Module):
  """Post-activation basic block of kuangliu/pytorch-cifar's ResNet."""
  features: int
  strides: int = 1
  ops: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out = layers.conv3x3(self.features, self.strides, 'conv1', self.ops)(x)
    out = nn.relu(layers.batch_norm(train, 'bn1', self.ops)(out))
    out = layers.conv3x3(self.features, 1, 'conv2', self.ops)(out)
    out = layers.batch_norm(train, 'bn2', self.ops)(out)
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = layers.conv1x1(self.features, self.strides, 'shortcut_conv', self.ops)(x)
      shortcut = layers.batch_norm(train, 'shortcut_bn', self.ops)(shortcut)
    else:
      shortcut = x
    return nn.relu(out + shortcut)


RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride)


def residual_stages(x, block, stages: Sequence[tuple], blocks_per_stage: int, *, width: float,
                    ops: str, train: bool, prefix: str):
  """Blocks `<prefix><stage>_<j>` (called inside a compact module); the first of a
  stage takes its stride.

  Args:
    x: [B, H, W, C] activations.
    block: the block class, `block(features, strides, ops, name=)(x, train)`.
    stages: (channels, stride) per stage, channels before `width` scaling.
    blocks_per_stage: blocks in every stage.
    width: the model's channel multiplier.
    ops: 'xla' or 'cpu' (see cpu_ops).
    train: BatchNorm mode.
    prefix: the blocks' name prefix (the variable names the PyTorch twins map).

  Returns:
    The last block's output, [B, H', W', channels of the last stage].
  """
  for i, (channels, strides) in enumerate(stages):
    for j in range(blocks_per_stage):
      x = block(layers.scale(channels, width), strides if j == 0 else 1, ops,
                name=f'{prefix}{i + 1}_{j}')(x, train)
  return x


class PreActResNet18(layers.Classifier):
  """PreActResNet18 of Rice et al. 2020: 3x3 stem, [2, 2, 2, 2] PreActBlocks."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.normalize(x, self.mean, self.std)
    x = layers.conv3x3(layers.scale(64, self.width), 1, 'conv1', self.ops)(x)
    x = residual_stages(x, PreActBlock, RESNET18_STAGES, 2, width=self.width, ops=self.ops,
                        train=train, prefix='layer')
    x = nn.relu(layers.batch_norm(train, 'bn', self.ops)(x))
    x = jnp.mean(x, axis=(1, 2))  # == avg_pool2d(4) on 32x32 inputs.
    return nn.Dense(self.num_classes, name='linear')(x)


class ResNet18(layers.Classifier):
  """CIFAR ResNet-18 of kuangliu/pytorch-cifar."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.normalize(x, self.mean, self.std)
    x = layers.conv3x3(layers.scale(64, self.width), 1, 'conv1', self.ops)(x)
    x = nn.relu(layers.batch_norm(train, 'bn1', self.ops)(x))
    x = residual_stages(x, BasicBlock, RESNET18_STAGES, 2, width=self.width, ops=self.ops,
                        train=train, prefix='layer')
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name='linear')(x)


def wrn_blocks_per_stage(depth: int) -> int:
  """Blocks per stage of a WRN-`depth`-k.

  Two naming conventions are in use for the same family:
  * Zagoruyko & Komodakis / TRADES: n = (depth - 4) / 6 (WRN-28-10: 4,
    WRN-34-10: 5), counting the stem, the classifier and two shortcut convs;
  * Madry et al.'s "WRN-32-10" (TF, 5 residual units per stage): n =
    (depth - 2) / 6, counting only the stem and the classifier.
  We try the first rule, then the second. Note that WRN-32-10 therefore builds
  exactly the TRADES WRN-34-10 architecture (Madry's TF model differs only in
  using avg-pool + zero-pad shortcuts instead of 1x1 convs).

  Args:
    depth: the WRN's depth.

  Returns:
    n, the blocks per stage.

  Raises:
    ValueError: neither rule gives a whole n >= 1.
  """
  for offset in (4, 2):
    if depth > offset and (depth - offset) % 6 == 0:
      return (depth - offset) // 6
  raise ValueError(f'WideResNet depth={depth} is invalid: need (depth - 4) % 6 == 0 '
                   '(TRADES convention, e.g. 28, 34) or (depth - 2) % 6 == 0 (Madry '
                   'convention, e.g. 32), with depth > 4.')


def wrn_stages(widen_factor: int) -> tuple:
  """The WRN's stages.

  Args:
    widen_factor: k.

  Returns:
    ((channels, stride) per stage): 16k, 32k, 64k with strides 1, 2, 2.
  """
  return ((16 * widen_factor, 1), (32 * widen_factor, 2), (64 * widen_factor, 2))


class WideResNet(layers.Classifier):
  """TRADES / MART WideResNet: pre-activation blocks, channels 16, 16k, 32k, 64k.

  `depth` follows `wrn_blocks_per_stage` (34 and 32 both give 5 blocks/stage).
  """
  depth: int = 34
  widen_factor: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.normalize(x, self.mean, self.std)
    x = layers.conv3x3(layers.scale(16, self.width), 1, 'conv1', self.ops)(x)
    x = residual_stages(x, PreActBlock, wrn_stages(self.widen_factor),
                        wrn_blocks_per_stage(self.depth), width=self.width, ops=self.ops,
                        train=train, prefix='block')
    x = nn.relu(layers.batch_norm(train, 'bn', self.ops)(x))
    x = jnp.mean(x, axis=(1, 2))  # == avg_pool2d(8) on 32x32 inputs.
    return nn.Dense(self.num_classes, name='fc')(x)
