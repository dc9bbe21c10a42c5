r"""A/B of one JAX train step against variants of itself, in one process.

  python experiments/benchmarks/ab.py --model=small_cnn:1 --batch=128 --kind=pgd \
      --variants=base,base+xnnpack,base+rolled

Each variant is compiled separately and the repetitions alternate between the
variants (base, v1, v2, base, v1, v2, ...), so load on a shared machine falls on
all of them alike; medians after one warm-up. Variants:

  base        the code as it is
  +FLAG       XLA debug option FLAG=true as a compile option, e.g. `+xnnpack`
              (xla_cpu_use_xnnpack), `+onednn` (xla_cpu_use_onednn),
              `+fastmath` (xla_cpu_enable_fast_math)
  +NAME=VALUE any XLA debug option as a compile option, e.g.
              `+xla_cpu_prefer_vector_width=512`
  +rolled     the attack as a rolled fori_loop (unroll=1) instead of 'auto'
  +eigen, +ynnpack
              XLA:CPU's convolution engine for cpu_ops (GENERALIST_JAX_CPU_CONV,
              read when the variant is traced): formulations and compile options
  +nobn       model.batch_norm=False (SmallCNN, MLP): the step without BatchNorm
  +flaxbn     flax's nn.BatchNorm (autodiff VJP) instead of layers.ClosedFormBatchNorm
              where model.ops is 'cpu'
  +xlaops     model.ops='xla': lax's convolution, max-pool and flax's BatchNorm
              instead of the CPU formulations of generalist_jax/models/cpu_ops.py
              ('auto' = 'cpu' here)
  KIND        another step kind of bench.py (pgd, generalist2, ...), as the code is:
              `--variants=pgd,generalist2,generalist4` gives the Generalist / PGD-AT
              step ratios with interleaved repetitions
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import statistics
import sys
from unittest import mock

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402

import flax.linen as nn  # noqa: E402

from generalist_jax import host_memory
from generalist_jax.method import step as step_lib
from generalist_jax.models import cpu_ops
from generalist_jax.models import layers

FLAGS = {
    'xnnpack': 'xla_cpu_use_xnnpack', 'onednn': 'xla_cpu_use_onednn',
    'fastmath': 'xla_cpu_enable_fast_math'
}

_ENGINE_ENV_AT_START = os.environ.get(cpu_ops.ENGINE_ENV, '')


def _option(extra: str) -> tuple:
  """'xla_cpu_prefer_vector_width=512' -> (name, 512); true/false -> bool."""
  name, value = extra.split('=', 1)
  if value.lower() in ('true', 'false'):
    return name, value.lower() == 'true'
  return name, int(value) if value.lstrip('-').isdigit() else value


def compiled_step(variant: str, args):
  base, *extras = variant.split('+')
  kind = base if base in bench.STEP_KINDS else args.kind
  config = bench.step_config(kind, bench.parse_model(args.model)[1], args.batch, args.k)
  if 'rolled' in extras:
    for name in config.experts.keys():
      attack = config.experts[name].attack
      del attack['unroll']  # the field is typed str ('auto'); 1 is an int
      attack.unroll = 1
  engine = ([e for e in extras if e in cpu_ops.ENGINES] or [_ENGINE_ENV_AT_START])[-1]
  os.environ.pop(cpu_ops.ENGINE_ENV, None)
  if engine:
    os.environ[cpu_ops.ENGINE_ENV] = engine
  cpu_ops.conv_engine.cache_clear()  # each variant traces with its own engine
  if 'xlaops' in extras:
    config.model.ops = 'xla'
  if 'nobn' in extras:  # an upper bound on what BatchNorm costs (SmallCNN's switch)
    config.model.batch_norm = False
  options = {
      **(cpu_ops.compiler_options() or {}), **{FLAGS[e]: True for e in extras if e in FLAGS},
      **dict(_option(e) for e in extras if '=' in e)
  } or None
  flax_bn = (mock.patch.object(layers, 'ClosedFormBatchNorm', nn.BatchNorm)
             if 'flaxbn' in extras else contextlib.nullcontext())
  with flax_bn:  # the model's modules are built when the step is traced
    step = bench.JaxStep(config, bench._batch(args.batch))
    lowered = step_lib.jit_train_step(step.setup).lower(step.state, step.batch)
  step.compile_s = bench._timed(lambda: setattr(step, 'compiled', lowered.compile(options)))
  return step


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--model', default='small_cnn:1')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--kind', default='pgd')
  p.add_argument('--k', type=int, default=10)
  p.add_argument('--variants', default='base,base+xnnpack')
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--out', default=None, help='JSON file for the results')
  args = p.parse_args(argv)
  load = bench.uptime()
  variants = args.variants.split(',')
  steps = {v: compiled_step(v, args) for v in variants}
  times = {v: [] for v in variants}
  for rep in range(args.reps + 1):
    for v in variants:
      t = bench._timed(steps[v])
      if rep:
        times[v].append(t)
  first = variants[0]
  result = {
      'command': ' '.join([sys.executable] + (sys.argv if argv is None else argv)),
      'uptime_before': load, 'uptime_after': bench.uptime(), 'settings': vars(args),
      'cpu_resident_buffers': host_memory.buffers_resident(), 'variants': {}
  }
  for v in variants:
    med = statistics.median(times[v])
    paired = statistics.median(a / b for a, b in zip(times[first], times[v]))
    result['variants'][v] = {
        'median_s': med, 'reps': times[v], 'compile_s': steps[v].compile_s,
        'speedup_vs_first': statistics.median(times[first]) / med, 'paired_speedup_vs_first': paired
    }
    print(
        f'{args.model} b={args.batch} {args.kind:<12} {v:<22} {med:8.3f} s  '
        f'x{statistics.median(times[first]) / med:5.2f} vs {first} (paired x{paired:5.2f})  '
        f'compile {steps[v].compile_s:6.1f} s', flush=True)
  print(result['uptime_before'], '->', result['uptime_after'])
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2))
  return result


if __name__ == '__main__':
  host_memory.keep_cpu_buffers_resident()  # before the jits are made
  main()
