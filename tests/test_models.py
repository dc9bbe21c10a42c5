"""Tests for generalist_jax.models: sizes, shapes, normalisation, BN modes."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from generalist_jax import models
from generalist_jax.models import resnets

CIFAR = (32, 32, 3)
MNIST = (28, 28, 1)
TINY = 0.125  # Width multiplier that keeps forward passes cheap on CPU.


def _config(name, **kwargs):
  return ml_collections.ConfigDict(dict(name=name, **kwargs))


def _tiny_configs():
  return {
      'preact_resnet18': _config('preact_resnet18', width=TINY),
      'resnet18': _config('resnet18', width=TINY),
      'wide_resnet': _config('wide_resnet', width=TINY, depth=10, widen_factor=2),
      'small_cnn': _config('small_cnn', width=TINY),
      'small_cnn_bn': _config('small_cnn', width=TINY, batch_norm=True),
      'mlp': _config('mlp', width=TINY),
  }


@functools.lru_cache(maxsize=None)
def _tiny(key, image_shape=CIFAR):
  """(config, variables) of a tiny model, initialised once per test session.

  Variables do not depend on mean/std, so one init serves every test.
  """
  config = _tiny_configs()[key]
  model = models.create_model(config, 10, (0.5,) * image_shape[-1], (0.25,) * image_shape[-1])
  return config, models.init_variables(model, jax.random.key(0), image_shape)


def _num_params(model, image_shape=CIFAR):
  # Shapes only: no FLOPs, no memory, so full-size WRN-34-10 is instant.
  variables = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), image_shape))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))


def _images(shape=CIFAR, batch=2, seed=0):
  return jax.random.uniform(jax.random.key(seed), (batch, *shape))


# ----------------------------------------------------------------------------
# Full-size parameter counts vs the PyTorch references.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    'config, expected',
    [
        # Rice et al.'s PreActResNet18 (final BN + ReLU before pooling). The often
        # quoted 11,171,146 is kuangliu's variant without that BN: 1024 fewer.
        (_config('preact_resnet18'), 11_171_146 + 2 * 512),
        (_config('resnet18'), 11_173_962),
        (_config('wide_resnet', depth=34, widen_factor=10), 46_160_474),
        # Madry's naming: same 5 blocks/stage, hence the same network as 34-10.
        (_config('wide_resnet', depth=32, widen_factor=10), 46_160_474),
        (_config('wide_resnet', depth=28, widen_factor=10), 36_479_194),
    ])
def test_param_counts(config, expected):
  model = models.create_model(config, 10, (0.5,) * 3, (0.25,) * 3)
  assert _num_params(model) == expected


def test_small_cnn_param_count():
  # TRADES SmallCNN on MNIST: convs 320+9248+18496+36928, fc 204800+200,
  # 40200, 2010.
  model = models.create_model(_config('small_cnn'), 10, (0.0,), (1.0,))
  assert _num_params(model, MNIST) == 312_202


def test_wrn_blocks_per_stage():
  assert resnets.wrn_blocks_per_stage(28) == 4
  assert resnets.wrn_blocks_per_stage(34) == 5
  assert resnets.wrn_blocks_per_stage(32) == 5
  for bad in (4, 30, 33, 35):
    with pytest.raises(ValueError, match='depth'):
      resnets.wrn_blocks_per_stage(bad)


def test_bad_wrn_depth_raises_at_creation():
  with pytest.raises(ValueError, match='depth=30'):
    models.create_model(_config('wide_resnet', depth=30, widen_factor=10), 10, (0.0,) * 3,
                        (1.0,) * 3)


def test_unknown_name_raises_with_valid_names():
  with pytest.raises(ValueError) as info:
    models.create_model(_config('vgg16'), 10, (0.0,) * 3, (1.0,) * 3)
  for name in models.MODEL_NAMES:
    assert name in str(info.value)


# ----------------------------------------------------------------------------
# Forward passes on tiny models.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('key', list(_tiny_configs()))
def test_output_shape_and_normalisation_inside(key):
  """Logits have shape (batch, classes) and (x - mean) / std happens inside."""
  config, variables = _tiny(key)
  model = models.create_model(config, 10, (0.5,) * 3, (0.25,) * 3)
  raw = models.create_model(config, 10, (0.0,) * 3, (1.0,) * 3)
  x = _images()

  logits, _ = models.apply_model(model, variables, x, train=False)
  raw_logits, _ = models.apply_model(raw, variables, (x - 0.5) / 0.25, train=False)
  assert logits.shape == (2, 10)
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, raw_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('batch_norm', [False, True])
def test_small_cnn_mnist(batch_norm):
  config, variables = _tiny('small_cnn_bn' if batch_norm else 'small_cnn', MNIST)
  model = models.create_model(config, 10, (0.1307,), (0.3081,))
  logits, _ = models.apply_model(model, variables, _images(MNIST), train=False)
  assert logits.shape == (2, 10)
  assert bool(variables['batch_stats']) == batch_norm


def test_channel_mismatch_in_mean_raises():
  # A CIFAR mean on an MNIST image would otherwise broadcast to 3 channels.
  model = models.create_model(_config('small_cnn', width=TINY), 10, (0.5,) * 3, (0.25,) * 3)
  with pytest.raises(ValueError, match='channels'):
    models.init_variables(model, jax.random.key(0), MNIST)


@pytest.mark.parametrize('key', ['preact_resnet18', 'small_cnn_bn', 'small_cnn'])
def test_batch_stats_modes(key):
  """train=True returns updated running stats; train=False leaves them alone."""
  config, variables = _tiny(key)
  model = models.create_model(config, 10, (0.5,) * 3, (0.25,) * 3)
  stats = variables['batch_stats']
  x = _images()

  train_fn = jax.jit(functools.partial(models.apply_model, model, train=True))
  eval_fn = jax.jit(functools.partial(models.apply_model, model, train=False))
  _, new_stats = train_fn(variables, x)
  _, same_stats = eval_fn(variables, x)

  assert jax.tree.structure(new_stats) == jax.tree.structure(stats)
  jax.tree.map(np.testing.assert_array_equal, same_stats, stats)
  if key == 'small_cnn':  # No BatchNorm: empty stats work in both modes.
    assert stats == {} and new_stats == {} and same_stats == {}
  else:
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_stats, stats))
    assert changed and all(changed)


@pytest.mark.parametrize('key', ['wide_resnet', 'small_cnn_bn'])
def test_input_gradient_under_jit(key):
  """Attacks differentiate eval-mode logits w.r.t. the images."""
  config, variables = _tiny(key)
  model = models.create_model(config, 10, (0.5,) * 3, (0.25,) * 3)
  labels = jnp.array([1, 3])

  @jax.jit
  def input_grad(x):

    def loss(x):
      logits, _ = models.apply_model(model, variables, x, train=False)
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels])

    return jax.grad(loss)(x)

  g = input_grad(_images())
  assert g.shape == (2, *CIFAR)
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0


def test_width_scales_channels():
  model = models.create_model(_config('resnet18', width=0.5), 10, (0.0,) * 3, (1.0,) * 3)
  params = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), CIFAR))['params']
  assert params['conv1']['kernel'].shape == (3, 3, 3, 32)
  assert params['linear']['kernel'].shape == (256, 10)
