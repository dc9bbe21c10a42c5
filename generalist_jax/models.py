"""Image classifiers for adversarial training (flax.linen, NHWC).

Inputs are float32 images in [0, 1]. Per-channel normalisation lives *inside*
every model (`x = (x - mean) / std` first), so attacks operate, clip and
project in pixel space and never need to know the dataset statistics.

Architectures follow the PyTorch code that adversarial-training papers report
with, so parameter counts match (tests assert them):

* `PreActResNet18`: Rice et al. 2020 ("Overfitting in adversarially robust
  deep learning"), 11,171,146 params at 10 classes.
* `ResNet18`: kuangliu/pytorch-cifar, 11,173,962 params.
* `WideResNet`: TRADES / MART WRN (pre-activation blocks), WRN-34-10 has
  46,160,474 params.
* `SmallCNN`: the TRADES MNIST SmallCNN, optionally with BatchNorm.
* `MLP`: two hidden layers; for tiny inputs (the 8x8 digits demo).

Every model takes `width`, a multiplier on all channel counts, so tiny models
run on CPU in tests. Deliberate differences from the PyTorch originals:

* Dropout is left out (the WRN's default dropRate is 0 anyway; SmallCNN's 0.5
  is dropped) so `apply_model` needs no dropout RNG.
* Running variance uses flax's biased batch variance (PyTorch: unbiased).
* SmallCNN's last layer keeps flax's default init instead of TRADES' zeros:
  zero logits weights give exactly zero input gradients at init, which turns
  attacks on a fresh model into no-ops.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from generalist_jax import cpu_ops

MODEL_NAMES = ('preact_resnet18', 'resnet18', 'wide_resnet', 'small_cnn', 'mlp')

# PyTorch BatchNorm2d defaults. PyTorch's momentum 0.1 weights the *new* batch,
# flax's momentum weights the *old* running value: 0.1 there == 0.9 here.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5

# ResNets / WRN: He-normal with fan_out, i.e. torch's
# kaiming_normal_(mode='fan_out', nonlinearity='relu') and TRADES' WRN init
# normal(0, sqrt(2 / (k * k * out_channels))). Untruncated, like torch.
_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# SmallCNN: TRADES uses torch's kaiming_normal_ defaults (fan_in).
_conv_init_fan_in = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


def _scale(channels: int, width: float) -> int:
  return max(1, int(round(channels * width)))


def _batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                      epsilon=_BN_EPSILON, name=name)


def _conv_fn(ops: str):
  """The convolution primitive for `ops` ('xla' or 'cpu', see cpu_ops)."""
  return cpu_ops.conv_general_dilated if ops == 'cpu' else lax.conv_general_dilated


def _max_pool_2x2(x: jax.Array, ops: str) -> jax.Array:
  if ops == 'cpu':
    return cpu_ops.max_pool_2x2(x)
  return nn.max_pool(x, (2, 2), strides=(2, 2))  # Floors, like MaxPool2d.


def _conv3x3(features: int, strides: int = 1, name: str | None = None,
             ops: str = 'xla'):
  # Explicit (1, 1) padding, not 'SAME': for stride 2 on even sizes flax's
  # SAME pads (0, 1) while PyTorch's padding=1 pads (1, 1).
  return nn.Conv(features, (3, 3), strides=(strides, strides),
                 padding=((1, 1), (1, 1)), use_bias=False,
                 kernel_init=_conv_init, conv_general_dilated=_conv_fn(ops), name=name)


def _conv1x1(features: int, strides: int = 1, name: str | None = None,
             ops: str = 'xla'):
  return nn.Conv(features, (1, 1), strides=(strides, strides),
                 padding='VALID', use_bias=False, kernel_init=_conv_init,
                 conv_general_dilated=_conv_fn(ops), name=name)


def _normalize(x: jax.Array, mean: Sequence[float],
               std: Sequence[float]) -> jax.Array:
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


# ----------------------------------------------------------------------------
# Blocks.
# ----------------------------------------------------------------------------

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
    out = nn.relu(_batch_norm(train, 'bn1')(x))
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = _conv1x1(self.features, self.strides, 'shortcut', self.ops)(out)
    else:
      shortcut = x
    out = _conv3x3(self.features, self.strides, 'conv1', self.ops)(out)
    out = nn.relu(_batch_norm(train, 'bn2')(out))
    out = _conv3x3(self.features, 1, 'conv2', self.ops)(out)
    return out + shortcut


class BasicBlock(nn.Module):
  """Post-activation basic block of kuangliu/pytorch-cifar's ResNet."""
  features: int
  strides: int = 1
  ops: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out = _conv3x3(self.features, self.strides, 'conv1', self.ops)(x)
    out = nn.relu(_batch_norm(train, 'bn1')(out))
    out = _conv3x3(self.features, 1, 'conv2', self.ops)(out)
    out = _batch_norm(train, 'bn2')(out)
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = _conv1x1(self.features, self.strides, 'shortcut_conv', self.ops)(x)
      shortcut = _batch_norm(train, 'shortcut_bn')(shortcut)
    else:
      shortcut = x
    return nn.relu(out + shortcut)


# ----------------------------------------------------------------------------
# Models.
# ----------------------------------------------------------------------------

_RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride)


class PreActResNet18(nn.Module):
  """PreActResNet18 of Rice et al. 2020: 3x3 stem, [2, 2, 2, 2] PreActBlocks."""
  num_classes: int
  width: float = 1.0
  mean: tuple = (0.0,)
  std: tuple = (1.0,)
  ops: str = 'xla'   # 'xla' or 'cpu' (cpu_ops formulations); see create_model

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = _normalize(x, self.mean, self.std)
    x = _conv3x3(_scale(64, self.width), 1, 'conv1', self.ops)(x)
    for i, (channels, strides) in enumerate(_RESNET18_STAGES):
      for j in range(2):
        x = PreActBlock(_scale(channels, self.width), strides if j == 0 else 1,
                        self.ops, name=f'layer{i + 1}_{j}')(x, train)
    x = nn.relu(_batch_norm(train, 'bn')(x))
    x = jnp.mean(x, axis=(1, 2))  # == avg_pool2d(4) on 32x32 inputs.
    return nn.Dense(self.num_classes, name='linear')(x)


class ResNet18(nn.Module):
  """CIFAR ResNet-18 of kuangliu/pytorch-cifar."""
  num_classes: int
  width: float = 1.0
  mean: tuple = (0.0,)
  std: tuple = (1.0,)
  ops: str = 'xla'   # 'xla' or 'cpu' (cpu_ops formulations); see create_model

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = _normalize(x, self.mean, self.std)
    x = _conv3x3(_scale(64, self.width), 1, 'conv1', self.ops)(x)
    x = nn.relu(_batch_norm(train, 'bn1')(x))
    for i, (channels, strides) in enumerate(_RESNET18_STAGES):
      for j in range(2):
        x = BasicBlock(_scale(channels, self.width), strides if j == 0 else 1,
                       self.ops, name=f'layer{i + 1}_{j}')(x, train)
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
  """
  for offset in (4, 2):
    if depth > offset and (depth - offset) % 6 == 0:
      return (depth - offset) // 6
  raise ValueError(
      f'WideResNet depth={depth} is invalid: need (depth - 4) % 6 == 0 '
      '(TRADES convention, e.g. 28, 34) or (depth - 2) % 6 == 0 (Madry '
      'convention, e.g. 32), with depth > 4.')


class WideResNet(nn.Module):
  """TRADES / MART WideResNet: pre-activation blocks, channels 16, 16k, 32k, 64k.

  `depth` follows `wrn_blocks_per_stage` (34 and 32 both give 5 blocks/stage).
  """
  num_classes: int
  depth: int = 34
  widen_factor: int = 10
  width: float = 1.0
  mean: tuple = (0.0,)
  std: tuple = (1.0,)
  ops: str = 'xla'   # 'xla' or 'cpu' (cpu_ops formulations); see create_model

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    n = wrn_blocks_per_stage(self.depth)
    k = self.widen_factor
    x = _normalize(x, self.mean, self.std)
    x = _conv3x3(_scale(16, self.width), 1, 'conv1', self.ops)(x)
    for i, (channels, strides) in enumerate(((16 * k, 1), (32 * k, 2),
                                             (64 * k, 2))):
      for j in range(n):
        x = PreActBlock(_scale(channels, self.width), strides if j == 0 else 1,
                        self.ops, name=f'block{i + 1}_{j}')(x, train)
    x = nn.relu(_batch_norm(train, 'bn')(x))
    x = jnp.mean(x, axis=(1, 2))  # == avg_pool2d(8) on 32x32 inputs.
    return nn.Dense(self.num_classes, name='fc')(x)


class SmallCNN(nn.Module):
  """TRADES MNIST SmallCNN: 4 VALID 3x3 convs, 2 max-pools, 3 dense layers.

  Works for any input size that survives the VALID convs (28x28 -> 4x4x64,
  32x32 -> 5x5x64 before flattening). `batch_norm=True` adds BatchNorm after
  every conv and hidden dense (before the ReLU; their biases are then dropped
  as redundant), which makes adversarial training converge much faster.
  """
  num_classes: int
  batch_norm: bool = False
  width: float = 1.0
  mean: tuple = (0.0,)
  std: tuple = (1.0,)
  ops: str = 'xla'   # 'xla' or 'cpu' (cpu_ops formulations); see create_model

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    def act(y, name):
      if self.batch_norm:
        y = _batch_norm(train, f'{name}_bn')(y)
      return nn.relu(y)

    def conv(y, features, name):
      y = nn.Conv(_scale(features, self.width), (3, 3), padding='VALID',
                  use_bias=not self.batch_norm, kernel_init=_conv_init_fan_in,
                  conv_general_dilated=_conv_fn(self.ops), name=name)(y)
      return act(y, name)

    def dense(y, features, name):
      y = nn.Dense(_scale(features, self.width), use_bias=not self.batch_norm,
                   name=name)(y)
      return act(y, name)

    x = _normalize(x, self.mean, self.std)
    x = conv(x, 32, 'conv1')
    x = conv(x, 32, 'conv2')
    x = _max_pool_2x2(x, self.ops)
    x = conv(x, 64, 'conv3')
    x = conv(x, 64, 'conv4')
    x = _max_pool_2x2(x, self.ops)
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
    x = _normalize(x, self.mean, self.std).reshape((x.shape[0], -1))
    for i in range(2):
      x = nn.Dense(_scale(256, self.width), use_bias=not self.batch_norm, name=f'fc{i + 1}')(x)
      if self.batch_norm:
        x = _batch_norm(train, f'fc{i + 1}_bn')(x)
      x = nn.relu(x)
    return nn.Dense(self.num_classes, name='logits')(x)


# ----------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------

def _get(config, key: str, default: Any) -> Any:
  value = config.get(key, default)
  return default if value is None else value


def create_model(model_config, num_classes: int, mean: tuple,
                 std: tuple) -> nn.Module:
  """Builds the model named by `model_config.name` (see `MODEL_NAMES`).

  Fields: name, width (all models), depth and widen_factor (wide_resnet),
  batch_norm (small_cnn, mlp), ops ('auto' | 'xla' | 'cpu': which formulation
  of convolution and max-pool, see cpu_ops; 'auto' picks 'cpu' on the CPU
  backend; parameters and values are the same). `mean`/`std` are per-channel
  in [0, 1] units.
  """
  name = _get(model_config, 'name', None)
  common = dict(num_classes=num_classes,
                width=float(_get(model_config, 'width', 1.0)),
                ops=cpu_ops.resolve_ops(str(_get(model_config, 'ops', 'auto'))),
                mean=tuple(float(m) for m in mean),
                std=tuple(float(s) for s in std))
  if name == 'preact_resnet18':
    return PreActResNet18(**common)
  if name == 'resnet18':
    return ResNet18(**common)
  if name == 'wide_resnet':
    depth = int(_get(model_config, 'depth', 34))
    wrn_blocks_per_stage(depth)  # Fail at construction, not at first trace.
    return WideResNet(depth=depth,
                      widen_factor=int(_get(model_config, 'widen_factor', 10)),
                      **common)
  if name == 'small_cnn':
    return SmallCNN(batch_norm=bool(_get(model_config, 'batch_norm', False)),
                    **common)
  if name == 'mlp':
    del common['ops']   # no convolutions or pools
    return MLP(batch_norm=bool(_get(model_config, 'batch_norm', True)), **common)
  raise ValueError(f'Unknown model name {name!r}; valid names: '
                   f'{", ".join(MODEL_NAMES)}.')


def init_variables(model: nn.Module, key: jax.Array,
                   image_shape: tuple) -> dict:
  """{'params', 'batch_stats'} from a (1, *image_shape) dummy batch, eval mode.

  'batch_stats' is {} for models without BatchNorm, so every model's variables
  have the same top-level structure.
  """
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  init = functools.partial(model.init, train=False)
  if isinstance(key, jax.core.Tracer):  # Under jit / eval_shape: just trace.
    variables = init(key, dummy)
  else:
    # One-off program dominated by threefry RNG, whose XLA:CPU compile at the
    # default optimisation level takes 10-30 s even for tiny models (2 cores);
    # at level 0 it is ~8x faster. Values agree to float rounding (1 ulp),
    # as jit vs eager init already do; the random bits are the same.
    options = ({'xla_backend_optimization_level': 0}
               if jax.default_backend() == 'cpu' else None)
    variables = jax.jit(init).lower(key, dummy).compile(options)(key, dummy)
  return {'params': variables['params'],
          'batch_stats': variables.get('batch_stats', {})}


def apply_model(model: nn.Module, variables: dict, images: jax.Array, *,
                train: bool, compute_dtype=None):
  """Pure forward pass: (logits, batch_stats).

  train=True normalises with batch statistics and returns the updated running
  averages; train=False uses the running averages and returns them unchanged
  (this is the mode attacks differentiate through).

  compute_dtype (e.g. jnp.bfloat16): parameters, statistics and images are cast
  for the computation only; logits and new statistics come back in float32, and
  gradients flow back to the float32 parameters through the cast.
  """
  batch_stats = variables.get('batch_stats', {})
  inputs = {'params': variables['params']}
  if batch_stats:
    inputs['batch_stats'] = batch_stats
  if compute_dtype is not None and compute_dtype != jnp.float32:
    inputs = jax.tree.map(lambda v: v.astype(compute_dtype), inputs)
    images = images.astype(compute_dtype)
  to_f32 = lambda tree: jax.tree.map(lambda v: v.astype(jnp.float32), tree)
  if train:
    logits, mutated = model.apply(inputs, images, train=True,
                                  mutable=['batch_stats'])
    return logits.astype(jnp.float32), to_f32(mutated.get('batch_stats', {}))
  return model.apply(inputs, images, train=False).astype(jnp.float32), batch_stats
