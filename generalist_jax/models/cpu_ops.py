"""Convolution and 2x2 max-pool written the way XLA:CPU runs them fast.

Same values as `lax.conv_general_dilated` / `nn.max_pool` (to float rounding;
`tests/test_cpu_ops.py`), different formulations. Measured per layer on a
2-core AVX2 CPU, jax 0.10.2, batch 128 (`experiments/benchmarks/layer_probe.py`):

* VALID convolutions miss XLA:CPU's YNNPACK fusion and run about 3x slower
  than the same convolution with SAME padding; so a VALID conv is computed as
  the padded one and cropped (the crop drops exactly the border outputs that
  saw the padding).
* The weight gradient (XLA's "backprop filter" convolution) ran at 2-4
  GFLOP/s; it is computed here as one matmul per kernel tap,
  `x_shifted^T @ dy`, summed over batch and space (custom VJP; the input
  gradient stays XLA's own transposed convolution, which is fast).
* Inside a while loop (a rolled attack: APGD, Square, evaluation PGD) JAX's
  transpose rule for the input gradient ran 4-30x slower per layer than the
  same convolution with the flipped kernel written out, which is what the
  custom VJP uses for stride-1 convolutions.
* `reduce_window` max-pool's gradient is a select-and-scatter, 5-10x slower
  than the gradient of the max of the window's four strided corners.

Accelerators have none of these problems, so models use these only when
`model.ops` resolves to 'cpu' (`resolve_ops('auto')` on the CPU backend).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

OPS = ('auto', 'xla', 'cpu')
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def resolve_ops(ops: str) -> str:
  """'auto' -> 'cpu' on the CPU backend, else 'xla'."""
  if ops not in OPS:
    raise ValueError(f'model.ops={ops!r} is unknown; use one of {OPS}.')
  if ops == 'auto':
    return 'cpu' if jax.default_backend() == 'cpu' else 'xla'
  return ops


def _explicit_pads(x_shape, w_shape, strides, padding) -> tuple:
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x_shape[1:3], w_shape[:2], strides, padding)
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _conv(x, w, strides: tuple, pads: tuple):
  kh, kw = w.shape[:2]
  if strides == (1, 1) and pads == ((0, 0), (0, 0)) and (kh, kw) != (1, 1):
    top, left = (kh - 1) // 2, (kw - 1) // 2
    y = lax.conv_general_dilated(x, w, strides, ((top, kh - 1 - top), (left, kw - 1 - left)),
                                 dimension_numbers=_NHWC)
    return y[:, top:y.shape[1] - (kh - 1 - top), left:y.shape[2] - (kw - 1 - left)]
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


def _weight_grad(x, dy, w_shape, strides: tuple, pads: tuple):
  """dL/dw[i, j] = sum over batch and output pixels of x[tap (i, j)] dy."""
  kh, kw, c, o = w_shape
  (sh, sw), (n, oh, ow, _) = strides, dy.shape
  x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  dy = dy.reshape(n * oh * ow, o)
  taps = [x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw].reshape(-1, c).T @ dy
          for i in range(kh) for j in range(kw)]
  return jnp.stack(taps).reshape(kh, kw, c, o)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _fast_conv(x, w, strides, pads):
  return _conv(x, w, strides, pads)


def _fast_conv_fwd(x, w, strides, pads):
  return _conv(x, w, strides, pads), (x, w)


def _input_grad(dy, x, w, strides: tuple, pads: tuple):
  """dL/dx. Stride 1: the convolution of dy with the flipped, transposed kernel,
  written out. JAX's own transpose rule gives the same numbers, but inside a
  while loop (a rolled attack) XLA:CPU ran it 4-30x slower per layer."""
  kh, kw = w.shape[:2]
  full = ((kh - 1 - pads[0][0], kh - 1 - pads[0][1]), (kw - 1 - pads[1][0], kw - 1 - pads[1][1]))
  if strides != (1, 1) or min(min(p) for p in full) < 0:
    return jax.vjp(lambda x: _conv(x, w, strides, pads), x)[1](dy)[0]
  flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  return lax.conv_general_dilated(dy, flipped, (1, 1), full, dimension_numbers=_NHWC)


def _fast_conv_bwd(strides, pads, residuals, dy):
  x, w = residuals
  return (_input_grad(dy, x, w, strides, pads),
          _weight_grad(x, dy, w.shape, strides, pads).astype(w.dtype))


_fast_conv.defvjp(_fast_conv_fwd, _fast_conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
  """Drop-in for `lax.conv_general_dilated` (flax's `nn.Conv(conv_general_dilated=)`).

  Plain NHWC/HWIO convolutions take the fast path; anything else (dilation,
  groups, other layouts, precision or dtype options) goes to lax unchanged.
  """
  plain = (not lhs_dilation or all(d == 1 for d in lhs_dilation)) and \
          (not rhs_dilation or all(d == 1 for d in rhs_dilation)) and \
          feature_group_count == 1 and precision is None and not kwargs and \
          lhs.ndim == 4 and _is_nhwc(dimension_numbers, lhs.shape, rhs.shape)
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision, **kwargs)
  strides = tuple(int(s) for s in window_strides)
  return _fast_conv(lhs, rhs, strides, _explicit_pads(lhs.shape, rhs.shape, strides, padding))


def _is_nhwc(dimension_numbers, lhs_shape, rhs_shape) -> bool:
  if dimension_numbers is None:
    return False   # lax's default is NCHW
  expected = lax.conv_dimension_numbers(lhs_shape, rhs_shape, _NHWC)
  return lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers) == expected


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, floor (== nn.max_pool(x, (2, 2), strides=(2, 2)))."""
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  corner = lambda i, j: x[:, i:h:2, j:w:2]
  return jnp.maximum(jnp.maximum(corner(0, 0), corner(0, 1)),
                     jnp.maximum(corner(1, 0), corner(1, 1)))
