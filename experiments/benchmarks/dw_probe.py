r"""Weight-gradient formulations of one convolution, timed side by side (issue 16).

  python experiments/benchmarks/dw_probe.py --layer=128,30,30,32,32 --reps=7
  XLA_FLAGS=--xla_cpu_use_xnnpack=true python experiments/benchmarks/dw_probe.py ...

The weight gradient of a stride-1 VALID 3x3 convolution, dL/dw[i, j, c, o] =
sum over (n, h, w) of x[n, h + i, w + j, c] * dy[n, h, w, o], computed as:
  xla       JAX's own transpose (XLA's backprop-filter convolution)
  cpu_ops   what the models use (`cpu_ops._weight_grad`: taps over groups of images)
  taps      one (c, K) @ (K, o) dot per kernel tap, K = n*oh*ow (cpu_ops until 12/2026;
            its lhs is a transposed slice, so XLA runs it on Eigen)
  taps_dyt  per tap dy^T (o, K) @ x_tap (K, c), dy^T materialised once: a
            row-major lhs, which XLA:CPU gives to YNNPACK
  taps_xt   per tap x^T_tap (c, K) @ dy (K, o), x made channel-major once
  chunks_G  the same dots split over G groups of images (a batched dot with
            contraction K/G), summed over groups: shorter contractions that fit
            in cache
  rows      one dot per kernel row, the row's kw shifted slices side by side:
            (kw*c, K) @ (K, o)
  im2col    one (kh*kw*c, K) @ (K, o) dot
  flat      per tap one contiguous row offset of the flattened input, dy
            zero-padded to the input's size (no strided slices)
  swap      a forward convolution with batch and channels swapped: x as
            (c, h, w, n), dy as an (oh, ow, n, o) kernel, output (c, kh, kw, o)
  torch     PyTorch's autograd (oneDNN), NCHW, --torch_threads
All JAX variants are checked against `xla` (max relative error printed).
Repetitions rotate the variants; medians in ms. Writes nothing; prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _shifted(x, i, j, oh, ow):
  return x[:, i:i + oh, j:j + ow]


def dw_xla(x, dy, kh, kw):
  w = jnp.zeros((kh, kw, x.shape[-1], dy.shape[-1]), x.dtype)
  conv = lambda w: lax.conv_general_dilated(x, w, (1, 1), 'VALID', dimension_numbers=_NHWC)
  return jax.vjp(conv, w)[1](dy)[0]


def dw_taps(x, dy, kh, kw):
  n, oh, ow, o = dy.shape
  d = dy.reshape(-1, o)
  taps = [_shifted(x, i, j, oh, ow).reshape(-1, x.shape[-1]).T @ d
          for i in range(kh) for j in range(kw)]
  return jnp.stack(taps).reshape(kh, kw, x.shape[-1], o)


def dw_taps_dyt(x, dy, kh, kw):
  n, oh, ow, o = dy.shape
  # dy^T materialised once (the barrier stops XLA folding the transpose back into
  # the dots): each tap's dot then has a row-major lhs contracting its last dim,
  # the form XLA:CPU hands to YNNPACK.
  dt = lax.optimization_barrier(dy.reshape(-1, o).T)
  taps = [dt @ _shifted(x, i, j, oh, ow).reshape(-1, x.shape[-1])
          for i in range(kh) for j in range(kw)]
  return jnp.stack(taps).reshape(kh, kw, o, x.shape[-1]).transpose(0, 1, 3, 2)


def dw_taps_xt(x, dy, kh, kw):
  n, oh, ow, o = dy.shape
  c = x.shape[-1]
  xt = lax.optimization_barrier(x.transpose(3, 0, 1, 2))     # channel-major, once
  d = dy.reshape(-1, o)
  taps = [xt[:, :, i:i + oh, j:j + ow].reshape(c, -1) @ d for i in range(kh) for j in range(kw)]
  return jnp.stack(taps).reshape(kh, kw, c, o)


def dw_dyt_chunks(groups):
  def fn(x, dy, kh, kw):
    n, oh, ow, o = dy.shape
    c = x.shape[-1]
    dt = lax.optimization_barrier(dy.reshape(groups, -1, o).transpose(0, 2, 1))  # (G, o, K/G)
    taps = [jnp.matmul(dt, _shifted(x, i, j, oh, ow).reshape(groups, -1, c)).sum(0)
            for i in range(kh) for j in range(kw)]
    return jnp.stack(taps).reshape(kh, kw, o, c).transpose(0, 1, 3, 2)
  return fn


def dw_flat(x, dy, kh, kw):
  """Tap (i, j) as one contiguous row offset of the flattened input: dy zero-padded
  to the input's spatial size, so offsets that cross a row or an image meet zeros."""
  n, h, w, c = x.shape
  o = dy.shape[-1]
  dpad = jnp.pad(dy, ((0, 0), (0, h - dy.shape[1]), (0, w - dy.shape[2]), (0, 0)))
  dt = lax.optimization_barrier(dpad.reshape(-1, o).T)                 # (o, n*h*w)
  m = n * h * w
  xf = jnp.pad(x.reshape(m, c), ((0, (kh - 1) * w + kw - 1), (0, 0)))
  taps = [dt @ lax.slice_in_dim(xf, i * w + j, i * w + j + m) for i in range(kh)
          for j in range(kw)]
  return jnp.stack(taps).reshape(kh, kw, o, c).transpose(0, 1, 3, 2)


def dw_swap(x, dy, kh, kw):
  """The weight gradient as a forward convolution with the batch and channel roles
  swapped: input x as (c, h, w, n) (batch c, features n), kernel dy as
  (oh, ow, n, o); VALID output (c, kh, kw, o). Made canonical NHWC/HWIO by explicit
  transposes so XLA:CPU runs it as an ordinary forward convolution."""
  xt = x.transpose(3, 1, 2, 0)
  dk = dy.transpose(1, 2, 0, 3)
  out = lax.conv_general_dilated(xt, dk, (1, 1), 'VALID', dimension_numbers=_NHWC)
  return out.transpose(1, 2, 0, 3)


def dw_scan(groups, per_tap=False):
  """A loop over G groups of images, each group's im2col (or its per-tap dots) small
  enough to stay in cache, accumulated in the carry."""
  def fn(x, dy, kh, kw):
    n, oh, ow, o = dy.shape
    c = x.shape[-1]
    xs = x.reshape(groups, n // groups, *x.shape[1:])
    ds = dy.reshape(groups, -1, o)

    def body(acc, xd):
      xg, d = xd
      if per_tap:
        g = jnp.stack([_shifted(xg, i, j, oh, ow).reshape(-1, c).T @ d
                       for i in range(kh) for j in range(kw)]).reshape(-1, o)
      else:
        cols = jnp.concatenate([_shifted(xg, i, j, oh, ow) for i in range(kh)
                                for j in range(kw)], -1)
        g = cols.reshape(-1, kh * kw * c).T @ d
      return acc + g, None
    acc, _ = lax.scan(body, jnp.zeros((kh * kw * c, o), x.dtype), (xs, ds))
    return acc.reshape(kh, kw, c, o)
  return fn


def dw_chunks(groups):
  def fn(x, dy, kh, kw):
    n, oh, ow, o = dy.shape
    c = x.shape[-1]
    d = dy.reshape(groups, -1, o)
    taps = [jnp.einsum('gkc,gko->co', _shifted(x, i, j, oh, ow).reshape(groups, -1, c), d)
            for i in range(kh) for j in range(kw)]
    return jnp.stack(taps).reshape(kh, kw, c, o)
  return fn


def dw_rows(x, dy, kh, kw):
  n, oh, ow, o = dy.shape
  c = x.shape[-1]
  d = dy.reshape(-1, o)
  rows = [jnp.concatenate([_shifted(x, i, j, oh, ow) for j in range(kw)], -1)
          .reshape(-1, kw * c).T @ d for i in range(kh)]
  return jnp.stack(rows).reshape(kh, kw, c, o)


def dw_im2col(x, dy, kh, kw):
  n, oh, ow, o = dy.shape
  c = x.shape[-1]
  cols = jnp.concatenate([_shifted(x, i, j, oh, ow) for i in range(kh) for j in range(kw)], -1)
  return (cols.reshape(-1, kh * kw * c).T @ dy.reshape(-1, o)).reshape(kh, kw, c, o)


def dw_cpu_ops(x, dy, kh, kw):
  from generalist_jax.models import cpu_ops
  return cpu_ops._weight_grad(x, dy, (kh, kw, x.shape[-1], dy.shape[-1]), (1, 1),
                              ((0, 0), (0, 0)))


def variants(chunk_groups):
  out = {'xla': dw_xla, 'cpu_ops': dw_cpu_ops, 'taps': dw_taps, 'taps_dyt': dw_taps_dyt, 'taps_xt': dw_taps_xt,
         'flat': dw_flat, 'swap': dw_swap,
         'rows': dw_rows, 'im2col': dw_im2col}
  for g in chunk_groups:
    out[f'chunks_{g}'] = dw_chunks(g)
    out[f'dyt_chunks_{g}'] = dw_dyt_chunks(g)
    out[f'scan_{g}'] = dw_scan(g)
    out[f'scantap_{g}'] = dw_scan(g, per_tap=True)
  return out


def torch_dw(x, dy, kh, kw, threads):
  import torch
  import torch.nn.functional as F
  torch.set_num_threads(threads)
  tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
  tdy = torch.from_numpy(np.asarray(dy).transpose(0, 3, 1, 2).copy())
  tw = torch.zeros(dy.shape[-1], x.shape[-1], kh, kw, requires_grad=True)

  def fn():
    return torch.autograd.grad(F.conv2d(tx, tw), tw, tdy)[0]
  return fn


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--layer', default='128,30,30,32,32', help='n,h,w,c,o of a 3x3 VALID conv')
  p.add_argument('--reps', type=int, default=7)
  p.add_argument('--chunks', default='8,128', help='group counts for chunks_G')
  p.add_argument('--only', default='', help='comma list of variant-name prefixes to time')
  p.add_argument('--torch_threads', type=int, default=1)
  p.add_argument('--no_torch', action='store_true')
  args = p.parse_args(argv)
  n, h, w, c, o = (int(v) for v in args.layer.split(','))
  kx, kd = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (n, h, w, c))
  dy = jax.random.normal(kd, (n, h - 2, w - 2, o))
  from generalist_jax.models import cpu_ops
  fns = {name: jax.jit(lambda x, dy, f=f: f(x, dy, 3, 3),
                       compiler_options=cpu_ops.compiler_options())
         for name, f in variants([int(g) for g in args.chunks.split(',') if g]).items()
         if name == 'xla' or not args.only
         or any(name.startswith(v) for v in args.only.split(','))}
  ref = np.asarray(fns['xla'](x, dy))
  err = {}
  for name, fn in fns.items():
    got = np.asarray(fn(x, dy))
    err[name] = float(np.abs(got - ref).max() / np.abs(ref).max())
  calls = {name: (lambda fn=fn: jax.block_until_ready(fn(x, dy))) for name, fn in fns.items()}
  if not args.no_torch:
    calls['torch'] = torch_dw(x, dy, 3, 3, args.torch_threads)
  times = {name: [] for name in calls}
  for rep in range(args.reps + 1):
    for name, call in calls.items():
      t = time.perf_counter()
      call()
      if rep:
        times[name].append(1e3 * (time.perf_counter() - t))
  print(json.dumps({'layer': args.layer, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
                    'conv_engine': cpu_ops.conv_engine(),
                    'load': open('/proc/loadavg').read().split()[:3],
                    'median_ms': {k: round(statistics.median(v), 1) for k, v in times.items()},
                    'max_rel_err_vs_xla': err, 'argv': sys.argv[1:]}))


if __name__ == '__main__':
  main()
