r"""Copies the eval reports of run.sh here and builds table.md / results.json from them.

  python -m experiments.eval_cifar10_cpu.collect [RUNS_DIR]   (default /work/runs/eval_cifar10_cpu)

Every number comes from the per-example flags in the eval JSONs; a column whose
evaluation did not finish is left out ('-'), never filled in. Where the
AutoAttack run was stopped before its last norm, the norms whose every attack
finished are summarised from its saved flags (`aa_union.partial.json`, marked).
"""
import json
import pathlib
import shutil
import sys

import numpy as np

from generalist_jax import autoattack as aa_lib
from generalist_jax import evaluate

RUNS = {'generalist': 'Generalist (global learner)', 'pgd_at': 'PGD-AT'}
# (column, eval name, attack column in that eval): single attacks, each alone.
ALONE = [('PGD-20', 'pgd20', 'linf/pgd'), ('PGD-100', 'pgd100', 'linf/pgd'),
         ('CW-20', 'cw20', 'linf/pgd-cw'), ('APGD-CE', 'aa_union', 'linf/apgd-ce'),
         ('APGD-T', 'alone_apgd-t', 'linf/apgd-t'), ('FAB-T', 'alone_fab-t', 'linf/fab-t'),
         ('Square', 'alone_square', 'linf/square')]


def load(eval_dir: pathlib.Path, name: str):
  path = eval_dir / f'{name}.json'
  return json.loads(path.read_text()) if path.exists() else None


def partial_summary(state_path: pathlib.Path):
  """Summary of the finished norms of an interrupted evaluation, from its flags."""
  with np.load(state_path) as f:
    settings = json.loads(str(f['settings']))
    state = {k.replace('__', '/'): f[k].copy() for k in f.files if k != 'settings'}
  plan = [evaluate.AttackSpec(a['norm'], a['name'], a['eps'], tuple(map(tuple, a['overrides'])))
          for a in settings['attacks']]
  finished = lambda spec: bool(np.all(state[spec.column] != aa_lib.PENDING))
  done = [n for n in dict.fromkeys(s.norm for s in plan)
          if all(finished(s) for s in plan if s.norm == n)]
  clean = state['clean'] == 1
  attacks = {}
  for norm in dict.fromkeys(s.norm for s in plan):
    specs = [s for s in plan if s.norm == norm]
    for k, spec in enumerate(specs):       # the finished prefix of each norm's sequence
      if not finished(spec):
        break
      attacks[spec.column] = {'robust_acc_after': float(aa_lib.worst_case(
          clean, [state[s.column] for s in specs[:k + 1]]).mean()),
          'settings': spec.settings()}
  worst = {n: attacks[[s.column for s in plan if s.norm == n][-1]]['robust_acc_after']
           for n in done}
  return dict(partial=True, finished_norms=done, clean_acc=float(clean.mean()),
              attacks=attacks, worst_case=worst,
              not_finished=[s.column for s in plan if s.column not in attacks],
              n_ex=settings['n_ex'], seed=settings['seed'], checkpoint=settings['checkpoint'],
              learner=settings['learner'])


def pct(v):
  return '-' if v is None else f'{100 * v:.1f}'


def main(runs: pathlib.Path) -> None:
  here = pathlib.Path(__file__).parent
  out = {'runs': {}}
  single = ['| model | n_ex | clean | ' + ' | '.join(c for c, _, _ in ALONE) +
            ' | AA l-inf | AA l2 | AA l1 | AA union |', '|---' * (7 + len(ALONE)) + '|']
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
    if 'aa_union' not in reports and (eval_dir / 'aa_union.state.npz').exists():
      partial = partial_summary(eval_dir / 'aa_union.state.npz')
      if partial['attacks']:
        reports['aa_union'] = partial
        (dest / 'aa_union.partial.json').write_text(json.dumps(partial, indent=2))
    out['runs'][run] = reports
    aa = reports.get('aa_union')
    row = {}
    for column, name, attack in ALONE:
      r = reports.get(name)
      row[column] = r['attacks'][attack]['robust_acc_after'] if r else None
    worst = dict(aa['worst_case']) if aa else {}
    if aa and aa.get('partial'):
      worst.pop('union', None)        # a union needs every norm
    any_report = aa or next(iter(reports.values()), None)
    single.append(f"| {label} | {any_report['n_ex'] if any_report else '-'} | "
                  f"{pct(any_report['clean_acc'] if any_report else None)} | " +
                  ' | '.join(pct(row[c]) for c, _, _ in ALONE) + ' | ' +
                  ' | '.join(pct(worst.get(k)) for k in ('linf', 'l2', 'l1', 'union')) + ' |')
    if aa:
      sequence.append(f'\n{label}: robust accuracy (%) after each attack of AutoAttack '
                      "'standard', run in order on what the earlier ones missed:\n")
      for norm in ('linf', 'l2', 'l1'):
        cols = [(k.split('/')[1], v) for k, v in aa['attacks'].items() if k.startswith(norm + '/')]
        if not cols:
          sequence.append(f'- {norm}: not finished')
          continue
        sequence.append(f'- {norm} (eps {aa_eps(aa, norm)}): clean {pct(aa["clean_acc"])} -> ' +
                        ' -> '.join(f"{name} {pct(v['robust_acc_after'])}" for name, v in cols))
  table = '\n'.join(single + sequence) + '\n'
  (here / 'table.md').write_text(table)
  (here / 'results.json').write_text(json.dumps(out, indent=2, sort_keys=True))
  print(table)


def aa_eps(report, norm):
  for spec in report['attacks']:
    if spec.startswith(norm + '/'):
      return f"{report['attacks'][spec]['settings']['eps']:.4g}"
  return '-'


if __name__ == '__main__':
  main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else '/work/runs/eval_cifar10_cpu'))
