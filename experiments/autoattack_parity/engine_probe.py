r"""The evaluation engine before and after stages, timed in one process on whatever
cores it may use (run it on one: `taskset -c 0`), 'standard' l-inf AutoAttack on a
random-init SmallCNN (width 0.5 with BatchNorm: the model of results.md) and random
CIFAR-shaped points, or on a trained run (--workdir) and CIFAR-10 test points.

  taskset -c 0 python experiments/autoattack_parity/engine_probe.py \
      > experiments/autoattack_parity/engine_probe.txt
  taskset -c 0 python experiments/autoattack_parity/engine_probe.py --parts=columns \
      --workdir=RUN --n=128 --batch_size=128 --eps=0.0313725 --steps=100 \
      --n_queries=5000 >> experiments/autoattack_parity/engine_probe.txt

  compile   APGD-CE and Square at one batch size: the old program (the whole attack
            under `jax.vmap` on batches of one) vs the new stage (batched, each
            example's random draws from its own key); lower + compile, alternating
  columns   each attack of the plan as the old loop ran it (the whole attack on the
            still-robust points, padded to a multiple of 8) and as `run_evaluation`
            runs it (stages on the unbroken points, power-of-two buckets): the first
            run (compiles included) and a second (compiled), alternating old and new;
            whether the two give the same flags; how many examples each stage ran on

Random model: the labels are its own predictions (clean accuracy 100%) and eps
(0.5/255) leaves about half the points to APGD-T. Budgets are reduced by default
(--steps 50, --n_queries 2000; 9 targets).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from generalist_jax import data as data_lib  # noqa: E402
from generalist_jax import models  # noqa: E402
from generalist_jax import parallel  # noqa: E402
from generalist_jax.attacks import autoattack as aa  # noqa: E402
from generalist_jax.evaluation import jitted  # noqa: E402
from generalist_jax.evaluation import runner  # noqa: E402
from generalist_jax.models import cpu_ops  # noqa: E402
from tests.test_evaluation_engine import old_attack_batch_fn, old_padded  # noqa: E402


def load() -> str:
  return 'load average: ' + ' '.join(open('/proc/loadavg').read().split()[:3])


def timed(fn):
  t = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t


def setup(n: int, width: float, batch_norm: bool = True):
  model = models.create_model({'name': 'small_cnn', 'width': width, 'batch_norm': batch_norm}, 10,
                              (0.5,), (0.25,))
  variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 3))
  apply = jitted.model_apply_fn(model)
  images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  labels = np.asarray(np.argmax(apply(variables, data_lib.to_float(images)), -1), np.int32)
  return apply, variables, images, labels


def trained(workdir: str, learner: str, n: int):
  """A run's learner and n fixed random test points (as the evaluation entry point)."""
  from generalist_jax.method import step as step_lib
  from generalist_jax.run import restore
  run = restore.restore_run(workdir, 'last', full_test=True)
  images, labels, _ = runner.sample_test_points(*run.dataset.test, n)
  return (jitted.model_apply_fn(run.setup.model), step_lib.learners(run.state,
                                                                    run.setup)[learner], images,
          labels.astype(np.int32))


def compile_times(apply, variables, images, labels, plan, reps: int):
  """Seconds to lower + compile the old and the new program of APGD-CE and Square."""
  x, y = data_lib.to_float(images), labels
  ids = np.arange(len(y), dtype=np.int32)
  mesh = parallel.make_mesh()
  for spec in [s for s in plan if s.name in ('apgd-ce', 'square')]:
    key = runner.column_key(0, spec)

    def new():  # a fresh jitted function each time: no cached trace
      jitted._COMPILED.clear()
      fn = jitted.stage_fn(apply, spec, mesh)
      carry = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                           jax.eval_shape(fn.start, variables, x, y, key, ids))
      return fn.run.lower(variables, x, y, key, ids, carry, np.int32(0)).compile()

    programs = {
        'old': lambda: old_attack_batch_fn(apply, spec).lower(variables, x, y, key, ids).compile(),
        'new': new
    }
    times = {name: [] for name in programs}
    for _ in range(reps):
      for name, build in programs.items():
        times[name].append(timed(build)[1])
    old, new = np.median(times['old']), np.median(times['new'])
    print(
        f'compile {spec.column:14s} batch {len(y)}: old {old:5.1f} s, new {new:5.1f} s '
        f'({old / new:.1f}x; medians of {reps}) | {load()}', flush=True)


def old_column(apply, variables, images, labels, state, spec, batch_size, seed, compiled):
  """The old loop for one column (its attack on the still-robust points)."""
  plan_norm = [s for s in state['plan'] if s.norm == spec.norm]
  earlier = [state[s.column] for s in plan_norm[:plan_norm.index(spec)]]
  todo = aa.still_robust(state['clean'] == 1, earlier)
  col = np.full(len(labels), aa.SKIPPED, np.int8)
  run = compiled.setdefault(spec, old_attack_batch_fn(apply, spec))
  for chunk in runner._chunks(np.flatnonzero(todo), batch_size):
    idx = old_padded(chunk, batch_size)
    out = jax.device_get(
        run(variables, data_lib.to_float(images[idx]), labels[idx], runner.column_key(seed, spec),
            idx.astype(np.int32)))
    col[chunk] = out['correct'][:len(chunk)]
  return col


def new_column(apply, variables, images, labels, state, spec, batch_size, seed, active):
  """run_evaluation for one column (earlier columns and the clean pass already done);
  appends to `active` how many examples each stage ran on."""
  plan = state['plan'][:state['plan'].index(spec) + 1]
  flags = {k: np.copy(v) for k, v in state.items() if k != 'plan'}
  flags[spec.column] = np.full(len(labels), aa.PENDING, np.int8)
  padded = runner._padded
  runner._padded = lambda idx, sizes: active.append(len(idx)) or padded(idx, sizes)
  try:
    out = runner.run_evaluation(apply, variables, images, labels, plan, batch_size=batch_size,
                                seed=seed, state=flags, progress=False)
  finally:
    runner._padded = padded
  return out[spec.column]


def columns(apply, variables, images, labels, plan, batch_size: int, seed: int = 0):
  state = runner.run_evaluation(apply, variables, images, labels, [], batch_size=batch_size,
                                seed=seed, progress=False)
  state['plan'] = plan
  compiled = {}
  totals = {'old': [0.0, 0.0], 'new': [0.0, 0.0]}
  for spec in plan:
    runs = {
        'old': lambda: old_column(apply, variables, images, labels, state, spec, batch_size, seed,
                                  compiled),
        'new': lambda: new_column(apply, variables, images, labels, state, spec, batch_size, seed,
                                  active)
    }
    active = []
    times, flags = {name: [] for name in runs}, {}
    for _ in range(2):
      for name, run in runs.items():
        flags[name], seconds = timed(run)
        times[name].append(seconds)
    for name in runs:
      totals[name][0] += times[name][0]
      totals[name][1] += times[name][1]
    same = np.array_equal(flags['old'], flags['new'])
    attacked = int(np.sum(flags['new'] != aa.SKIPPED))
    fooled = int(np.sum(flags['new'] == aa.FOOLED))
    print(
        f'column {spec.column:14s} {attacked:3d} attacked, {fooled:3d} fooled | first run '
        f'(compiles included): old {times["old"][0]:6.1f} s, new {times["new"][0]:6.1f} s | '
        f'compiled: old {times["old"][1]:6.1f} s, new {times["new"][1]:6.1f} s | '
        f'same flags: {same} | {load()}', flush=True)
    print(
        f'  new: examples per stage {active[:len(active) // 2]} (buckets '
        f'{runner.bucket_sizes(batch_size)})', flush=True)
    state[spec.column] = flags['new']
  print(
      f'total: first run old {totals["old"][0]:.1f} s, new {totals["new"][0]:.1f} s '
      f'({totals["old"][0] / totals["new"][0]:.2f}x); compiled old {totals["old"][1]:.1f} s, '
      f'new {totals["new"][1]:.1f} s ({totals["old"][1] / totals["new"][1]:.2f}x)', flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--n', type=int, default=64)
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--width', type=float, default=0.5)
  parser.add_argument('--batch_norm', type=int, default=1)
  parser.add_argument('--eps', type=float, default=0.5 / 255)
  parser.add_argument('--steps', type=int, default=50)
  parser.add_argument('--n_queries', type=int, default=2000)
  parser.add_argument('--compile_reps', type=int, default=2)
  parser.add_argument('--parts', default='compile,columns')
  parser.add_argument(
      '--workdir', default=None, help='a trained run instead (its last '
      'checkpoint, CIFAR-10 test points; eps as given)')
  parser.add_argument('--learner', default='global')
  args = parser.parse_args(argv)
  model = ('a trained run' if args.workdir else f'SmallCNN width {args.width}, BatchNorm '
           f'{bool(args.batch_norm)} (random init)')
  print(
      f'{jax.devices()[0].device_kind}, {jax.device_count()} device(s), jax {jax.__version__}, '
      f'XLA:CPU convolutions: {cpu_ops.conv_engine()}; {model}, {args.n} points 32x32x3, '
      f'batch {args.batch_size}; linf eps {args.eps:.4f}; steps {args.steps}, 9 targets, '
      f'{args.n_queries} queries (Square stages of 500) | {load()}', flush=True)
  if args.workdir:
    print(
        f'trained: {args.workdir} learner {args.learner} (last checkpoint), {args.n} '
        'CIFAR-10 test points with their labels', flush=True)
    apply, variables, images, labels = trained(args.workdir, args.learner, args.n)
  else:
    apply, variables, images, labels = setup(args.n, args.width, bool(args.batch_norm))
  plan = runner.make_plan(['linf'], [args.eps], 'standard',
                          {'steps': args.steps, 'n_queries': args.n_queries})
  if 'compile' in args.parts:
    compile_times(apply, variables, images, labels, plan, args.compile_reps)
  if 'columns' in args.parts:
    columns(apply, variables, images, labels, plan, args.batch_size)


if __name__ == '__main__':
  main()
