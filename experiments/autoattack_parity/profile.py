r"""Where the time of a 'standard' AutoAttack goes: ours and the official code, attack by
attack, on a trained learner and the same test points, in one process on the same cores.

  taskset -c 0 python experiments/autoattack_parity/profile.py --workdir=RUN \
      --learner=global --n_ex=128 [--norm=linf --eps=8/255] [--torch_threads=1] \
      >> experiments/autoattack_parity/profile.txt

Ours runs the plan one column at a time on the examples every earlier attack missed
(`runner.run_evaluation` with the plan's first k attacks and the state so far), so each
attack's seconds are those of the whole suite's run; the clean pass is counted apart.
It runs twice: first with an empty persistent compile cache (cold: every compile
counted), then again in the same process (compiled programs reused: execution only).
The official run is `run_standard_evaluation` with its own per-attack 'total time' log
lines. Both report how many examples each attack ran on.
"""
import argparse
import logging
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))
# An empty persistent cache for the cold pass (before jax reads the variable).
os.environ['GENERALIST_JAX_CACHE_DIR'] = tempfile.mkdtemp(prefix='aa_profile_cache_')

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generalist_jax import config  # noqa: E402
from generalist_jax.attacks import autoattack as aa  # noqa: E402
from generalist_jax.data import pipeline  # noqa: E402
from generalist_jax.evaluation import compile_cache  # noqa: E402
from generalist_jax.evaluation import jitted  # noqa: E402
from generalist_jax.evaluation import parity  # noqa: E402
from generalist_jax.evaluation import runner  # noqa: E402
from generalist_jax.method import step as step_lib  # noqa: E402
from generalist_jax.models import torch_convert  # noqa: E402
from generalist_jax.run import restore  # noqa: E402


def load() -> str:
  return 'load ' + ' '.join(open('/proc/loadavg').read().split()[:3])


def ours_by_attack(apply, params, images, labels, plan, batch_size: int) -> tuple:
  """([(column, examples attacked, seconds)], the clean pass first; the final state)."""
  state = runner.new_state(len(labels), plan)
  rows = []
  for k in range(len(plan) + 1):
    todo = (int((state['clean'] == 1).sum()) if k == 0 else int(
        aa.still_robust(state['clean'] == 1, [state[s.column] for s in plan[:k - 1]]).sum()))
    started = time.perf_counter()
    # plan[:0] would be refused; the clean pass runs with the first column's flags
    # pending and stops after its batches.
    n_batches = -(-len(labels) // batch_size)
    runner.run_evaluation(apply, params, images, labels, plan[:max(k, 1)], state=state,
                          batch_size=batch_size, seed=0, progress=False,
                          stop_after_batches=n_batches if k == 0 else None)
    seconds = time.perf_counter() - started
    rows.append(
        ('clean' if k == 0 else plan[k - 1].column, len(labels) if k == 0 else todo, seconds))
  return rows, state


class _TimeLog(logging.Handler):
  """Collects the official code's 'robust accuracy after X: ... (total time T s)'."""

  def __init__(self):
    super().__init__(logging.DEBUG)
    self.lines = []

  def emit(self, record):
    self.lines.append((time.perf_counter(), record.getMessage()))


def official_by_attack(twin, x, y, norm: str, eps: float, batch_size: int) -> list:
  """[(message, seconds since the previous message)] and the robust flags."""
  adversary = parity._official(twin, norm, eps, ('apgd-ce', 'apgd-t', 'fab-t', 'square'), 0, None,
                               None, None)
  handler = _TimeLog()
  adversary.logger.addHandler(handler)
  adversary.logger.setLevel(logging.DEBUG)
  x_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  y_t = torch.from_numpy(y.astype(np.int64))
  started = time.perf_counter()
  x_adv, _ = adversary.run_standard_evaluation(x_t, y_t, batch_size=batch_size)
  total = time.perf_counter() - started
  adversary.logger.removeHandler(handler)
  rows, last = [], started
  for when, message in handler.lines:
    if 'robust accuracy' in message or 'initial accuracy' in message or 'clean' in message:
      rows.append((message, when - last))
      last = when
  with torch.no_grad():
    robust = (twin(x_adv).argmax(1) == y_t).numpy()
  return rows, total, robust


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--learner', default='global')
  p.add_argument('--checkpoint', default='last')
  p.add_argument('--n_ex', type=int, default=128)
  p.add_argument('--norm', default='linf')
  p.add_argument('--eps', default='8/255')
  p.add_argument('--batch_size', type=int, default=500)
  p.add_argument('--torch_threads', type=int, default=1)
  args = p.parse_args(argv)
  torch.set_num_threads(args.torch_threads)
  print(f"# {' '.join(sys.argv)}", flush=True)
  print(
      f'# torch {torch.__version__}, {args.torch_threads} thread(s); compile cache '
      f'{compile_cache.enable()} (empty at start); {load()}', flush=True)
  run = restore.restore_run(args.workdir, args.checkpoint, full_test=True)
  params = step_lib.learners(run.state, run.setup)[args.learner]
  info = run.dataset.info
  twin = torch_convert.torch_twin(run.config.model, info.num_classes, info.mean, info.std,
                                  info.image_shape, params)
  images, labels, _ = runner.sample_test_points(*run.dataset.test, args.n_ex)
  labels = labels.astype(np.int32)
  x = pipeline.to_float(images)
  eps = config.parse_eps(args.eps)
  apply = jitted.model_apply_fn(run.setup.model)
  plan = runner.make_plan([args.norm], [eps], 'standard')
  ours_total, state = {}, None
  for label in ('cold', 'compiled'):
    rows, state = ours_by_attack(apply, params, images, labels, plan, args.batch_size)
    for column, attacked, seconds in rows:
      print(f'ours {label:8s} {column:14s} {attacked:5d} examples {seconds:7.1f} s | {load()}',
            flush=True)
    ours_total[label] = sum(s for _, _, s in rows)
  ours_robust = aa.still_robust(state['clean'] == 1, [state[s.column] for s in plan])
  rows, official_total, official_robust = official_by_attack(twin, x, labels, args.norm, eps,
                                                             args.batch_size)
  for message, seconds in rows:
    print(f'official {seconds:7.1f} s  {message} | {load()}', flush=True)
  agree = float(np.mean(ours_robust == official_robust))
  print(
      f'total: ours cold {ours_total["cold"]:.1f} s, compiled {ours_total["compiled"]:.1f} s; '
      f'official {official_total:.1f} s; speed official/ours cold '
      f'{official_total / ours_total["cold"]:.2f}, compiled '
      f'{official_total / ours_total["compiled"]:.2f}; robust acc ours '
      f'{100 * ours_robust.mean():.1f}% official {100 * official_robust.mean():.1f}%, '
      f'agreement {100 * agree:.1f}% | {load()}', flush=True)


if __name__ == '__main__':
  main()
