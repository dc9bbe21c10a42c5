r"""results.json and results.md from the runs of run.sh (finished rows only).

  python experiments/tradeoff_cifar10_cpu/collect.py RUNS_DIR
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import eval_tables  # pylint: disable=wrong-import-position

ROWS = [('Generalist (a): global learner', 'generalist', 'global'), ('PGD-AT', 'pgd_at', 'robust'),
        ('TRADES (beta 6)', 'trades', 'robust'), ('MART (beta 6)', 'mart', 'robust'),
        ('Standard training', 'standard', 'natural')]
COLUMNS = [('clean_acc', 'clean %'), ('pgd20_acc', 'l-inf PGD-20 %'),
           ('aa_linf_acc', 'l-inf APGD-CE+T %')]
STEPS_PER_EPOCH = 5000 // 128


def scale(steps: int) -> str:
  """The protocol of run.sh at `steps` training steps (read back from the runs)."""
  epochs = steps // STEPS_PER_EPOCH
  return ('BN SmallCNN width 0.5; 5,000 CIFAR-10 training images (+500 held out for '
          f'validation); {epochs} epochs ({steps} steps), batch 128, seed 0; every training '
          'attack 5 steps (l-inf eps 8/255, step 4/255; TRADES/MART step 0.014); optimizers '
          f'as configs/*_cifar10.py with epoch knots rescaled to {epochs}, the run-relative '
          'timescale (EMA horizon 2.13% of the run, sync on its 120 virtual epochs); last '
          'checkpoint. Evaluation (`python -m generalist_jax.evaluate`) on the same fixed '
          'random 500 test images for every row: l-inf PGD-20 (eps 8/255, step 2.5 eps / 20, '
          '1 restart) and APGD-CE + APGD-T (`--attacks=fast`, 50 iterations, 3 targets: a '
          'reduced AutoAttack-fast budget). The first version of this table (3 epochs, 117 '
          'steps, before the relative timescale): results_3epochs.md.')


def main(runs: pathlib.Path) -> None:
  out = {'rows': [], 'times': eval_tables.times(runs)}
  for label, run, learner in ROWS:
    row = {'row': label, 'run': run, 'learner': learner}
    pgd = eval_tables.read_json(runs / run / 'eval' / 'pgd20_linf.json')
    if pgd is not None:
      row.update(step=pgd['step'], pgd20_acc=pgd['worst_case']['linf'], clean_acc=pgd['clean_acc'],
                 n_ex=pgd['n_ex'])
    aa = eval_tables.read_json(runs / run / 'eval' / 'aa_fast_linf.json')
    if aa is not None:
      row.update(aa_clean_acc=aa['clean_acc'], aa_linf_acc=aa['worst_case']['linf'],
                 n_ex_aa=aa['n_ex'])
    out['rows'].append(row)
  steps = {row['step'] for row in out['rows'] if 'step' in row}
  if len(steps) > 1:
    sys.exit(f'rows of different lengths {sorted(steps)}: one protocol per table.')
  out['scale'] = scale(steps.pop()) if steps else 'no finished rows'
  intro = ('# Natural vs robust trade-off, CPU scale, real CIFAR-10\n\n'
           f'Scale (every row): {out["scale"]}\n\nA "-" means the row had not finished.')
  print(eval_tables.write_results(pathlib.Path(__file__).parent, out, COLUMNS, intro))


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  main(pathlib.Path(sys.argv[1]))
