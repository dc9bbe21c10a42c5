r"""Mechanism probe (issue 30): does a free phase of the reference's length move the
natural expert at all?

Takes a run's state just after a sync window (there the natural expert is a copy
of the robust-leaning global learner), trains the natural expert ALONE on clean
data for one reference free phase (4 epochs, 1,528 steps of 382) at the reference's
lr for epochs 76-79 (integer clock: interp(e, [0, 40, 80, 120], [0.01, 0.01, 0.001,
0.0001]) = 0.0019, 0.001675, 0.00145, 0.001225), with its own optimizer state and
the batches the run would have read next, and reports its validation clean / robust
accuracy every 100 steps (and at the source run's own free-phase length), then the
straight line from it to the run's robust EMA (11 points).

  python experiments/reference_clock_cifar10_cpu/mechanism_probe.py \
      --workdir=RUN --step=975 --out=experiments/reference_clock_cifar10_cpu/mechanism_probe

The state used (issue 30): the 1,560-step study's Generalist run (seed 0) paused just
after its first window (steps 962-974) with `--stop_at_step=975`; see README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from generalist_jax import data as data_lib  # noqa: E402
from generalist_jax import host_memory  # noqa: E402
from generalist_jax.evaluation import learners as learner_eval  # noqa: E402
from generalist_jax.evaluation import plots  # noqa: E402
from generalist_jax.method import schedules  # noqa: E402
from generalist_jax.method import step as step_lib  # noqa: E402
from generalist_jax.run import interpolate  # noqa: E402
from generalist_jax.run import restore  # noqa: E402

REFERENCE_STEPS_PER_EPOCH = 382  # the reference clock's epoch on 49,000 images
FREE_EPOCHS = (76, 77, 78, 79)
LR_KNOTS, LR_VALUES = (0, 40, 80, 120), (0.01, 0.01, 0.001, 0.0001)


def reference_free_phase_lr(i):
  """lr of the i-th step of the free phase (0-based): the reference's at its epoch."""
  epoch = FREE_EPOCHS[0] + i // REFERENCE_STEPS_PER_EPOCH
  return schedules.piecewise_linear(epoch, LR_KNOTS, LR_VALUES)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--step', type=int, required=True)
  parser.add_argument('--out', required=True, help='path stem for .json / .md / .png')
  parser.add_argument('--every', type=int, default=100)
  parser.add_argument('--source_free_phase', type=int, default=52)
  args = parser.parse_args()
  host_memory.keep_cpu_buffers_resident()

  config, dataset, setup, state, step = restore.restore_run(args.workdir, str(args.step))
  natural = setup.expert_names.index('natural')
  robust_ema = step_lib.learners(state, setup)['robust_ema']
  free_steps = len(FREE_EPOCHS) * REFERENCE_STEPS_PER_EPOCH
  # The natural expert's optimizer with the reference's free-phase lr; its state (the
  # momentum, the update count) is the run's own.
  opt_config = config.experts.natural.optimizer
  tx = step_lib.make_optimizer(opt_config, lambda count: reference_free_phase_lr(count - step))
  probe_setup = dataclasses.replace(
      setup, optimizers=tuple(tx if i == natural else o for i, o in enumerate(setup.optimizers)))

  @jax.jit
  def update(variables, opt_state, batch, key):
    return step_lib._expert_update(
        probe_setup,
        natural,
        variables,
        opt_state,  # pylint: disable=protected-access
        batch['image'],
        batch['label'],
        key)[:2]

  eval_fn = learner_eval.make_eval_fn(setup.model, config.eval.val_attack, setup.mesh,
                                      setup.compute_dtype)
  evaluate = lambda v: learner_eval.summarize(
      learner_eval.evaluate_flags(eval_fn, v, *dataset.val, config.eval.batch_size, config.seed + 1)
  )
  batches = data_lib.train_batches(dataset, config.batch_size, seed=config.seed, start_step=step,
                                   augment=config.data.augment, num_threads=config.data.num_threads,
                                   prefetch=config.data.prefetch)
  variables, opt_state = state.experts[natural], state.opt_states[natural]
  key = jax.random.PRNGKey(0)  # the natural task draws nothing; kept for the signature
  checkpoints_at = sorted(
      {0, args.source_free_phase, *range(args.every, free_steps, args.every), free_steps})
  rows, start = [], time.perf_counter()
  references = {
      n: evaluate(v)
      for n, v in step_lib.learners(state, setup).items()
      if n in ('robust_ema', 'natural_ema', 'global')
  }
  for i in range(free_steps + 1):
    if i in checkpoints_at:
      m = evaluate(variables)
      rows.append({
          'probe_step': i, 'lr': float(reference_free_phase_lr(min(i, free_steps - 1))),
          'clean_acc': m['clean_acc'], 'robust_acc': m['robust_acc']
      })
      print(
          f"step {i:5d}: natural expert {100 * m['clean_acc']:.1f} / "
          f"{100 * m['robust_acc']:.1f} (clean / robust %)", flush=True)
    if i < free_steps:
      variables, opt_state = update(variables, opt_state, next(batches), key)
  alphas = np.linspace(0.0, 1.0, 11)
  path = [evaluate(interpolate.mix(variables, robust_ema, float(a))) for a in alphas]
  result = {
      'source': {'workdir': str(args.workdir), 'step': step, 'seed': int(config.seed)},
      'protocol': {
          'free_steps': free_steps, 'lr_epochs': list(FREE_EPOCHS),
          'val_images': int(len(dataset.val[1])), 'val_attack': config.eval.val_attack.to_dict()
      }, 'references_at_start': references, 'natural_expert': rows,
      'interpolation_natural_end_to_robust_ema': {
          'alpha': alphas.tolist(), 'clean_acc': [p['clean_acc'] for p in path],
          'robust_acc': [p['robust_acc'] for p in path]
      }, 'seconds': time.perf_counter() - start, 'load_end': open('/proc/loadavg').read().split()
                                                             [:3]
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix('.json').write_text(json.dumps(result, indent=2))
  plots.safely(
      plots.interpolation_plot, {
          'a': 'natural (end of probe)', 'b': 'robust_ema', 'alpha': alphas.tolist(),
          'clean_acc': result['interpolation_natural_end_to_robust_ema']['clean_acc'], 'robust_acc':
              result['interpolation_natural_end_to_robust_ema']['robust_acc'], 'split': 'val',
          'n': int(len(dataset.val[1])), 'step': step, 'checkpoint': step, 'workdir': str(
              args.workdir), 'attack': config.eval.val_attack.to_dict()
      }, out.with_name(out.name + '_interpolation.png'))
  print(json.dumps({k: result[k] for k in ('seconds', 'load_end')}))


if __name__ == '__main__':
  main()
