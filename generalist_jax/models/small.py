"""Small models for CPU runs and tiny inputs (flax.linen, NHWC).

* `SmallCNN`: the TRADES MNIST SmallCNN, optionally with BatchNorm.
* `MLP`: two hidden layers; for tiny inputs (the 8x8 digits demo).

Inputs [B, H, W, C] float32 in [0, 1] (normalised inside); logits [B, K].
"""
from __future__ import annotations

import flax.linen as nn
import jax

from generalist_jax.models import layers


class SmallCNN(layers.Classifier):
  """TRADES MNIST SmallCNN: 4 VALID 3x3 convs, 2 max-pools, 3 dense layers.

  Works for any input size that survives the VALID convs (28x28 -> 4x4x64,
  32x32 -> 5x5x64 before flattening). `batch_norm=True` adds BatchNorm after
  every conv and hidden dense (before the ReLU; their biases are then dropped
  as redundant), which makes adversarial training converge much faster.
  """
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:

    def act(y, name):
      if self.batch_norm:
        y = layers.batch_norm(train, f'{name}_bn', self.ops)(y)
      return nn.relu(y)

    def conv(y, features, name):
      y = nn.Conv(layers.scale(features, self.width), (3, 3), padding='VALID',
                  use_bias=not self.batch_norm, kernel_init=layers.conv_init_fan_in,
                  conv_general_dilated=layers.conv_fn(self.ops), name=name)(y)
      return act(y, name)

    def dense(y, features, name):
      y = nn.Dense(layers.scale(features, self.width), use_bias=not self.batch_norm, name=name)(y)
      return act(y, name)

    x = layers.normalize(x, self.mean, self.std)
    x = conv(x, 32, 'conv1')
    x = conv(x, 32, 'conv2')
    x = layers.max_pool_2x2(x, self.ops)
    x = conv(x, 64, 'conv3')
    x = conv(x, 64, 'conv4')
    x = layers.max_pool_2x2(x, self.ops)
    # Flattens HWC (PyTorch: CHW); matters only when porting fc1 weights.
    x = x.reshape((x.shape[0], -1))
    x = dense(x, 200, 'fc1')
    x = dense(x, 200, 'fc2')
    return nn.Dense(self.num_classes, name='fc3')(x)


class MLP(nn.Module):
  """Two hidden Dense layers of 256 * width units (BatchNorm optional), for
  inputs too small for SmallCNN's VALID convs (8x8 digits): compiles and runs
  in a fraction of the time of the conv nets, which the CPU demo needs."""
  num_classes: int
  batch_norm: bool = True
  width: float = 1.0
  mean: tuple = (0.0,)
  std: tuple = (1.0,)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.normalize(x, self.mean, self.std).reshape((x.shape[0], -1))
    for i in range(2):
      x = nn.Dense(layers.scale(256, self.width), use_bias=not self.batch_norm,
                   name=f'fc{i + 1}')(x)
      if self.batch_norm:
        x = layers.batch_norm(train, f'fc{i + 1}_bn')(x)
      x = nn.relu(x)
    return nn.Dense(self.num_classes, name='logits')(x)
