r"""Test-set evaluation of the reference-clock study (issue 30), one process for all runs.

  python experiments/reference_clock_cifar10_cpu/evaluate.py RUNS_DIR [--seeds=0,1,2] \
      [--which=last,selected] [--attacks=pgd20,fast] [--learners=...] \
      [--n_test=10000] [--n_fast=2000] [--total_steps=45840] [--batch_size=500]

For every finished row of every seed (RUNS_DIR/s<seed>/<row> with
checkpoints/last/<total_steps>) and every learner it reports (`LEARNERS`), at
  last      the end of training (step 45,840);
  selected  the validated step with the highest validation clean + PGD-10 accuracy of
            that learner (`val/<learner>/sum_acc`, 1,000 held-out images; the 'presync/'
            and 'postsync/' records around the windows do not count), no clean floor;
  pgd20     clean and l-inf PGD-20 (eps 8/255, step 2/255, random start) on all n_test
            test images;
  fast      APGD-CE + APGD-T (AutoAttack's budgets: 100 iterations, 9 targets) on a
            fixed n_fast of them (`runner.sample_test_points`: a generator of its own,
            not the run seed, so the same images for every row and seed; each result carries
            their hash, `study_eval.test_ids_sha1`, and collect.py checks it).
Results: <run>/eval/refclock_<which>_<learner>_<attack>_n<n>.json, skipped when they exist
(start it again to resume; an evaluation cut off resumes from its .state.npz), each with
its wall time and /proc/loadavg (`study_eval`); the selection in
<run>/eval/refclock_selection.json. A fork's selected step before the fork is evaluated
in its source (the same state; `evaluated_in`). The work is experiments/study_tables.py.
"""
import argparse
import dataclasses
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import study_tables  # noqa: E402

# The rows of run.sh and what each reports: the Generalist run's every learner; the
# no-sync fork's robust EMA (PGD-AT's EMA), robust (PGD-AT) and natural (standard
# training) experts; the beta = 1 control's global learner.
LEARNERS = {
    'generalist': ('global', 'natural_ema', 'robust_ema', 'natural', 'robust'),
    'nosync': ('robust_ema', 'robust', 'natural'), 'beta1': ('global',)
}
STUDY = study_tables.Study(
    prefix='refclock', total_steps=45840, learners=LEARNERS, layout='nested',
    attacks={'pgd20': ('pgd', {'steps': 20, 'step_size': 2 / 255}), 'fast': ('fast', {})},
    batch_size=500, command='experiments/reference_clock_cifar10_cpu/evaluate.py', log_costs=True)
N_TEST, N_FAST = 10000, 2000


def n_ex(args) -> dict:
  return {'pgd20': args.n_test, 'fast': args.n_fast}


def study(args) -> study_tables.Study:
  return dataclasses.replace(STUDY, total_steps=args.total_steps,
                             batch_size=getattr(args, 'batch_size', STUDY.batch_size))


def csv(s: str) -> list:
  return [x for x in s.split(',') if x]


def parse(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument('runs_dir', type=pathlib.Path)
  parser.add_argument('--seeds', default='0,1,2', type=csv)
  parser.add_argument('--which', default='last,selected', type=csv)
  parser.add_argument('--attacks', default='pgd20,fast', type=csv)
  parser.add_argument('--learners', default='', type=csv)
  parser.add_argument('--n_test', type=int, default=N_TEST)
  parser.add_argument('--n_fast', type=int, default=N_FAST)
  parser.add_argument('--total_steps', type=int, default=STUDY.total_steps)
  parser.add_argument('--batch_size', type=int, default=STUDY.batch_size)
  return parser.parse_args(argv[1:])


def main(argv):
  args = parse(argv)
  s = study(args)
  for seed in args.seeds:
    for row in LEARNERS:
      run = args.runs_dir / f's{seed}' / row
      if not study_tables.finished(s, run):
        print(f's{seed}/{row}: not finished yet, skipped')
        continue
      study_tables.evaluate_run_learners(s, run, row, which=args.which, attacks=args.attacks,
                                         n_ex=n_ex(args), learners=args.learners)


if __name__ == '__main__':
  main(sys.argv)
