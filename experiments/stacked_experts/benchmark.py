r"""Stacked experts (one vmap over an expert axis) vs the per-expert loop in the
same jit: seconds per training step, median over repetitions, on this machine.

  PYTHONPATH=. python experiments/stacked_experts/benchmark.py [--reps 5] [--steps 3] \
      [--cases 0,1,2,3] [--out FILE.json]

(or with the package installed: pip install -e .)

BN SmallCNN width 0.5 (the `:smoke` model), batch 128, CIFAR-shaped random
data, PGD-5 experts (l1 12, l2 0.5, l-inf 8/255, step 2.5 eps / 5). Loop and
stacked are timed alternately per repetition so load changes hit both; `uptime`
is printed before and after (the machine is shared).
"""
import argparse
import json
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from generalist_jax import config as config_lib
from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax.method import step as step_lib

CASES = {
    '2: natural + linf (Generalist)': ('natural', 'linf'),
    '2: l2 + linf': ('l2', 'linf'),
    '4: natural + l1 + l2 + linf (variant c)': ('natural', 'l1', 'l2', 'linf'),
    '4: linf x 4 (same task)': ('linf', 'linf', 'linf', 'linf'),
}


def case_config(kinds, stack: bool):
  c = config_lib.base_config()
  config_lib.smoke(c, num_epochs=3)
  attacks = config_lib.norm_attacks(steps=5)
  experts = ml_collections.ConfigDict()
  for i, kind in enumerate(kinds):
    if kind == 'natural':
      e = config_lib.generalist_experts().natural
    else:
      e = config_lib.robust_expert('pgd', attacks[kind])
    e.mix_values = (1 / len(kinds),) * len(c.meta.mix_epochs)
    experts[f'e{i}_{kind}'] = e
  c.experts = experts
  config_lib.scale_epochs(c, 3)
  c.meta.stack_experts = stack
  return c


def time_steps(step_fn, state, batch, steps):
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step_fn(state, batch)
  jax.block_until_ready((state, metrics))
  return state, (time.perf_counter() - start) / steps


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--steps', type=int, default=3)
  p.add_argument('--out', default=None)
  p.add_argument('--cases', default=None, help='comma-separated indices into CASES (default: all)')
  args = p.parse_args()
  info = data_lib.DatasetInfo(10, (32, 32, 3), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
  rng = np.random.default_rng(0)
  batch = {
      'image': jnp.asarray(rng.uniform(size=(128, 32, 32, 3)), jnp.float32),
      'label': jnp.asarray(rng.integers(0, 10, 128), jnp.int32)
  }
  uptime_before = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
  print('uptime before:', uptime_before, flush=True)
  results = {}
  names = list(CASES)
  if args.cases:
    names = [names[int(i)] for i in args.cases.split(',')]
  for name in names:
    kinds = CASES[name]
    runs = {}
    for mode in ('loop', 'stacked'):
      setup = step_lib.make_setup(case_config(kinds, mode == 'stacked'), info, steps_per_epoch=39)
      assert (setup.stack is not None) == (mode == 'stacked')
      step_fn = jax.jit(lambda s, b, setup=setup: step_lib.train_step(setup, s, b),
                        donate_argnums=0, compiler_options=models.compiler_options())
      start = time.perf_counter()
      state = step_lib.create_train_state(setup, info.image_shape, seed=0)
      state, _ = time_steps(step_fn, state, batch, 1)  # compile + first step
      runs[mode] = {
          'fn': step_fn, 'state': state, 'compile_s': time.perf_counter() - start, 'times': []
      }
    for _ in range(args.reps):
      for mode in ('loop', 'stacked'):
        r = runs[mode]
        r['state'], t = time_steps(r['fn'], r['state'], batch, args.steps)
        r['times'].append(t)
    results[name] = {
        mode: {
            'median_s_per_step': statistics.median(r['times']), 'times': r['times'],
            'compile_and_first_step_s': r['compile_s']
        } for mode, r in runs.items()
    }
    loop, stk = (results[name][m]['median_s_per_step'] for m in ('loop', 'stacked'))
    print(
        f'{name:42s} loop {loop:7.3f} s/step   stacked {stk:7.3f} s/step   '
        f'stacked/loop {stk / loop:5.2f}', flush=True)
  uptime_after = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
  print('uptime after:', uptime_after)
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(
          {
              'uptime_before': uptime_before, 'uptime_after': uptime_after, 'reps': args.reps,
              'steps_per_rep': args.steps, 'jax': jax.__version__, 'devices': str(
                  jax.devices()), 'results': results
          }, f, indent=2)


if __name__ == '__main__':
  main()
