r"""FAB's projection onto {<w, z> = b} ∩ box: the sort-based code it replaced vs the
sort-free one (generalist_jax/attacks/hyperplane.py), timed in one process with alternating
repetitions (medians after a warm-up), jitted, on whatever cores the process may use.

  taskset -c 0 python experiments/autoattack_parity/fab_projection_probe.py \
      > experiments/autoattack_parity/fab_projection_probe.txt

  projection  `project_on_hyperplane`, 120 rows x 3072 (CIFAR-10 sized), each norm:
              uniform points, Gaussian w, b on either side at random distances
  iteration   one FAB-T iteration (`fab_run`: two projections, a forward-backward and
              a forward pass), SmallCNN (random init) on 120 images 32x32x3: the time
              of 11 iterations minus that of 1, over 10; then the smallest norms
              found by the two after 11 iterations (float rounding in the projections
              moves the iterates apart where FAB's mixing and misclassification
              tests amplify it: the points differ, their norms should not be biased)

The sort-based projection is the reference kept in tests/test_attacks_fab.py.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from generalist_jax import models  # noqa: E402
from generalist_jax.attacks import fab  # noqa: E402
from generalist_jax.attacks import hyperplane  # noqa: E402

NORMS = ('linf', 'l2', 'l1')


def sorted_projection():
  """tests/test_attacks_fab.py's `sorted_projection` (the code before)."""
  spec = importlib.util.spec_from_file_location('test_attacks_fab',
                                                ROOT / 'tests' / 'test_attacks_fab.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.sorted_projection


def load() -> str:
  return 'load average: ' + ' '.join(open('/proc/loadavg').read().split()[:3])


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


def projection(old, reps: int, rows: int = 120, dim: int = 3072):
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  point = jax.random.uniform(k1, (rows, dim))
  w = jax.random.normal(k2, (rows, dim))
  b = jnp.sum(w * point, -1) + 30.0 * jax.random.normal(k3, (rows,))
  for norm in NORMS:
    new_fn = jax.jit(lambda p, w, b, n=norm: hyperplane.project_on_hyperplane(p, w, b, n))
    old_fn = lambda p, w, b, n=norm: old(p, w, b, norm=n)
    diff = float(jnp.max(jnp.abs(new_fn(point, w, b) - old_fn(point, w, b))))
    ms = alternate({'sort': lambda: old_fn(point, w, b), 'sort-free': lambda: new_fn(point, w, b)},
                   reps)
    print(
        f'projection {norm:4s} {rows}x{dim}: sort {1e3 * ms["sort"]:7.2f} ms, sort-free '
        f'{1e3 * ms["sort-free"]:6.2f} ms ({ms["sort"] / ms["sort-free"]:.0f}x); '
        f'max |difference| {diff:.1e}', flush=True)


def iteration(old, reps: int, norm: str, n: int = 120):
  model = models.create_model({'name': 'small_cnn'}, 10, (0.5,) * 3, (0.25,) * 3)
  variables = models.init_variables(model, jax.random.key(0), (32, 32, 3))
  logits_fn = lambda v: models.apply_model(model, variables, v, train=False)[0]
  x = jax.random.uniform(jax.random.key(1), (n, 32, 32, 3))
  logits = logits_fn(x)
  y, target = jnp.argmax(logits, -1), jnp.argsort(logits, -1)[:, -2]
  eps = {'linf': 8 / 255, 'l2': 0.5, 'l1': 12.0}[norm]

  def run(project):

    def go(steps):
      hyperplane.project_on_hyperplane = project  # read at trace time, by fab_run
      return fab.fab_run(logits_fn, x, y, jax.random.key(2),
                         fab.targeted_boundary(logits_fn, y, target), eps=eps, norm=norm,
                         steps=steps)

    return jax.jit(go)

  new_project = hyperplane.project_on_hyperplane
  fns = {}
  for name, project in (('sort', old), ('sort-free', new_project)):
    compiled = run(project).lower(jnp.int32(1)).compile()
    fns[name + ' 1'] = lambda c=compiled: c(jnp.int32(1))
    fns[name + ' 11'] = lambda c=compiled: c(jnp.int32(11))
  hyperplane.project_on_hyperplane = new_project
  ms = {k: 1e3 * v for k, v in alternate(fns, reps).items()}
  per = {name: (ms[name + ' 11'] - ms[name + ' 1']) / 10 for name in ('sort', 'sort-free')}
  (_, best_old), (_, best_new) = fns['sort 11'](), fns['sort-free 11']()
  found = (best_old < 1e9) | (best_new < 1e9)
  same = jnp.abs(best_new - best_old) <= 1e-5 * jnp.abs(best_old)
  print(
      f'FAB-T iteration {norm:4s} SmallCNN x{n}: sort {per["sort"]:6.1f} ms, sort-free '
      f'{per["sort-free"]:6.1f} ms ({per["sort"] / per["sort-free"]:.2f}x); after 11: '
      f'{int(found.sum())} found, smallest norms equal (1e-5) for {int((same & found).sum())}, '
      f'mean {float(best_old[found].mean()):.4g} vs {float(best_new[found].mean()):.4g}, '
      f'sort-free smaller for {int((best_new < best_old).sum())}, larger for '
      f'{int((best_new > best_old).sum())}', flush=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--reps', type=int, default=15)
  p.add_argument('--iteration_reps', type=int, default=5)
  args = p.parse_args(argv)
  cores = sorted(os.sched_getaffinity(0))
  print(f'{load()}; cores {cores}; jax {jax.__version__}, {jax.default_backend()}', flush=True)
  old = sorted_projection()
  projection(old, args.reps)
  for norm in NORMS:
    iteration(old, args.iteration_reps, norm)
  print(load())


if __name__ == '__main__':
  main()
