r"""Builds results.json and results.md from the runs of run.sh.

  python experiments/core_cifar10_cpu/collect.py RUNS_DIR
"""
import json
import pathlib
import sys

ROWS = [('generalist', 'natural', 'Generalist: natural expert'),
        ('generalist', 'robust', 'Generalist: robust expert'),
        ('generalist', 'global', 'Generalist: global learner'), ('pgd_at', 'robust', 'PGD-AT'),
        ('standard', 'natural', 'Standard training')]


def main(runs: pathlib.Path) -> None:
  out = {
      'scale': 'BN SmallCNN width 0.5; 10,000 CIFAR-10 training images (+1,000 held out '
               'for validation); 10 epochs, batch 128, seed 0; reference lr values '
               'rescaled to 10 epochs; test: a fixed random 2,000 of the 10,000 test '
               'images, l-inf PGD-20 eps 8/255 step 2/255', 'rows': []
  }
  for run, learner, label in ROWS:
    for which in ('last', 'best'):
      table = json.loads((runs / run / 'eval' / f'test_{which}.json').read_text())
      m = table['learners'][learner]
      out['rows'].append({
          'row': label, 'run': run, 'learner': learner, 'checkpoint': which, 'step': table['step'],
          'clean_acc': m['clean_acc'], 'pgd20_acc': m.get('robust_acc', m.get('pgd_acc')),
          'n_test': table['n_test']
      })
  times = runs / 'times.jsonl'
  out['times'] = [json.loads(l) for l in times.read_text().splitlines()] if times.exists() else []
  here = pathlib.Path(__file__).parent
  (here / 'results.json').write_text(json.dumps(out, indent=2))
  lines = ['| model | checkpoint (step) | clean % | PGD-20 % |', '|---|---|---|---|']
  for r in out['rows']:
    lines.append(f"| {r['row']} | {r['checkpoint']} ({r['step']}) | "
                 f"{100 * r['clean_acc']:.2f} | {100 * r['pgd20_acc']:.2f} |")
  (here / 'table.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  main(pathlib.Path(sys.argv[1]))
