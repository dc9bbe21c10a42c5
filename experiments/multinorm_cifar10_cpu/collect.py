r"""results.json and results.md from the runs of run.sh (finished rows only).

  python experiments/multinorm_cifar10_cpu/collect.py RUNS_DIR
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import eval_tables  # pylint: disable=wrong-import-position

ROWS = [('Generalist++ (b) l1+l2+linf: global', 'generalist_pp_multinorm', 'global'),
        ('Generalist++ (c) nat+l1+l2+linf: global', 'generalist_pp_full', 'global'),
        ('AVG', 'avg', 'robust'),
        ('MAX', 'max', 'robust'),
        ('MSD', 'msd', 'robust'),
        ('E-AT (l1, linf)', 'eat', 'robust')]
COLUMNS = [('clean_acc', 'clean %'), ('l1', 'l1 (12) %'), ('l2', 'l2 (0.5) %'),
           ('linf', 'l-inf (8/255) %'), ('union', 'union %')]
SCALE = ('BN SmallCNN width 0.5; 2,000 CIFAR-10 training images (+500 held out for '
         'validation); 3 epochs (45 steps), batch 128, seed 0; every training attack 3 '
         'steps (step size scaled to keep each config\'s path length); optimizers as '
         'configs/*_cifar10.py with epoch knots rescaled to 3; last checkpoint. '
         'Evaluation: APGD-CE then APGD-T (20 iterations, 3 targets, 1 restart) per norm '
         'at eps l1 12, l2 0.5, l-inf 8/255 on a fixed random 300 of a 500-image test '
         'subset; union = robust to all three.')


def main(runs: pathlib.Path) -> None:
  out = {'scale': SCALE, 'rows': [], 'times': eval_tables.times(runs)}
  for label, run, learner in ROWS:
    row = {'row': label, 'run': run, 'learner': learner}
    report = eval_tables.read_json(runs / run / 'eval' / 'apgd_union.json')
    if report is not None:
      row.update(step=report['step'], n_ex=report['n_ex'], clean_acc=report['clean_acc'],
                 **report['worst_case'])
    out['rows'].append(row)
  intro = ('# Multi-norm robustness, CPU scale, real CIFAR-10\n\n'
           f'Scale (every row): {SCALE}\n\nA "-" means the row had not finished.')
  print(eval_tables.write_results(pathlib.Path(__file__).parent, out, COLUMNS, intro))


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  main(pathlib.Path(sys.argv[1]))
