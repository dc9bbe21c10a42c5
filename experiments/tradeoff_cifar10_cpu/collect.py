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
           ('aa_linf_acc', 'l-inf APGD-CE+T %')]
SCALE = ('BN SmallCNN width 0.5; 5,000 CIFAR-10 training images (+500 held out for '
         'validation); 3 epochs (117 steps), batch 128, seed 0; every training attack 5 '
         'steps (l-inf eps 8/255, step 4/255; TRADES/MART step 0.014); optimizers as '
         'configs/*_cifar10.py with epoch knots rescaled to 3; last checkpoint. '
         'Evaluation (`python -m generalist_jax.evaluate`) on the same fixed random 500 '
         'test images for every row: l-inf PGD-20 (eps 8/255, step 2.5 eps / 20, 1 '
         'restart) and APGD-CE + APGD-T (`--attacks=fast`, 50 iterations, 3 targets: a '
         'reduced AutoAttack-fast budget).')


def main(runs: pathlib.Path) -> None:
  out = {'scale': SCALE, 'rows': [], 'times': eval_tables.times(runs)}
  for label, run, learner in ROWS:
    row = {'row': label, 'run': run, 'learner': learner}
    pgd = eval_tables.read_json(runs / run / 'eval' / 'pgd20_linf.json')
    if pgd is not None:
      row.update(step=pgd['step'], pgd20_acc=pgd['worst_case']['linf'],
                 clean_acc=pgd['clean_acc'], n_ex=pgd['n_ex'])
    aa = eval_tables.read_json(runs / run / 'eval' / 'aa_fast_linf.json')
    if aa is not None:
      row.update(aa_clean_acc=aa['clean_acc'], aa_linf_acc=aa['worst_case']['linf'],
                 n_ex_aa=aa['n_ex'])
    out['rows'].append(row)
  intro = ('# Natural vs robust trade-off, CPU scale, real CIFAR-10\n\n'
           f'Scale (every row): {SCALE}\n\nA "-" means the row had not finished.')
  print(eval_tables.write_results(pathlib.Path(__file__).parent, out, COLUMNS, intro))


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  main(pathlib.Path(sys.argv[1]))
