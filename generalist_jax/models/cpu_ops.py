"""Convolution, 2x2 max-pool and BatchNorm written the way XLA:CPU runs them fast.

Same values as `lax.conv_general_dilated` / `nn.max_pool` / `nn.BatchNorm` (to float rounding;
`tests/test_cpu_ops.py`), different formulations, chosen per XLA:CPU
convolution engine (`conv_engine()`: YNNPACK, XLA's default, or Eigen, which
`compiler_options()` selects for the jits that run the models). Each choice and
its measurements: experiments/benchmarks/README.md ("History").

* YNNPACK: VALID convolutions miss its fusion, so a VALID conv is computed as
  the padded one and cropped (the crop drops exactly the border outputs that saw
  the padding). Eigen runs the VALID one directly, faster than padded + cropped.
* The weight gradient (XLA's "backprop filter" convolution) is slow on YNNPACK;
  there it is one matmul per kernel tap, `x_shifted^T @ dy`, over cache-sized
  groups of images. On Eigen XLA's own is as fast as any rewrite tried and is kept.
* Inside a while loop (a rolled attack: APGD, Square, evaluation PGD) JAX's
  transpose rule for the input gradient runs several times slower than the
  same convolution with the flipped kernel written out, which is what the
  custom VJP uses for stride-1 convolutions; strided ones (its lhs-dilated
  convolution) are split into one stride-1 convolution per output phase.
* `reduce_window` max-pool's gradient is a select-and-scatter, several times
  slower than the gradient of the max of the window's four strided corners.
* Training-mode BatchNorm's gradient, as autodiff derives it from flax's
  forward, takes more passes over the activation than the closed form
  (`batch_norm_train`).

Accelerators have none of these problems, so models use these only when
`model.ops` resolves to 'cpu' (`resolve_ops('auto')` on the CPU backend).
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
from jax import lax

from generalist_jax import host_memory

OPS = ('auto', 'xla', 'cpu')
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def resolve_ops(ops: str) -> str:
  """'auto' -> 'cpu' on the CPU backend, else 'xla'.

  Args:
    ops: `model.ops`, one of OPS.

  Returns:
    'cpu' or 'xla'.

  Raises:
    ValueError: `ops` is not in OPS.
  """
  if ops not in OPS:
    raise ValueError(f'model.ops={ops!r} is unknown; use one of {OPS}.')
  if ops == 'auto':
    return 'cpu' if jax.default_backend() == 'cpu' else 'xla'
  return ops


# XLA:CPU runs convolutions through YNNPACK (its default YNN fusion types include
# individual_convolution) or, with that type left out, through Eigen. Which is
# faster depends on the CPU, by a wide margin either way: YNNPACK on the AVX2 CPU
# measured, Eigen on the AVX-512 ones (experiments/benchmarks/README.md). The
# formulations below follow the engine.
ENGINES = ('ynnpack', 'eigen')
ENGINE_ENV = 'GENERALIST_JAX_CPU_CONV'
_EIGEN_YNN_FUSION_TYPES = (
    'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'  # XLA's default
    'LIBRARY_FUSION_TYPE_REDUCE')  # minus convolutions


@functools.cache
def conv_engine() -> str:
  """The XLA:CPU convolution engine this process uses: $GENERALIST_JAX_CPU_CONV
  ('ynnpack' or 'eigen') if set, else 'eigen' on CPUs with AVX-512, 'ynnpack'
  otherwise (as measured; see above). Read once per process (cached).

  Returns:
    'ynnpack' or 'eigen'.

  Raises:
    ValueError: $GENERALIST_JAX_CPU_CONV is set to another value.
  """
  engine = os.environ.get(ENGINE_ENV, '')
  if engine and engine not in ENGINES:
    raise ValueError(f'{ENGINE_ENV}={engine!r} is unknown; use one of {ENGINES} '
                     'or leave it unset to pick by the CPU.')
  return engine or ('eigen' if _has_avx512() else 'ynnpack')


def _has_avx512() -> bool:
  try:
    with open('/proc/cpuinfo') as f:
      return any(line.startswith('flags') and ' avx512f' in line for line in f)
  except OSError:
    return False


def compiler_options() -> dict | None:
  """`jax.jit(..., compiler_options=)` for XLA:CPU.

  Returns:
    `conv_engine()`'s fusion types and
    `host_memory.resident_buffer_compiler_options()` as a dict; None off the CPU
    backend or when neither applies ('ynnpack' is XLA's default).
  """
  if jax.default_backend() != 'cpu':
    return None
  options = host_memory.resident_buffer_compiler_options()
  if conv_engine() == 'eigen':
    options['xla_cpu_experimental_ynn_fusion_type'] = _EIGEN_YNN_FUSION_TYPES
  return options or None


def _explicit_pads(x_shape, w_shape, strides, padding) -> tuple:
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x_shape[1:3], w_shape[:2], strides, padding)
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _conv(x, w, strides: tuple, pads: tuple):
  kh, kw = w.shape[:2]
  if (conv_engine() == 'ynnpack' and strides == (1, 1) and pads == ((0, 0), (0, 0)) and
      (kh, kw) != (1, 1)):
    top, left = (kh - 1) // 2, (kw - 1) // 2
    y = lax.conv_general_dilated(x, w, strides, ((top, kh - 1 - top), (left, kw - 1 - left)),
                                 dimension_numbers=_NHWC)
    return y[:, top:y.shape[1] - (kh - 1 - top), left:y.shape[2] - (kw - 1 - left)]
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


# Weight gradient on YNNPACK: images per scan iteration. Each tap's dot, (c, K) @ (K, o) with
# K = images * oh * ow, is memory-bound for small c * o; done over the whole batch
# it streams the input from memory once per tap. Looping over groups of images whose
# padded input is about _GROUP_BYTES keeps a group's taps in cache. Past
# _LOOP_MAX_CO = c * o the dots are compute-bound and the loop only costs, so none is
# used; nor when the whole input is at most 4 groups (measured:
# experiments/benchmarks/README.md).
_GROUP_BYTES = 512 * 1024
_IM2COL_MAX_COLS = 32  # RGB input layers: 27 columns, one dot beats 9 thin ones
_LOOP_MAX_CO = 128 * 128


def _images_per_group(n: int, image_bytes: int, c: int, o: int) -> int:
  """The largest divisor of the batch n whose images fit in _GROUP_BYTES (at least
  1); n (no loop) when the dots are compute-bound or the input fits in 4 groups, and
  with several devices (a scan over a batch sharded on 'data' would gather it)."""
  if c * o > _LOOP_MAX_CO or n * image_bytes <= 4 * _GROUP_BYTES or jax.device_count() > 1:
    return n
  fit = max(1, _GROUP_BYTES // image_bytes)
  return max(d for d in range(1, min(n, fit) + 1) if n % d == 0)


def _weight_grad(x, dy, w_shape, strides: tuple, pads: tuple, engine: str | None = None,
                 images_per_group: int | None = None):
  """dL/dw[i, j] = sum over batch and output pixels of x[tap (i, j)] dy.

  engine (default `conv_engine()`): 'eigen' is XLA's own backprop-filter
  convolution (rewrites measured: no faster in the step); 'ynnpack' is one dot
  per kernel tap (im2col's single dot when c * kh * kw is small) over groups of
  `images_per_group` images in a scan (default `_images_per_group`), in float32.
  """
  if (engine or conv_engine()) == 'eigen':
    conv = lambda w: lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)
    return jax.vjp(conv, jnp.zeros(w_shape, x.dtype))[1](dy)[0]
  kh, kw, c, o = w_shape
  (sh, sw), (n, oh, ow, _) = strides, dy.shape
  x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  m = images_per_group or _images_per_group(n, x[0].size * x.dtype.itemsize, c, o)
  dot = lambda a, b: lax.dot_general(a, b, (((0,), (0,)), ((),
                                                           ())), preferred_element_type=jnp.float32)

  def group_grad(xg, dg):  # (m, H, W, c), (m, oh, ow, o) -> (kh*kw*c, o)
    dg = dg.reshape(-1, o)
    taps = [
        xg[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw].reshape(-1, c)
        for i in range(kh)
        for j in range(kw)
    ]
    if c * kh * kw <= _IM2COL_MAX_COLS:
      return dot(jnp.concatenate(taps, -1), dg)
    return jnp.concatenate([dot(t, dg) for t in taps])

  if m == n:
    return group_grad(x, dy).reshape(w_shape)
  groups = (x.reshape(n // m, m, *x.shape[1:]), dy.reshape(n // m, m, oh, ow, o))
  total, _ = lax.scan(lambda acc, g: (acc + group_grad(*g), None),
                      jnp.zeros((kh * kw * c, o), jnp.float32), groups)
  return total.reshape(w_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _fast_conv(x, w, strides, pads):
  return _conv(x, w, strides, pads)


def _fast_conv_fwd(x, w, strides, pads):
  return _conv(x, w, strides, pads), (x, w)


def _input_grad(dy, x, w, strides: tuple, pads: tuple):
  """dL/dx. Stride 1: the convolution of dy with the flipped, transposed kernel,
  written out; larger strides: `_input_grad_phases`. JAX's own transpose rule
  gives the same numbers, but inside a while loop (a rolled attack) XLA:CPU runs it
  several times slower (at stride 2 an lhs-dilated convolution). An RGB input
  layer (c * kh * kw <= _IM2COL_MAX_COLS) goes through `_input_grad_col2im`."""
  kh, kw, c, _ = w.shape
  if strides != (1, 1):
    return _input_grad_phases(dy, x.shape, w, strides, pads)
  full = ((kh - 1 - pads[0][0], kh - 1 - pads[0][1]), (kw - 1 - pads[1][0], kw - 1 - pads[1][1]))
  if min(min(p) for p in full) < 0:
    return jax.vjp(lambda x: _conv(x, w, strides, pads), x)[1](dy)[0]
  if c * kh * kw <= _IM2COL_MAX_COLS:
    return _input_grad_col2im(dy, x.shape, w, pads)
  flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  return lax.conv_general_dilated(dy, flipped, (1, 1), full, dimension_numbers=_NHWC)


def _input_grad_phases(dy, x_shape, w, strides: tuple, pads: tuple):
  """Strided dL/dx as sh * sw stride-1 convolutions of dy, one per output phase
  (sub-pixel decomposition): padded-input row q = s * m + r takes the kernel rows
  r, r + s, ... (the sub-kernel w[r::s]), so phase r is dy convolved with that
  sub-kernel flipped; the phases are interleaved and the padding cropped. Same
  multiply-adds as the forward convolution, no dilated operand, so it stays fast
  inside a rolled loop, where JAX's transpose does not. Pads >= 0
  (`conv_general_dilated` sends negative ones to lax)."""
  assert min(min(p) for p in pads) >= 0, pads
  kh, kw, c, _ = w.shape
  (sh, sw), (n, oh, ow, _) = strides, dy.shape
  mh = -(-(x_shape[1] + sum(pads[0])) // sh)  # rows per phase of the padded input
  mw = -(-(x_shape[2] + sum(pads[1])) // sw)

  def phase(rh, rw):  # (n, mh, mw, c)
    sub = w[rh::sh, rw::sw]
    th, tw = sub.shape[:2]
    if not (th and tw):  # a kernel smaller than the stride
      return jnp.zeros((n, mh, mw, c), dy.dtype)
    flipped = jnp.flip(sub, (0, 1)).transpose(0, 1, 3, 2)
    return _conv(dy, flipped, (1, 1), ((th - 1, mh - oh), (tw - 1, mw - ow)))

  phases = jnp.stack([jnp.stack([phase(rh, rw) for rw in range(sw)], 3) for rh in range(sh)],
                     2)  # (n, mh, sh, mw, sw, c)
  full = phases.reshape(n, mh * sh, mw * sw, c)
  return full[:, pads[0][0]:pads[0][0] + x_shape[1], pads[1][0]:pads[1][0] + x_shape[2]]


def _input_grad_col2im(dy, x_shape, w, pads: tuple):
  """Stride-1 dL/dx as one dot, dy @ w^T -> per-tap columns (n, oh, ow, kh*kw*c),
  each tap's column block added back at its offset (float32). A convolution with 3
  output channels (the RGB input layer's input gradient) runs at a few GFLOP/s on
  both engines; the dot does not."""
  kh, kw, c, o = w.shape
  n, oh, ow, _ = dy.shape
  cols = lax.dot_general(dy, w.reshape(kh * kw * c, o), (((3,), (1,)), ((), ())),
                         preferred_element_type=jnp.float32).reshape(n, oh, ow, kh, kw, c)
  h, wd = x_shape[1] + sum(pads[0]), x_shape[2] + sum(pads[1])  # the padded input
  dx = sum(
      jnp.pad(cols[:, :, :, i, j], ((0, 0), (i, h - oh - i), (j, wd - ow - j), (0, 0)))
      for i in range(kh)
      for j in range(kw))
  return dx[:, pads[0][0]:pads[0][0] + x_shape[1],
            pads[1][0]:pads[1][0] + x_shape[2]].astype(dy.dtype)


def _fast_conv_bwd(strides, pads, residuals, dy):
  x, w = residuals
  return (_input_grad(dy, x, w, strides, pads), _weight_grad(x, dy, w.shape, strides,
                                                             pads).astype(w.dtype))


_fast_conv.defvjp(_fast_conv_fwd, _fast_conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
  """Drop-in for `lax.conv_general_dilated` (flax's `nn.Conv(conv_general_dilated=)`).

  Plain NHWC/HWIO convolutions take the fast path; anything else (dilation,
  groups, other layouts, precision or dtype options, negative pads) goes to lax
  unchanged.

  Args:
    lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
      dimension_numbers, feature_group_count, precision, **kwargs: those of
      `lax.conv_general_dilated`.

  Returns:
    The convolution's output, as `lax.conv_general_dilated`'s.
  """
  plain = (not lhs_dilation or all(d == 1 for d in lhs_dilation)) and \
          (not rhs_dilation or all(d == 1 for d in rhs_dilation)) and \
          feature_group_count == 1 and precision is None and not kwargs and \
          lhs.ndim == 4 and _is_nhwc(dimension_numbers, lhs.shape, rhs.shape)
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count, precision=precision,
                                    **kwargs)
  strides = tuple(int(s) for s in window_strides)
  pads = _explicit_pads(lhs.shape, rhs.shape, strides, padding)
  if min(min(p) for p in pads) < 0:  # cropping pads: lax's own (models never use them)
    return lax.conv_general_dilated(lhs, rhs, window_strides, pads,
                                    dimension_numbers=dimension_numbers)
  return _fast_conv(lhs, rhs, strides, pads)


def _is_nhwc(dimension_numbers, lhs_shape, rhs_shape) -> bool:
  if dimension_numbers is None:
    return False  # lax's default is NCHW
  expected = lax.conv_dimension_numbers(lhs_shape, rhs_shape, _NHWC)
  return lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers) == expected


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, floor (== nn.max_pool(x, (2, 2), strides=(2, 2))).

  A max over the axes of a [B, H/2, 2, W/2, 2, C] reshape: its gradient is one
  elementwise pass (faster on XLA:CPU than lax's select-and-scatter or four
  strided slices). Ties split the gradient equally
  (lax gives it to the first maximum); after a ReLU ties are at 0, where the ReLU's
  gradient is 0 either way.

  Args:
    x: [B, H, W, C].

  Returns:
    [B, H // 2, W // 2, C].
  """
  b, h, w, c = x.shape
  h, w = h // 2 * 2, w // 2 * 2
  windows = x[:, :h, :w].reshape(b, h // 2, 2, w // 2, 2, c)
  return jnp.max(windows, axis=(2, 4))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float):
  """Training-mode BatchNorm over every axis but the last, with a closed-form VJP.

  The forward is flax's `nn.BatchNorm` (use_fast_variance: var = E[x^2] - E[x]^2,
  clipped at 0; y = (x - mean) * (rsqrt(var + eps) * scale) + bias), op for op.
  The backward is the textbook closed form (Ioffe & Szegedy 2015, as PyTorch's
  and cuDNN's kernels compute it): with r = rsqrt(var + eps), xc = x - mean,
  d_bias = sum(g), d_scale = r sum(g xc), and
  dx = scale r (g - d_bias / n - xc r d_scale / n) + the mean's and variance's
  own cotangents (zero when, as in training, they only feed the running stats).
  Values equal flax + autodiff to float rounding (`tests/test_cpu_ops.py`), except
  where the variance is clipped at 0 (E[x^2] - E[x]^2 rounding below zero: autodiff
  passes no gradient through the variance there, the closed form does; both are
  noise, as that variance is).

  Args:
    x: [..., C] float32.
    scale, bias: [C].
    epsilon: added to the variance (PyTorch's eps, `layers.BN_EPSILON`).

  Returns:
    (y, mean, var): y like x, and the batch mean and biased variance [C] that
    update the running averages.
  """
  out, _ = _batch_norm_train_fwd(x, scale, bias, epsilon)
  return out


def _batch_norm_train_fwd(x, scale, bias, epsilon):
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axes)
  var = jnp.maximum(0.0, jnp.mean(lax.square(x), axes) - lax.square(mean))
  y = (x - mean) * (lax.rsqrt(var + epsilon) * scale) + bias
  return (y, mean, var), (x, mean, var, scale)


def _batch_norm_train_bwd(epsilon, residuals, cotangents):
  x, mean, var, scale = residuals
  g, g_mean, g_var = cotangents
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  r = lax.rsqrt(var + epsilon)
  xc = x - mean
  d_bias = jnp.sum(g, axes)
  d_scale = jnp.sum(g * xc, axes) * r
  dx = (scale * r) * (g - d_bias / n - xc * (r * d_scale / n)) + g_mean / n \
      + xc * (2.0 * g_var / n)
  return dx, d_scale, d_bias


batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd)
