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
(The work is experiments/study_tables.py, shared with the reference-clock study.)
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import study_tables  # noqa: E402

STUDY = study_tables.Study(
    prefix='fidelity',
    total_steps=1560,  # 78 steps x 20 epochs
    learners={
        'generalist': ('global',), 'generalist_beta1': ('global',),
        'generalist_nosync': ('global',), 'generalist_drift10': ('global',),
        'pgd_at': ('robust', 'robust_ema'), 'standard': ('natural',)
    },
    attacks={'pgd20': ('pgd', {'steps': 20}), 'fast': ('fast', {})},
    command='experiments/fidelity_cifar10_cpu/evaluate.py')


def row_of(run: pathlib.Path) -> str:
  return run.name.rsplit('_s', 1)[0]


def result_name(which: str, learner: str, attack: str, n_ex: int) -> str:
  """The file stem of one evaluation under <run>/eval (collect.py reads it back)."""
  return study_tables.result_name(STUDY, which, learner, attack, n_ex)


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
  names = args.runs or sorted(p.name
                              for p in runs_dir.iterdir()
                              if p.is_dir() and '_s' in p.name and row_of(p) in STUDY.learners)
  for name in names:
    run = runs_dir / name
    if not study_tables.finished(STUDY, run):
      print(f'{name}: not finished yet, skipped')
      continue
    study_tables.evaluate_run_learners(STUDY, run, row_of(run), which=args.which,
                                       attacks=args.attacks,
                                       n_ex={label: args.n_ex for label in STUDY.attacks},
                                       learners=args.learners)


if __name__ == '__main__':
  main(sys.argv)
