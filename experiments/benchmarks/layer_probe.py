r"""Where a step's time goes: every convolution and max-pool of a model, timed alone.

  python experiments/benchmarks/layer_probe.py --model=small_cnn:1 --batch=128
  python experiments/benchmarks/layer_probe.py --model=preact_resnet18:1 --batch=32

The model's convolutions (shapes, strides, padding) and 2x2 max-pools are read
from the jaxpr of its forward pass. Each distinct layer is timed as forward,
input gradient (dx: what attacks need) and weight gradient (dw: what the
parameter update needs), three ways, repetitions alternating:
  xla    lax.conv_general_dilated / nn.max_pool, differentiated by JAX
  cpu    generalist_jax.cpu_ops (model.ops='cpu', the default on CPU)
  torch  F.conv2d / max_pool2d and their autograd (NCHW, --torch_threads)
Totals weight each layer by how often the model uses it. Medians in ms.
Writes results/layers_<model>_b<batch>.{json,md}.
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import bench  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
from jax import lax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from generalist_jax import models  # noqa: E402
from generalist_jax.models import cpu_ops  # noqa: E402

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def model_layers(spec: str, batch: int) -> collections.Counter:
  """Counter of ('conv', x_shape, w_shape, strides, pads) and ('pool', x_shape)."""
  label, fields = bench.parse_model(spec)
  fields['ops'] = 'xla'
  model = models.create_model(ml_collections.ConfigDict(fields), 10, (0.5,), (0.25,))
  variables = models.init_variables(model, jax.random.key(0), (32, 32, 3))
  x = jnp.zeros((batch, 32, 32, 3))
  jaxpr = jax.make_jaxpr(lambda v, x: models.apply_model(model, v, x, train=False)[0])(variables, x)
  layers = collections.Counter()
  for eqn in _all_eqns(jaxpr.jaxpr):
    if eqn.primitive.name == 'conv_general_dilated':
      xs, ws = (tuple(v.aval.shape) for v in eqn.invars)
      pads = tuple(tuple(p) for p in eqn.params['padding'])
      layers[('conv', xs, ws, tuple(eqn.params['window_strides']), pads)] += 1
    elif eqn.primitive.name == 'reduce_window_max':
      layers[('pool', tuple(eqn.invars[0].aval.shape))] += 1
  return layers


def _all_eqns(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jax.core.jaxprs_in_params(eqn.params):
      yield from _all_eqns(sub)


def jax_fns(layer, ops: str):
  """(forward, dx, dw) jitted functions of (x, w, dy) for one layer, compiled for
  this process's XLA:CPU convolution engine (`cpu_ops.conv_engine()`), as the
  train step and evaluation are."""
  jit = functools.partial(jax.jit, compiler_options=cpu_ops.compiler_options())
  if layer[0] == 'pool':
    pool = cpu_ops.max_pool_2x2 if ops == 'cpu' else (
        lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)))
    return (jit(lambda x, w, dy: pool(x)),
            jit(lambda x, w, dy: jax.vjp(pool, x)[1](dy)[0]), None)
  _, _, _, strides, pads = layer
  conv_fn = cpu_ops.conv_general_dilated if ops == 'cpu' else lax.conv_general_dilated
  conv = lambda x, w: conv_fn(x, w, strides, pads, dimension_numbers=_NHWC)
  return (jit(lambda x, w, dy: conv(x, w)),
          jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0]),
          jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]))


def torch_fns(layer):
  import torch
  import torch.nn.functional as F
  if layer[0] == 'pool':
    def fwd(x, w, dy):
      with torch.no_grad():
        return F.max_pool2d(x, 2)

    def dx(x, w, dy):
      x = x.detach().requires_grad_(True)
      return torch.autograd.grad(F.max_pool2d(x, 2), x, dy)[0]
    return fwd, dx, None
  _, _, _, strides, pads = layer
  (top, bottom), (left, right) = pads
  if top != bottom or left != right:
    raise ValueError(f'asymmetric padding {pads} has no F.conv2d twin')
  conv = lambda x, w: F.conv2d(x, w, stride=strides, padding=(top, left))

  def fwd(x, w, dy):
    with torch.no_grad():
      return conv(x, w)

  def grad(wrt):
    def fn(x, w, dy):
      x, w = x.detach().requires_grad_(wrt == 0), w.detach().requires_grad_(wrt == 1)
      return torch.autograd.grad(conv(x, w), (x, w)[wrt], dy)[0]
    return fn
  return fwd, grad(0), grad(1)


def arrays(layer, key):
  kx, kw, kd = jax.random.split(key, 3)
  x = jax.random.normal(kx, layer[1])
  w = jax.random.normal(kw, layer[2]) * 0.1 if layer[0] == 'conv' else jnp.zeros(())
  out = (jax.eval_shape(lambda x: cpu_ops.max_pool_2x2(x), x) if layer[0] == 'pool' else
         jax.eval_shape(lambda x, w: lax.conv_general_dilated(
             x, w, layer[3], layer[4], dimension_numbers=_NHWC), x, w))
  return x, w, jax.random.normal(kd, out.shape)


def to_torch(x, w, dy, layer):
  import torch
  nchw = lambda a: torch.from_numpy(np.asarray(a).transpose(0, 3, 1, 2).copy())
  tw = (torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy()) if layer[0] == 'conv'
        else None)
  return nchw(x), tw, nchw(dy)


def flops(layer) -> float:
  if layer[0] == 'pool':
    return 0.0
  x, w, strides = layer[1], layer[2], layer[3]
  oh = (x[1] + sum(layer[4][0]) - w[0]) // strides[0] + 1
  ow = (x[2] + sum(layer[4][1]) - w[1]) // strides[1] + 1
  return 2.0 * x[0] * oh * ow * w[0] * w[1] * w[2] * w[3]


def describe(layer) -> str:
  if layer[0] == 'pool':
    return f'maxpool2x2 {"x".join(map(str, layer[1][1:]))}'
  x, w, s, p = layer[1:]
  pad = 'valid' if p == ((0, 0), (0, 0)) else f'pad{p[0][0]}'
  return f'conv{w[0]}x{w[1]} {x[1]}x{x[2]}x{w[2]}->{w[3]} s{s[0]} {pad}'


def measure(layer, reps: int, with_torch: bool) -> dict:
  x, w, dy = arrays(layer, jax.random.key(0))
  impls = {'xla': jax_fns(layer, 'xla'), 'cpu': jax_fns(layer, 'cpu')}
  args = {'xla': (x, w, dy), 'cpu': (x, w, dy)}
  if with_torch:
    impls['torch'] = torch_fns(layer)
    args['torch'] = to_torch(x, w, dy, layer)
  times = collections.defaultdict(list)
  for rep in range(reps + 1):
    for impl, fns in impls.items():
      for part, fn in zip(('fwd', 'dx', 'dw'), fns):
        if fn is None:
          continue
        t = time.perf_counter()
        out = fn(*args[impl])
        if impl != 'torch':
          jax.block_until_ready(out)
        if rep:
          times[f'{impl}_{part}'].append(1e3 * (time.perf_counter() - t))
  return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--model', default='small_cnn:1')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--torch_threads', type=int, default=2)
  p.add_argument('--no_torch', action='store_true')
  p.add_argument('--out_dir', default=str(pathlib.Path(__file__).parent / 'results'))
  args = p.parse_args(argv)
  with_torch = not args.no_torch
  if with_torch:
    import torch
    torch.set_num_threads(args.torch_threads)
  load = bench.uptime()
  rows = []
  for layer, count in model_layers(args.model, args.batch).items():
    row = {'layer': describe(layer), 'count': count, 'gflop': flops(layer) / 1e9,
           **measure(layer, args.reps, with_torch)}
    rows.append(row)
    print(row, flush=True)
  cols = [f'{i}_{p}' for p in ('fwd', 'dx', 'dw') for i in ('xla', 'cpu', 'torch')
          if with_torch or i != 'torch']
  total = {c: sum(r['count'] * r.get(c, 0.0) for r in rows) for c in cols}
  result = {'command': ' '.join([sys.executable] + (sys.argv if argv is None else argv)),
            'uptime_before': load, 'uptime_after': bench.uptime(), 'settings': vars(args),
            'machine': bench.machine(), 'conv_engine': cpu_ops.conv_engine(),
            'layers': rows, 'total_ms': total}
  out = pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  stem = f"layers_{args.model.replace(':', '_w')}_b{args.batch}"
  (out / f'{stem}.json').write_text(json.dumps(result, indent=2))
  fmt = lambda v: '' if v is None else f'{v:.1f}'
  lines = [f'# Per-layer times: {args.model}, batch {args.batch}', '',
           f'Command: `{result["command"]}`', '',
           f'Load: before `{load}`; after `{result["uptime_after"]}`.', '',
           'Median ms of each layer alone (fwd: forward; dx: input gradient; dw: weight '
           'gradient). xla: lax ops; cpu: generalist_jax.cpu_ops; both compiled for XLA:CPU '
           f'convolution engine {cpu_ops.conv_engine()}; torch: PyTorch '
           f'{args.torch_threads} threads. "total" weights each layer by its count.', '',
           '| layer | count | GFLOP | ' + ' | '.join(cols) + ' |',
           '|---|---|---|' + '---|' * len(cols)]
  for r in rows:
    lines.append(f'| {r["layer"]} | {r["count"]} | {r["gflop"]:.2f} | '
                 + ' | '.join(fmt(r.get(c)) for c in cols) + ' |')
  lines.append('| total | | | ' + ' | '.join(fmt(total[c]) for c in cols) + ' |')
  (out / f'{stem}.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))
  return result


if __name__ == '__main__':
  main()
