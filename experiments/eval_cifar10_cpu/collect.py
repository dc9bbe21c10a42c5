r"""Copies the eval reports of run.sh here and builds table.md / results.json from them.

  python -m experiments.eval_cifar10_cpu.collect [RUNS_DIR]   (default runs/eval_cifar10_cpu)

Every number comes from the per-example flags in the eval JSONs; a column whose
evaluation did not finish is left out ('-'), never filled in. Where the
AutoAttack run was stopped before its last norm, the norms whose every attack
finished are summarised from its saved flags; the union needs all three norms.
"""
import json
import pathlib
import shutil
import sys

import numpy as np

from generalist_jax.attacks import autoattack as aa_lib
from generalist_jax.evaluation import runner

RUNS = {'generalist': 'Generalist (global learner)', 'pgd_at': 'PGD-AT'}
# (column, eval name, attack column in that eval): single attacks, each alone.
ALONE = [('PGD-20', 'pgd20', 'linf/pgd'), ('PGD-100', 'pgd100', 'linf/pgd'),
         ('CW-20', 'cw20', 'linf/pgd-cw'), ('APGD-CE', 'aa_union', 'linf/apgd-ce'),
         ('APGD-T', 'alone_apgd-t', 'linf/apgd-t'), ('FAB-T', 'alone_fab-t', 'linf/fab-t'),
         ('Square', 'alone_square', 'linf/square')]
AA_EVALS = ('aa_union', 'aa_l1')


def load(eval_dir: pathlib.Path, name: str):
  path = eval_dir / f'{name}.json'
  return json.loads(path.read_text()) if path.exists() else None


def flags_summary(state_path: pathlib.Path) -> dict:
  """From an evaluation's saved per-example flags (finished or stopped): for each
  norm, the robust accuracy after each finished attack of its sequence, and the
  per-example worst case of the norms whose every attack finished."""
  with np.load(state_path) as f:
    settings = json.loads(str(f['settings']))
    state = {k.replace('__', '/'): f[k].copy() for k in f.files if k != 'settings'}
  plan = [
      runner.AttackSpec(a['norm'], a['name'], a['eps'], tuple(map(tuple, a['overrides'])))
      for a in settings['attacks']
  ]
  clean = state['clean'] == 1
  attacks, worst = {}, {}
  for norm in dict.fromkeys(s.norm for s in plan):
    specs = [s for s in plan if s.norm == norm]
    for k, spec in enumerate(specs):  # the finished prefix of the norm's sequence
      if np.any(state[spec.column] == aa_lib.PENDING):
        break
      attacks[spec.column] = {
          'robust_acc_after': float(
              aa_lib.worst_case(clean, [state[s.column] for s in specs[:k + 1]]).mean()),
          'settings': spec.settings()
      }
    else:
      worst[norm] = aa_lib.worst_case(clean, [state[s.column] for s in specs])
  return {
      'clean': clean, 'worst': worst, 'attacks': attacks, 'settings': settings,
      'not_finished': [s.column for s in plan if s.column not in attacks]
  }


def write_flags_csv(state_path: pathlib.Path, out: pathlib.Path) -> None:
  """The per-example flags as saved (1 robust, 0 fooled, -1 not run: already broken,
  -2 not finished), also for a stopped evaluation, so every number can be rechecked."""
  with np.load(state_path) as f:
    cols = [k for k in f.files if k != 'settings']
    rows = [','.join(['index'] + [c.replace('__', '/') for c in cols])]
    rows += [','.join([str(i)] + [str(int(f[c][i])) for c in cols]) for i in range(len(f['clean']))]
  out.write_text('\n'.join(rows) + '\n')


def pct(v):
  return '-' if v is None else f'{100 * v:.1f}'


def main(runs: pathlib.Path) -> None:
  here = pathlib.Path(__file__).parent
  out = {'runs': {}}
  single = [
      '| model | n_ex | clean | ' + ' | '.join(c for c, _, _ in ALONE) +
      ' | AA l-inf | AA l2 | AA l1 | AA union |', '|---' * (7 + len(ALONE)) + '|'
  ]
  sequence = []
  for run, label in RUNS.items():
    eval_dir = runs / run / 'eval'
    if not eval_dir.exists():
      continue
    dest = here / run
    dest.mkdir(exist_ok=True)
    for f in sorted(eval_dir.glob('*.json')) + sorted(eval_dir.glob('*.md')):
      shutil.copy(f, dest / f.name)
    reports = {p.stem: json.loads(p.read_text()) for p in eval_dir.glob('*.json')}
    # AutoAttack per norm, from the flags of every AA evaluation (aa_union, and
    # aa_l1 where the l1 part ran on its own); the same n_ex examples in each.
    aa = {'attacks': {}, 'worst': {}, 'clean': None, 'sources': {}}
    for name in AA_EVALS:
      path = eval_dir / f'{name}.state.npz'
      if not path.exists():
        continue
      fs = flags_summary(path)
      write_flags_csv(path, dest / f'{name}.flags.csv')
      if aa['clean'] is not None and not np.array_equal(aa['clean'], fs['clean']):
        raise ValueError(f'{run}: {name} evaluated other examples than {aa["sources"]}')
      aa['clean'] = fs['clean']
      for col, v in fs['attacks'].items():
        aa['attacks'].setdefault(col, v)
      for norm, w in fs['worst'].items():
        if norm not in aa['worst']:
          aa['worst'][norm], aa['sources'][norm] = w, name
    worst = {n: float(w.mean()) for n, w in aa['worst'].items()}
    if all(n in aa['worst'] for n in ('linf', 'l2', 'l1')):
      worst['union'] = float(aa_lib.union_over_norms(aa['worst']).mean())
    out['runs'][run] = {
        'reports': reports, 'autoattack': {
            'clean_acc': None if aa['clean'] is None else float(aa['clean'].mean()),
            'attacks': aa['attacks'], 'worst_case': worst, 'source_of_each_norm': aa['sources']
        }
    }
    row = {}
    for column, name, attack in ALONE:
      r = reports.get(name)
      if r:
        row[column] = r['attacks'][attack]['robust_acc_after']
      elif name == 'aa_union':  # APGD-CE runs first on every clean-correct example
        row[column] = aa['attacks'].get(attack, {}).get('robust_acc_after')
      else:
        row[column] = None
    any_report = next(iter(reports.values()), None)
    single.append(f"| {label} | {any_report['n_ex'] if any_report else '-'} | "
                  f"{pct(any_report['clean_acc'] if any_report else None)} | " +
                  ' | '.join(pct(row[c]) for c, _, _ in ALONE) + ' | ' +
                  ' | '.join(pct(worst.get(k)) for k in ('linf', 'l2', 'l1', 'union')) + ' |')
    if aa['clean'] is not None:
      sequence.append(f'\n{label}: robust accuracy (%) after each attack of AutoAttack '
                      "'standard', run in order on what the earlier ones missed:\n")
      for norm in ('linf', 'l2', 'l1'):
        cols = [(k.split('/')[1], v) for k, v in aa['attacks'].items() if k.startswith(norm + '/')]
        if not cols:
          sequence.append(f'- {norm}: no attack finished')
          continue
        done = '' if norm in aa['worst'] else ' (stopped: not every attack finished)'
        sequence.append(f"- {norm} (eps {cols[0][1]['settings']['eps']:.4g}, from "
                        f"{aa['sources'].get(norm, 'aa_union')}){done}: clean "
                        f"{pct(aa['clean'].mean())} -> " +
                        ' -> '.join(f"{n} {pct(v['robust_acc_after'])}" for n, v in cols))
  table = '\n'.join(single + sequence) + '\n'
  (here / 'table.md').write_text(table)
  (here / 'results.json').write_text(json.dumps(out, indent=2, sort_keys=True))
  print(table)


if __name__ == '__main__':
  main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else 'runs/eval_cifar10_cpu'))
