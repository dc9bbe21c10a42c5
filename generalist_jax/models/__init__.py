"""Image classifiers for adversarial training (flax.linen, NHWC): the registry.

Inputs are float32 images in [0, 1]. Per-channel normalisation lives *inside*
every model (`x = (x - mean) / std` first), so attacks operate, clip and
project in pixel space and never need to know the dataset statistics.

Architectures follow the PyTorch code that adversarial-training papers report
with, so parameter counts match (tests assert them): `resnets.py`
(PreActResNet18, ResNet18, WideResNet) and `small.py` (SmallCNN, MLP). Every
model takes `width`, a multiplier on all channel counts, so tiny models run on
CPU in tests. Deliberate differences from the PyTorch originals:

* Dropout is left out (the WRN's default dropRate is 0 anyway; SmallCNN's 0.5
  is dropped) so `apply_model` needs no dropout RNG.
* Running variance uses flax's biased batch variance (PyTorch: unbiased).
* SmallCNN's last layer keeps flax's default init instead of TRADES' zeros:
  zero logits weights give exactly zero input gradients at init, which turns
  attacks on a fresh model into no-ops.

Also here: `layers.py` (what the models share: channel scaling, BatchNorm with
PyTorch's defaults, torch's inits), `cpu_ops.py` (convolution, pooling and
BatchNorm written the way XLA:CPU runs them fast), `torch_models.py` (the PyTorch
twins) and `torch_convert.py` (flax variables <-> their state_dicts).

Adding a model is a flax module and one row in `MODELS` (and, for export to
PyTorch, its twin and a row in `torch_models.TWINS` under the same key).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from generalist_jax.models import cpu_ops
from generalist_jax.models import resnets
from generalist_jax.models import small

# `jax.jit(compiler_options=)` for programs that run the models: XLA:CPU's
# convolution engine that cpu_ops' formulations are written for, and the temp-heap
# limit of host_memory.keep_cpu_buffers_resident() (None off the CPU).
compiler_options = cpu_ops.compiler_options


def _wide_resnet(model_config, common: dict) -> nn.Module:
  depth = int(model_config.get('depth', 34))
  resnets.wrn_blocks_per_stage(depth)  # Fail at construction, not at first trace.
  return resnets.WideResNet(depth=depth, widen_factor=int(model_config.get('widen_factor', 10)),
                            **common)


def _without_ops(common: dict) -> dict:
  return {k: v for k, v in common.items() if k != 'ops'}  # no convolutions or pools


# name -> (model config, common fields) -> flax module. Common fields: num_classes,
# width, ops, mean, std.
MODELS = {
    'preact_resnet18': lambda c, common: resnets.PreActResNet18(**common),
    'resnet18': lambda c, common: resnets.ResNet18(**common),
    'wide_resnet': _wide_resnet,
    'small_cnn': lambda c, common: small.SmallCNN(batch_norm=bool(c.get('batch_norm', False)), **
                                                  common),
    'mlp': lambda c, common: small.MLP(batch_norm=bool(c.get('batch_norm', True)),
                                       **_without_ops(common)),
}
MODEL_NAMES = tuple(MODELS)


def create_model(model_config, num_classes: int, mean: tuple, std: tuple) -> nn.Module:
  """Builds the model named by `model_config.name` (a key of `MODELS`).

  Args:
    model_config: ConfigDict or dict with name, width (all models, default 1.0),
      depth and widen_factor (wide_resnet, default 34 and 10), batch_norm
      (small_cnn, default False; mlp, default True), ops ('auto' | 'xla' |
      'cpu': which formulation of convolution, max-pool and training-mode
      BatchNorm's gradient, see cpu_ops; 'auto' picks 'cpu' on the CPU backend;
      parameters and values are the same; mlp has no convolutions and keeps
      flax's BatchNorm).
    num_classes: the number of logits.
    mean, std: per-channel input normalisation in [0, 1] units (length 1 or the
      images' channels), applied inside the model.

  Returns:
    The flax module (not initialised: see `init_variables`).

  Raises:
    ValueError: an unknown name or ops, or a wide_resnet depth that neither
      WRN convention allows (`resnets.wrn_blocks_per_stage`).
  """
  name = model_config.get('name')
  if name not in MODELS:
    raise ValueError(f'Unknown model name {name!r}; valid names: {", ".join(MODEL_NAMES)}.')
  common = dict(num_classes=num_classes, width=float(model_config.get('width', 1.0)),
                ops=cpu_ops.resolve_ops(str(model_config.get('ops', 'auto'))),
                mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))
  return MODELS[name](model_config, common)


def init_variables(model: nn.Module, key: jax.Array, image_shape: tuple) -> dict:
  """{'params', 'batch_stats'} from a (1, *image_shape) dummy batch, eval mode.

  'batch_stats' is {} for models without BatchNorm, so every model's variables
  have the same top-level structure.

  Args:
    model: a module from `create_model`.
    key: PRNG key of the initialisers (traced keys work too: under jit or
      `jax.eval_shape` the init is only traced).
    image_shape: (H, W, C) of one image.

  Returns:
    {'params': ..., 'batch_stats': ...}, float32.
  """
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  init = functools.partial(model.init, train=False)
  if isinstance(key, jax.core.Tracer):  # Under jit / eval_shape: just trace.
    variables = init(key, dummy)
  else:
    # One-off program dominated by threefry RNG, whose XLA:CPU compile at the
    # default optimisation level is slow even for tiny models and several times
    # faster at level 0 (experiments/benchmarks/README.md, History). Values agree
    # to float rounding (1 ulp), as jit vs eager init already do; the random bits
    # are the same.
    options = ({'xla_backend_optimization_level': 0, **(compiler_options() or {})}
               if jax.default_backend() == 'cpu' else None)
    variables = jax.jit(init).lower(key, dummy).compile(options)(key, dummy)
  return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}


def apply_model(model: nn.Module, variables: dict, images: jax.Array, *, train: bool,
                compute_dtype=None):
  """Pure forward pass: (logits, batch_stats).

  train=True normalises with batch statistics and returns the updated running
  averages; train=False uses the running averages and returns them unchanged
  (this is the mode attacks differentiate through).

  compute_dtype (e.g. jnp.bfloat16): parameters, statistics and images are cast
  for the computation only; logits and new statistics come back in float32, and
  gradients flow back to the float32 parameters through the cast.

  Args:
    model: a module from `create_model`.
    variables: {'params', 'batch_stats'} (`init_variables`' structure).
    images: [B, H, W, C] float in [0, 1] (normalisation happens in the model).
    train: BatchNorm mode, as above.
    compute_dtype: None or float32 for float32 throughout, else the dtype to
      compute in.

  Returns:
    (logits [B, num_classes] float32, batch_stats).
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
    logits, mutated = model.apply(inputs, images, train=True, mutable=['batch_stats'])
    return logits.astype(jnp.float32), to_f32(mutated.get('batch_stats', {}))
  return model.apply(inputs, images, train=False).astype(jnp.float32), batch_stats
