r"""results.json and results.md from the runs of run.sh (finished rows only).

  python experiments/multinorm_cifar10_cpu/collect.py RUNS_DIR [STEM]

The scale line is read from the runs' config.json and evaluation reports, and
any row trained differently from the others is listed under the table.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import eval_tables  # pylint: disable=wrong-import-position

ROWS = [('Generalist++ (b) l1+l2+linf: global', 'generalist_pp_multinorm', 'global'),
        ('Generalist++ (c) nat+l1+l2+linf: global', 'generalist_pp_full', 'global'),
        ('AVG', 'avg', 'robust'), ('MAX', 'max', 'robust'), ('MSD', 'msd', 'robust'),
        ('E-AT (l1, linf)', 'eat', 'robust')]
COLUMNS = [('clean_acc', 'clean %'), ('l1', 'l1 (12) %'), ('l2', 'l2 (0.5) %'),
           ('linf', 'l-inf (8/255) %'), ('union', 'union %')]


def scale_line(facts: dict, reports: list) -> str:
  steps = sorted({r['step'] for r in reports})
  n_ex = sorted({r['n_ex'] for r in reports})
  return (f"BN {facts['model']}; {facts['train_size']:,} CIFAR-10 training images "
          f"(+{facts['val_size']:,} held out for validation); {facts['num_epochs']} epochs "
          f"({'/'.join(map(str, steps))} steps), batch {facts['batch_size']}, seed "
          f"{facts['seed']}; training attacks {'/'.join(map(str, facts['train_attack_steps']))}"
          " steps (step size scaled to keep each config's path length); optimizers as "
          'configs/*_cifar10.py with epoch knots rescaled; last checkpoint. Evaluation: '
          'APGD-CE then APGD-T per norm at eps l1 12, l2 0.5, l-inf 8/255 on a fixed random '
          f"{'/'.join(map(str, n_ex))} test images; union = robust to all three. Evaluation "
          f"command of the first row: `{reports[0]['command'].split(' -m ', 1)[-1]}`.")


def main(runs: pathlib.Path, stem: str) -> None:
  facts, differs = eval_tables.shared_facts(runs, [run for _, run, _ in ROWS])
  out = {'rows': [], 'times': eval_tables.times(runs), 'facts': facts, 'differs': differs}
  reports = []
  for label, run, learner in ROWS:
    row = {'row': label, 'run': run, 'learner': learner}
    report = eval_tables.read_json(runs / run / 'eval' / 'apgd_union.json')
    if report is not None:
      reports.append(report)
      row.update(step=report['step'], n_ex=report['n_ex'], clean_acc=report['clean_acc'],
                 **report['worst_case'])
    out['rows'].append(row)
  out['scale'] = scale_line(facts, reports) if reports else 'no finished row'
  intro = ('# Multi-norm robustness, CPU scale, real CIFAR-10\n\n'
           f"Scale (every row): {out['scale']}\n\nA \"-\" means the row had not finished.")
  if differs:
    intro += '\n\nRows trained differently: ' + '; '.join(differs)
  print(eval_tables.write_results(pathlib.Path(__file__).parent, out, COLUMNS, intro, stem))


if __name__ == '__main__':
  if len(sys.argv) not in (2, 3):
    sys.exit(__doc__)
  main(pathlib.Path(sys.argv[1]), sys.argv[2] if len(sys.argv) == 3 else 'results')
