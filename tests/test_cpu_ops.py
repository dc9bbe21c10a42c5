"""cpu_ops: the CPU formulations give lax's values and gradients."""
import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from generalist_jax.models import cpu_ops
from generalist_jax import models

_NHWC = ('NHWC', 'HWIO', 'NHWC')


@pytest.fixture(params=cpu_ops.ENGINES)
def engine(request, monkeypatch):
  """Both engines' formulations, whatever this machine's CPU picks."""
  monkeypatch.setenv(cpu_ops.ENGINE_ENV, request.param)
  cpu_ops.conv_engine.cache_clear()
  yield request.param
  cpu_ops.conv_engine.cache_clear()


def _grads(conv, x, w, strides, padding, dy):
  f = lambda x, w: jnp.sum(conv(x, w, strides, padding, dimension_numbers=_NHWC) * dy)
  return jax.jit(jax.grad(f, (0, 1)))(x, w)  # jitted: one compile, not one per eager op


@pytest.mark.parametrize(
    'shape,kernel,strides,padding',
    [
        ((3, 9, 9, 4), (3, 3, 4, 5), (1, 1), 'VALID'),
        ((2, 8, 7, 3), (3, 3, 3, 6), (1, 1), ((1, 1), (1, 1))),
        ((2, 8, 8, 3), (3, 3, 3, 4), (2, 2), ((1, 1), (1, 1))),  # ResNet downsampling
        ((2, 7, 7, 4), (1, 1, 4, 6), (2, 2), 'VALID'),  # 1x1 shortcut
        ((2, 9, 8, 2), (3, 2, 2, 3), (1, 1), 'SAME'),  # flax's uneven SAME
        ((2, 10, 10, 3), (5, 5, 3, 2), (1, 1), 'VALID'),
    ])
def test_conv_values_and_gradients_match_lax(shape, kernel, strides, padding, engine):
  kx, kw, ky = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, shape)
  w = jax.random.normal(kw, kernel)
  y = lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC)
  y_fast = jax.jit(
      lambda x, w: cpu_ops.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC))(x,
                                                                                                  w)
  assert y_fast.shape == y.shape
  np.testing.assert_allclose(y_fast, y, rtol=1e-5, atol=1e-5)
  dy = jax.random.normal(ky, y.shape)
  for got, want in zip(_grads(cpu_ops.conv_general_dilated, x, w, strides, padding, dy),
                       _grads(lax.conv_general_dilated, x, w, strides, padding, dy)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('engine,images_per_group', [('ynnpack', 1), ('ynnpack', 2),
                                                     ('ynnpack', 6)])
@pytest.mark.parametrize(
    'kernel,strides,pads',
    [
        ((3, 3, 4, 5), (1, 1), ((0, 0), (0, 0))),
        ((3, 3, 2, 3), (1, 1), ((1, 1), (1, 1))),  # im2col path (c * kh * kw <= 32)
        ((3, 3, 6, 4), (2, 2), ((1, 1), (1, 1))),
        ((1, 1, 4, 6), (2, 2), ((0, 0), (0, 0))),
    ])
def test_weight_gradient_formulations_match_lax(engine, images_per_group, kernel, strides, pads):
  # The models' shapes are too small here to trigger YNNPACK's scan over groups
  # of images; force it, including one group of the whole batch (6).
  x = jax.random.normal(jax.random.key(5), (6, 9, 8, kernel[2]))
  w = jnp.zeros(kernel)
  conv = lambda w: lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)
  dy = jax.random.normal(jax.random.key(6), conv(w).shape)
  want = jax.vjp(conv, w)[1](dy)[0]
  got = jax.jit(
      lambda x, dy: cpu_ops._weight_grad(x, dy, kernel, strides, pads, engine, images_per_group))(
          x, dy)
  assert got.shape == kernel
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_images_per_group_divides_the_batch_and_skips_the_loop_where_it_costs():
  mb = 1 << 20
  assert cpu_ops._images_per_group(128, 115_200, 32, 32) == 4  # 30x30x32: 4 x 115 kB
  assert cpu_ops._images_per_group(96, 200_000, 32, 32) == 2  # 2 fit; 2 divides 96
  assert cpu_ops._images_per_group(7, 400_000, 32, 32) == 1  # 7 is prime
  assert cpu_ops._images_per_group(32, mb, 64, 64) == 1  # one image over budget
  assert cpu_ops._images_per_group(32, 40_000, 256, 256) == 32  # compute-bound dots
  assert cpu_ops._images_per_group(64, 25_600, 64, 64) == 64  # whole input 1.6 MB


@pytest.mark.parametrize(
    'shape,kernel,strides,pads',
    [
        ((2, 9, 9, 3), (3, 3, 3, 4), (2, 2), ((1, 1), (1, 1))),  # odd size: phases of 5 and 4 rows
        ((2, 11, 10, 2), (5, 5, 2, 3), (2, 2), ((2, 1), (0, 2))),  # uneven pads
        ((2, 10, 9, 3), (3, 3, 3, 2), (3, 3), ((1, 1), (1, 1))),  # stride 3
        ((2, 8, 8, 4), (2, 2, 4, 3), (2, 2), ((0, 0), (0, 0))),  # kernel == stride
        ((2, 8, 7, 4), (1, 1, 4, 6), (2, 2), ((0, 0), (0, 0))),  # 1x1: three phases are zero
        ((2, 8, 8, 3), (3, 1, 3, 2), (2, 1), ((1, 1), (0, 0))),  # stride in one axis only
    ])
@pytest.mark.parametrize('dtype,tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_strided_input_gradient_by_phases_matches_lax(shape, kernel, strides, pads, dtype, tol,
                                                      engine):
  x = jax.random.normal(jax.random.key(10), shape).astype(dtype)
  w = jax.random.normal(jax.random.key(11), kernel).astype(dtype)
  conv = lambda x: lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)
  y, vjp = jax.vjp(conv, x)
  dy = jax.random.normal(jax.random.key(12), y.shape).astype(dtype)
  want = vjp(dy)[0]
  got = jax.jit(lambda dy: cpu_ops._input_grad_phases(dy, x.shape, w, strides, pads))(dy)
  assert got.dtype == want.dtype == dtype and got.shape == x.shape
  scale = float(jnp.abs(want.astype(jnp.float32)).max())
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                             atol=tol * scale, rtol=tol)


@pytest.mark.parametrize('dtype,tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize('pads', [((0, 0), (0, 0)), ((1, 1), (1, 1)), ((0, 2), (1, 0)),
                                  ((-1, 1), (1, 1))])  # negative: lax's own
def test_rgb_layer_input_gradient_matches_lax(pads, dtype, tol, engine):
  # c * kh * kw = 27 <= 32: the col2im input gradient for pads >= 0.
  x = jax.random.normal(jax.random.key(7), (3, 10, 9, 3)).astype(dtype)
  w = jax.random.normal(jax.random.key(8), (3, 3, 3, 5)).astype(dtype)
  conv = lambda f: (lambda x: f(x, w, (1, 1), pads, dimension_numbers=_NHWC))
  dy = jax.random.normal(jax.random.key(9), conv(lax.conv_general_dilated)(x).shape).astype(dtype)
  input_grad = lambda f: jax.jit(lambda x, dy: jax.vjp(conv(f), x)[1](dy)[0])(x, dy)
  got, want = input_grad(cpu_ops.conv_general_dilated), input_grad(lax.conv_general_dilated)
  assert got.dtype == want.dtype == dtype and got.shape == x.shape
  scale = float(jnp.abs(want.astype(jnp.float32)).max())
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                             atol=tol * scale, rtol=tol)


def test_conv_falls_back_to_lax_for_what_it_does_not_cover():
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
  w = jax.random.normal(jax.random.key(2), (3, 3, 2, 4))  # 2 groups
  y = cpu_ops.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=_NHWC,
                                   feature_group_count=2)
  np.testing.assert_allclose(
      y,
      lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=_NHWC,
                               feature_group_count=2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shape', [(2, 6, 6, 3), (2, 7, 9, 2), (1, 5, 4, 1)])
def test_max_pool_and_its_gradient_match_flax(shape):
  import flax.linen as nn
  # Distinct values: with ties the two formulations may route the gradient to
  # different (equally maximal) inputs; in the models a tie is a ReLU zero,
  # whose gradient the ReLU zeroes either way.
  x = jax.random.permutation(jax.random.key(3), jnp.arange(np.prod(shape), dtype=jnp.float32))
  x = x.reshape(shape)
  ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(cpu_ops.max_pool_2x2(x), ref(x))
  dy = jax.random.normal(jax.random.key(4), ref(x).shape)
  np.testing.assert_array_equal(
      jax.vjp(cpu_ops.max_pool_2x2, x)[1](dy)[0],
      jax.vjp(ref, x)[1](dy)[0])


def _flax_batch_norm_train(x, scale, bias, epsilon):
  """Reference: flax's nn.BatchNorm in training mode, through autodiff."""
  import flax.linen as nn
  bn = nn.BatchNorm(use_running_average=False, momentum=0.0, epsilon=epsilon)
  params = {'scale': scale, 'bias': bias}
  stats = {'mean': jnp.zeros_like(scale), 'var': jnp.ones_like(scale)}
  y, updated = bn.apply({'params': params, 'batch_stats': stats}, x, mutable=['batch_stats'])
  return y, updated['batch_stats']['mean'], updated['batch_stats']['var']  # momentum 0


@pytest.mark.parametrize('shape', [(6, 5, 7, 4), (9, 3)])
def test_batch_norm_train_values_and_gradients_match_flax(shape):
  k = jax.random.split(jax.random.key(5), 6)
  x = 3.0 + 2.0 * jax.random.normal(k[0], shape)  # off-centre, as activations are
  scale = jax.random.uniform(k[1], shape[-1:], minval=0.5, maxval=2.0)
  bias = jax.random.normal(k[2], shape[-1:])
  dy = jax.random.normal(k[3], shape)
  d_mean, d_var = jax.random.normal(k[4], shape[-1:]), jax.random.normal(k[5], shape[-1:])

  def loss(fn):  # every output carries a cotangent: y, and the mean and variance too

    def f(x, scale, bias):
      y, mean, var = fn(x, scale, bias, 1e-5)
      return jnp.sum(y * dy) + jnp.sum(mean * d_mean) + jnp.sum(var * d_var)

    return jax.jit(jax.value_and_grad(f, (0, 1, 2)))

  for got, want in zip(
      jax.jit(cpu_ops.batch_norm_train, static_argnums=3)(x, scale, bias, 1e-5),
      jax.jit(_flax_batch_norm_train, static_argnums=3)(x, scale, bias, 1e-5)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  (got_value, got), (want_value, want) = (loss(cpu_ops.batch_norm_train)(x, scale, bias),
                                          loss(_flax_batch_norm_train)(x, scale, bias))
  np.testing.assert_allclose(got_value, want_value, rtol=1e-6)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_closed_form_batch_norm_module_is_flax_batch_norm_with_the_closed_form_vjp():
  import flax.linen as nn
  from generalist_jax.models import layers
  x = 1.5 + jax.random.normal(jax.random.key(6), (8, 4, 4, 3))
  fast = layers.batch_norm(True, 'bn', ops='cpu')
  plain = layers.batch_norm(True, 'bn', ops='xla')
  assert isinstance(fast, layers.ClosedFormBatchNorm) and type(plain) is nn.BatchNorm
  variables = plain.init(jax.random.key(0), x)
  assert jax.tree.structure(fast.init(jax.random.key(0), x)) == jax.tree.structure(variables)
  variables = {
      'params': {'scale': jnp.array([0.5, 1.0, 2.0]), 'bias': jnp.array([0.1, 0., -0.2])},
      'batch_stats': variables['batch_stats']
  }

  def loss(module, params, x):
    y, updated = module.apply(dict(variables, params=params), x, mutable=['batch_stats'])
    return jnp.sum(jnp.sin(y)), (y, updated['batch_stats'])

  grad = lambda m: jax.jit(jax.grad(loss, (1, 2), has_aux=True), static_argnums=0)(m, variables[
      'params'], x)
  takes_closed_form = lambda m, x: 'custom_vjp_call' in str(
      jax.make_jaxpr(lambda x: m.apply(variables, x, mutable=['batch_stats']))(x))
  assert takes_closed_form(fast, x) and not takes_closed_form(plain, x)
  # flax's code where the closed form does not apply: evaluation mode, bfloat16
  assert not takes_closed_form(layers.batch_norm(False, 'bn', ops='cpu'), x)
  assert not takes_closed_form(fast, x.astype(jnp.bfloat16))
  (got_grads, (got_y, got_stats)), (want_grads, (want_y, want_stats)) = grad(fast), grad(plain)
  np.testing.assert_allclose(got_y, want_y, rtol=1e-6, atol=1e-6)
  for g, w in zip(jax.tree.leaves((got_grads, got_stats)), jax.tree.leaves(
      (want_grads, want_stats))):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
  # Evaluation mode and bfloat16 inputs are flax's own code: equal bit for bit.
  for module, inputs in ((layers.batch_norm(False, 'bn',
                                            ops='cpu'), x), (fast, x.astype(jnp.bfloat16))):
    reference = layers.batch_norm(not module.use_running_average, 'bn', ops='xla')
    np.testing.assert_array_equal(
        module.apply(variables, inputs, mutable=['batch_stats'])[0],
        reference.apply(variables, inputs, mutable=['batch_stats'])[0])


# Every model with Eigen's formulations; YNNPACK's on PreAct-ResNet-18 (strided, 1x1 and
# padded RGB convs; the conv tests above cover each shape under both engines).
@pytest.mark.parametrize('engine,name,image', [('eigen', 'small_cnn', (29, 29, 3)),
                                               ('eigen', 'preact_resnet18', (16, 16, 3)),
                                               ('eigen', 'resnet18', (16, 16, 3)),
                                               ('eigen', 'wide_resnet', (16, 16, 3)),
                                               ('ynnpack', 'preact_resnet18', (16, 16, 3))],
                         indirect=['engine'])
def test_models_give_the_same_logits_and_gradients_with_either_ops(name, image, engine):
  cfg = lambda ops: ml_collections.ConfigDict(
      dict(name=name, width=0.125, depth=10, widen_factor=1, batch_norm=True, ops=ops))
  fast = models.create_model(cfg('cpu'), 10, (0.5,), (0.25,))
  plain = models.create_model(cfg('xla'), 10, (0.5,), (0.25,))
  variables = models.init_variables(plain, jax.random.key(0), image)
  x = jax.random.uniform(jax.random.key(1), (4, *image))
  labels = jnp.arange(4)

  def loss(params, x, model):
    logits, _ = models.apply_model(model, dict(variables, params=params), x, train=True)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

  # Jitted as in training: one compile per model, not one per eager op and shape.
  value_and_grad = jax.jit(jax.value_and_grad(loss, (0, 1)), static_argnums=2,
                           compiler_options=models.compiler_options())
  got_loss, got = value_and_grad(variables['params'], x, fast)
  want_loss, want = value_and_grad(variables['params'], x, plain)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-5)


def test_auto_resolves_by_backend_and_bad_values_are_refused():
  assert cpu_ops.resolve_ops('auto') == ('cpu' if jax.default_backend() == 'cpu' else 'xla')
  assert cpu_ops.resolve_ops('xla') == 'xla'
  with pytest.raises(ValueError, match='model.ops'):
    cpu_ops.resolve_ops('fast')


def test_conv_engine_reads_the_environment_and_refuses_unknown_values(monkeypatch):
  try:
    monkeypatch.setenv(cpu_ops.ENGINE_ENV, 'eigen')
    cpu_ops.conv_engine.cache_clear()
    assert cpu_ops.conv_engine() == 'eigen'
    monkeypatch.setenv(cpu_ops.ENGINE_ENV, 'onednn')
    cpu_ops.conv_engine.cache_clear()
    with pytest.raises(ValueError, match='GENERALIST_JAX_CPU_CONV'):
      cpu_ops.conv_engine()
    monkeypatch.delenv(cpu_ops.ENGINE_ENV)
    cpu_ops.conv_engine.cache_clear()
    assert cpu_ops.conv_engine() == ('eigen' if cpu_ops._has_avx512() else 'ynnpack')
  finally:
    cpu_ops.conv_engine.cache_clear()


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='an XLA:CPU option')
def test_eigen_compiler_options_take_convolutions_out_of_ynnpack(engine):
  # Large enough that XLA:CPU's default hands this SAME conv to a YNN fusion.
  x, w = jnp.ones((16, 30, 30, 32)), jnp.ones((3, 3, 32, 32))
  conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=_NHWC)
  hlo = jax.jit(conv, compiler_options=cpu_ops.compiler_options()).lower(x, w).compile().as_text()
  assert ('ynn_fusion' in hlo) == (engine == 'ynnpack')
