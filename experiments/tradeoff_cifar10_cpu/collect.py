r"""results.json and results.md from the runs of run.sh (finished rows only).

  python experiments/tradeoff_cifar10_cpu/collect.py RUNS_DIR
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import eval_tables  # pylint: disable=wrong-import-position

ROWS = [('Generalist (a): global learner', 'generalist', 'global'),
        ('PGD-AT', 'pgd_at', 'robust'),
        ('TRADES (beta 6)', 'trades', 'robust'),
        ('MART (beta 6)', 'mart', 'robust'),
        ('Standard training', 'standard', 'natural')]
COLUMNS = [('clean_acc', 'clean %'), ('pgd20_acc', 'l-inf PGD-20 %'),
           ('aa_linf_acc', 'l-inf APGD-CE+T %'), ('ema_pgd20_acc', "its EMA's PGD-20 %")]
SCALE = ('BN SmallCNN width 0.5; 5,000 CIFAR-10 training images (+500 held out for '
         'validation); 3 epochs (117 steps), batch 128, seed 0; every training attack 5 '
         'steps (l-inf PGD-5 at 4/255, TRADES/MART step 0.014); optimizers as '
         'configs/*_cifar10.py with epoch knots rescaled to 3; last checkpoint. '
         'PGD-20 (eps 8/255, step 2/255) on a fixed random 1,000 test images (training '
         'final test); clean and APGD-CE + APGD-T (`--attacks=fast`, 50 iterations, 3 '
         'targets; a reduced AutoAttack-fast budget) on a fixed random 500 of them.')


def main(runs: pathlib.Path) -> None:
  out = {'scale': SCALE, 'rows': [], 'times': eval_tables.times(runs)}
  for label, run, learner in ROWS:
    row = {'row': label, 'run': run, 'learner': learner}
    test = eval_tables.read_json(runs / run / 'eval' / 'test_last.json')
    if test is not None:
      row.update(step=test['step'], pgd20_acc=test['learners'][learner]['pgd_acc'],
                 pgd20_clean_acc=test['learners'][learner]['clean_acc'],
                 n_test_pgd20=test['n_test'])
      if learner != 'global':
        row['ema_pgd20_acc'] = test['learners']['global']['pgd_acc']
    aa = eval_tables.read_json(runs / run / 'eval' / 'aa_fast_linf.json')
    if aa is not None:
      row.update(clean_acc=aa['clean_acc'], aa_linf_acc=aa['worst_case']['linf'],
                 n_ex_aa=aa['n_ex'])
    out['rows'].append(row)
  intro = ('# Natural vs robust trade-off, CPU scale, real CIFAR-10\n\n'
           f'Scale (every row): {SCALE}\n\nA "-" means the row had not finished.')
  print(eval_tables.write_results(pathlib.Path(__file__).parent, out, COLUMNS, intro))


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  main(pathlib.Path(sys.argv[1]))
