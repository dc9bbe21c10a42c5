r"""Test-set evaluation of the fidelity runs (issue 15), one process for all of them.

  python experiments/fidelity_cifar10_cpu/evaluate.py RUNS_DIR [RUN_NAME ...] \
      [--n_ex=2000] [--attacks=pgd20,fast] [--which=last,selected] [--learners=global,...]

For every run (default: every `<row>_s<seed>` folder in RUNS_DIR) and every learner
its row reports, at two checkpoints:
  last      the end of training;
  selected  the validated epoch with the highest validation clean + robust accuracy
            of that learner (`<learner>/sum_acc`, PGD-5; the reference's quantity,
            on validation instead of test), no clean floor;
the same fixed n_ex test images (a fixed random subset of the 10,000) get
  pgd20     l-inf PGD-20, eps 8/255, step 2.5 eps / 20, random start;
  fast      APGD-CE + APGD-T (AutoAttack's budgets: 100 iterations, 9 targets).
Results: <run>/eval/fidelity_<which>_<learner>_<attacks>_n<n_ex>.json (resumable), and the
selection in <run>/eval/fidelity_selection.json. Then `interpolate` for the paths.
"""
import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from generalist_jax.evaluation import learners as learner_eval  # noqa: E402
from generalist_jax.evaluation import plots  # noqa: E402
from generalist_jax.run import evaluate_run  # noqa: E402

TOTAL_STEPS = 1560     # 78 steps x 20 epochs
LEARNERS = {'generalist': ('global',), 'generalist_beta1': ('global',),
            'generalist_nosync': ('global',), 'generalist_drift10': ('global',),
            'pgd_at': ('robust', 'robust_ema'), 'standard': ('natural',)}
ATTACKS = {'pgd20': ('pgd', {'steps': 20}), 'fast': ('fast', {})}


def row_of(run: pathlib.Path) -> str:
  return run.name.rsplit('_s', 1)[0]


def result_name(which: str, learner: str, attack: str, n_ex: int) -> str:
  """The file stem of one evaluation under <run>/eval (collect.py reads it back)."""
  return f'fidelity_{which}_{learner}_{attack}_n{n_ex}'


def selected_step(run: pathlib.Path, learner: str) -> int:
  records = plots.read_metrics(run)
  step, _ = learner_eval.select_best(records, f'{learner}/sum_acc')
  return step


def evaluate(run: pathlib.Path, args) -> dict:
  selection = {}
  for learner in LEARNERS[row_of(run)]:
    selection[learner] = {'last': 'last', 'selected': str(selected_step(run, learner))}
    if args.learners and learner not in args.learners:
      continue
    for which, checkpoint in selection[learner].items():
      if which not in args.which:
        continue
      for label in args.attacks:
        attacks, overrides = ATTACKS[label]
        name = result_name(which, learner, label, args.n_ex)
        if (run / 'eval' / f'{name}.json').exists():
          continue
        started = time.time()
        evaluate_run.evaluate_run(run, checkpoint=checkpoint, learner=learner, attacks=attacks,
                                  norms=['linf'], eps=[8 / 255], n_ex=args.n_ex, batch_size=250,
                                  seed=0, name=name, overrides=overrides, progress=False,
                                  command='experiments/fidelity_cifar10_cpu/evaluate.py')
        print(f'{run.name} {name}: {time.time() - started:.0f} s', flush=True)
  (run / 'eval' / 'fidelity_selection.json').write_text(json.dumps(selection, indent=2))
  return selection


def parse(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument('runs_dir', type=pathlib.Path)
  parser.add_argument('runs', nargs='*')
  parser.add_argument('--n_ex', type=int, default=2000)
  parser.add_argument('--attacks', default='pgd20,fast', type=lambda s: s.split(','))
  parser.add_argument('--which', default='last,selected', type=lambda s: s.split(','))
  parser.add_argument('--learners', default='', type=lambda s: [x for x in s.split(',') if x])
  return parser.parse_args(argv[1:])


def main(argv):
  args = parse(argv)
  runs_dir = args.runs_dir
  names = args.runs or sorted(p.name for p in runs_dir.iterdir()
                             if p.is_dir() and '_s' in p.name and row_of(p) in LEARNERS)
  for name in names:
    run = runs_dir / name
    if not (run / 'checkpoints' / 'last' / str(TOTAL_STEPS)).exists():
      print(f'{name}: not finished yet, skipped')
      continue
    evaluate(run, args)


if __name__ == '__main__':
  main(sys.argv)
