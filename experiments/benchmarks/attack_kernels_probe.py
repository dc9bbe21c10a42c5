r"""Old vs new formulations of the attack-loop kernels changed in the sixth round, timed
in one process with alternating repetitions (medians after a warm-up).

  python experiments/benchmarks/attack_kernels_probe.py --out=results/attack_kernels_<machine>.json

  strided_dx  10 gradient steps through one stride-2 convolution (PreAct-ResNet-18
              w0.25 shapes, batch 64), in a rolled (unroll=1) and an unrolled
              fori_loop: JAX's own transpose (an lhs-dilated convolution) vs
              `cpu_ops._input_grad_phases`
  kth         the m-th largest |g| per row (128 x 3072, m = 5%): lax.top_k, a full
              sort, `threat.kth_largest` (radix select)
  apgd_l1     APGD-l1, 20 steps, batched, SmallCNN w1 batch 128: the threshold by
              sort (the code before) vs radix select; checks the x_adv are equal
  apgd_ce     APGD-CE l-inf, 20 steps, vmapped per example as `evaluate` runs it,
              PreAct-ResNet-18 w0.25 batch 64: rolled with the strided input
              gradients as before (JAX's transpose), rolled, fully unrolled
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402  (puts the repository root on sys.path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from generalist_jax import models  # noqa: E402
from generalist_jax.attacks import apgd  # noqa: E402
from generalist_jax.attacks import threat  # noqa: E402
from generalist_jax.evaluation import runner  # noqa: E402
from generalist_jax.models import cpu_ops  # noqa: E402

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def alternate(fns: dict, reps: int) -> dict:
  """name -> median seconds, repetitions alternating between the functions."""
  times = {name: [] for name in fns}
  for rep in range(reps + 1):
    for name, fn in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(fn())
      if rep:
        times[name].append(time.perf_counter() - t)
  return {name: statistics.median(ts) for name, ts in times.items()}


def strided_dx(reps: int) -> dict:
  out = {}
  for n, h, c, o, k in ((64, 32, 16, 32, 3), (64, 32, 16, 32, 1), (64, 16, 32, 64, 3)):
    x = jax.random.normal(jax.random.key(0), (n, h, h, c))
    w = jax.random.normal(jax.random.key(1), (k, k, c, o)) * 0.1
    pads = (((k - 1) // 2,) * 2,) * 2
    conv = lambda x, w: lax.conv_general_dilated(x, w, (2, 2), pads, dimension_numbers=_NHWC)

    def step(x, w, phases):
      y = jnp.tanh(conv(x, w))
      dy = 2 * y * (1 - y * y)
      g = (cpu_ops._input_grad_phases(dy, x.shape, w, (2, 2), pads) if phases
           else jax.vjp(lambda x: conv(x, w), x)[1](dy)[0])
      return x + 0.01 * g
    fns = {}
    for phases in (False, True):
      for unroll in (1, 10):
        loop = lambda x, w, u=unroll, p=phases: lax.fori_loop(
            0, 10, lambda i, x: step(x, w, p), x, unroll=u)
        compiled = jax.jit(loop).lower(x, w).compile(compiler_options=cpu_ops.compiler_options())
        name = f'{"phases" if phases else "jax_transpose"}_{"rolled" if unroll == 1 else "unrolled"}'
        fns[name] = lambda c=compiled: c(x, w)
    out[f'{k}x{k} s2 {h}x{h}x{c}->{o} b{n}'] = {k_: 1e3 * v for k_, v in alternate(fns, reps).items()}
  return {'ms_per_10_steps': out}


def _by_sort(values, m):
  kth = values.shape[1] - jnp.broadcast_to(jnp.asarray(m), values.shape[:1])
  return jnp.take_along_axis(jnp.sort(values, axis=-1), kth[:, None], -1)


def kth(reps: int) -> dict:
  g = jnp.abs(jax.random.normal(jax.random.key(0), (128, 3072)))
  m = 3072 - int(0.95 * 3072)
  fns = {'top_k': jax.jit(lambda g: jnp.min(lax.top_k(g, m)[0], -1, keepdims=True)),
         'sort': jax.jit(lambda g: _by_sort(g, m)),
         'radix': jax.jit(lambda g: threat.kth_largest(g, m))}
  values = {name: f(g) for name, f in fns.items()}
  same = all(bool(jnp.array_equal(v, values['sort'])) for v in values.values())
  return {'ms': {name: 1e3 * v for name, v in alternate(
      {name: (lambda f=f: f(g)) for name, f in fns.items()}, reps * 5).items()},
          'all_equal': same}


def _model(name: str, batch: int):
  config = bench.step_config('pgd', bench.parse_model(name)[1], batch, 10)
  step = bench.JaxStep(config, bench._batch(batch))
  host = bench._batch(batch)
  return (runner.model_apply_fn(step.setup.model), step.variables,
          jnp.asarray(host['image']), jnp.asarray(host['label']))


def apgd_l1(reps: int) -> dict:
  apply_fn, variables, x, y = _model('small_cnn:1', 128)
  radix, compiled = threat.kth_largest, {}
  try:
    for name, impl in (('sort', _by_sort), ('radix', radix)):
      threat.kth_largest = impl     # read when l1_topk_step is traced
      run = lambda p, x, y: apgd.apgd(runner.bind(apply_fn, p), x, y, jax.random.key(0),
                                      eps=12.0, norm='l1', steps=20)
      compiled[name] = jax.jit(run, compiler_options=models.compiler_options()).lower(
          variables, x, y).compile()
  finally:
    threat.kth_largest = radix
  outs = {name: c(variables, x, y) for name, c in compiled.items()}
  return {'s': alternate({name: (lambda c=c: c(variables, x, y))
                          for name, c in compiled.items()}, reps),
          'same_x_adv': bool(jnp.array_equal(outs['sort'], outs['radix']))}


def _jax_transpose(dy, x_shape, w, strides, pads):
  """The strided input gradient as it was before `_input_grad_phases`."""
  conv = lambda x: cpu_ops._conv(x, w, strides, pads)
  return jax.vjp(conv, jnp.zeros(x_shape, dy.dtype))[1](dy)[0]


def apgd_ce(reps: int) -> dict:
  apply_fn, variables, x, y = _model('preact_resnet18:0.25', 64)
  phases, compiled, compile_s = cpu_ops._input_grad_phases, {}, {}
  for name, unroll, impl in (('rolled_jax_transpose', 1, _jax_transpose),
                             ('rolled', 1, phases), ('unrolled', 20, phases)):
    def run(p, x, y, unroll=unroll):
      one = lambda xi, yi, i: apgd.apgd(runner.bind(apply_fn, p), xi[None], yi[None],
                                        jax.random.fold_in(jax.random.key(0), i),
                                        eps=8 / 255, steps=20, unroll=unroll)[0]
      return jax.vmap(one)(x, y, jnp.arange(x.shape[0]))
    t = time.perf_counter()
    try:
      cpu_ops._input_grad_phases = impl   # read when the model's VJP is traced
      compiled[name] = jax.jit(run, compiler_options=models.compiler_options()).lower(
          variables, x, y).compile()
    finally:
      cpu_ops._input_grad_phases = phases
    compile_s[name] = time.perf_counter() - t
  outs = {name: c(variables, x, y) for name, c in compiled.items()}
  max_diff = {name: float(jnp.max(jnp.abs(o - outs['rolled']))) for name, o in outs.items()}
  return {'s': alternate({name: (lambda c=c: c(variables, x, y))
                          for name, c in compiled.items()}, reps), 'compile_s': compile_s,
          'max_abs_x_adv_diff_vs_rolled': max_diff}


PARTS = {'strided_dx': strided_dx, 'kth': kth, 'apgd_l1': apgd_l1, 'apgd_ce': apgd_ce}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--parts', default=','.join(PARTS))
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--out', default=None, help='JSON file for the results')
  args = p.parse_args(argv)
  result = {'command': ' '.join([sys.executable] + (sys.argv if argv is None else argv)),
            'uptime_before': bench.uptime(), 'conv_engine': cpu_ops.conv_engine()}
  for part in args.parts.split(','):
    result[part] = PARTS[part](args.reps)
    print(part, json.dumps(result[part]), flush=True)
  result['uptime_after'] = bench.uptime()
  print('load:', result['uptime_before'], '->', result['uptime_after'])
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + '\n')


if __name__ == '__main__':
  main()
