"""One Markdown report comparing runs, ready to paste into a draft or an issue
(CLI: `python -m generalist_jax.report RUN_DIR... --out report.md`).

A directory without config.json whose sub-directories are runs (a suite's
workdir, e.g. runs/demo) stands for those runs. The report holds:

- the config fields that differ between the runs (only those);
- best-on-validation: the best value of each run's `eval.best_metric` and its epoch;
- test numbers of the final and the best-on-validation checkpoint of every learner
  (eval/test_last.json, eval/test_best.json, written at the end of training);
- every other evaluation in eval/*.json (generalist_jax.evaluate), one table per name;
- the PNGs of each run's plots/ folder, embedded with paths relative to the report.
"""
from __future__ import annotations

import json
import os
import pathlib

from generalist_jax.evaluation import plots
from generalist_jax.evaluation import tables


def flatten(tree: dict, prefix: str = '') -> dict:
  """A nested config as one level of dotted keys: {'a': {'b': 1}} -> {'a.b': 1}.

  Args:
    tree: a nested dict (a config as JSON).
    prefix: prepended to every key.

  Returns:
    {dotted key: leaf}; lists become tuples (hashable, comparable).
  """
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = tuple(v) if isinstance(v, list) else v
  return out


def expand_runs(dirs) -> list[pathlib.Path]:
  """The runs that `dirs` stand for: a run as itself, a suite workdir as its runs.

  Args:
    dirs: paths; a run has config.json, a suite workdir has runs as sub-directories
      (in its *_table.json's row order when there is one, else by name).

  Returns:
    The run directories, in order.

  Raises:
    ValueError: a path is neither a run nor a folder of runs.
  """
  runs = []
  for d in map(pathlib.Path, dirs):
    if (d / 'config.json').exists():
      runs.append(d)
      continue
    table = sorted(d.glob('*_table.json'))
    order = json.loads(table[0].read_text()).get('rows', []) if table else []
    names = [row[0] for row in order] or sorted(p.name for p in d.iterdir())
    subs = [d / n for n in names if (d / n / 'config.json').exists()]
    if not subs:
      raise ValueError(f'{d} is neither a run (no config.json) nor a folder of runs.')
    runs.extend(subs)
  return runs


def _has_subtree(flat: dict, prefix: str) -> bool:
  """Whether the flat config has the key `prefix` or keys under it."""
  return any(k == prefix or k.startswith(prefix + '.') for k in flat)


def config_differences(configs: dict) -> tuple[list[str], dict]:
  """The config keys worth a row in a comparison.

  Args:
    configs: run name -> config (a nested dict).

  Returns:
    (rows, name -> flat config (`flatten`)): rows are the keys whose value differs
    between the runs that have them, and the shortest prefix of each part missing
    from some run (an expert that only one run has is one row, not one per field).
  """
  flat = {name: flatten(c) for name, c in configs.items()}
  keys = sorted(set().union(*(f.keys() for f in flat.values())))
  rows = []
  for k in keys:
    present = [f[k] for f in flat.values() if k in f]
    if len(present) < len(flat):
      parts = k.split('.')
      prefixes = ['.'.join(parts[:i]) for i in range(1, len(parts) + 1)]
      missing = next(p for p in prefixes if any(not _has_subtree(f, p) for f in flat.values()))
      if missing not in rows:
        rows.append(missing)
    if len({repr(v) for v in present}) > 1:
      rows.append(k)
  return rows, flat


def _cell(flat: dict, key: str) -> str:
  """A run's cell of a config row: its value, 'yes' for a part it has, '(absent)'."""
  if key in flat:
    return _fmt_value(flat[key])
  return 'yes' if _has_subtree(flat, key) else '(absent)'


def robust_acc(metrics: dict):
  """A learner's robust accuracy in a test table (older tables name it pgd_acc).

  Args:
    metrics: one learner's entry of eval/test_*.json.

  Returns:
    Its robust_acc (or pgd_acc), None when it has neither.
  """
  return metrics.get('robust_acc', metrics.get('pgd_acc'))


def best_on_validation(run: pathlib.Path, config: dict) -> tuple:
  """A run's best validation value of its selection metric.

  Args:
    run: the run directory (its metrics.jsonl is read).
    config: the run's config; eval.best_metric names the metric
      (default 'global/robust_acc').

  Returns:
    (metric, best value, epoch of it); value and epoch are None without validation.
  """
  metric = config.get('eval', {}).get('best_metric', 'global/robust_acc')
  records = plots.read_metrics(run)
  epoch_at = {r['step']: r['epoch'] for r in records if 'epoch' in r}
  best = (None, None)
  for r in records:
    v = r.get(f'val/{metric}')
    if v is not None and (best[0] is None or v > best[0]):
      best = (v, epoch_at.get(r['step']))
  return metric, *best


def _fmt_value(v) -> str:
  """A config value as table text: floats to 6 significant digits, JSON, '|' escaped."""
  round6 = lambda x: float(f'{x:.6g}') if isinstance(x, float) else x
  v = tuple(map(round6, v)) if isinstance(v, tuple) else round6(v)
  text = json.dumps(v) if not isinstance(v, str) else v
  return text.replace('|', '\\|')


def _config_section(names: list, configs: dict) -> list[str]:
  """The config fields that differ between the runs, one row each."""
  differ, flat = config_differences(configs)
  lines = ['## Config differences', '']
  if differ:
    lines += tables.markdown_table(
        ['field'] + names, [[f'`{k}`'] + [_cell(flat[n], k) for n in names] for k in differ])
  else:
    lines.append('None: the configs are identical.')
  return lines + ['']


def _validation_section(names: list, runs: list, configs: dict) -> list[str]:
  """Each run's best value of its selection metric on validation, and its epoch."""
  rows = []
  for n, r in zip(names, runs):
    metric, value, epoch = best_on_validation(r, configs[n])
    rows.append([n, f'`{metric}`', tables.percent(value), '-' if epoch is None else f'{epoch:g}'])
  return (['## Best on validation', ''] +
          tables.markdown_table(['run', 'selection metric', 'best (%)', 'epoch'], rows) + [''])


def _test_section(names: list, runs: list) -> list[str]:
  """Clean and robust test accuracy of every learner at the final and the
  best-on-validation checkpoint (eval/test_{last,best}.json)."""
  lines = ['## Test: final and best-on-validation checkpoints', '']
  rows, attack = [], None
  for n, r in zip(names, runs):
    for which in ('last', 'best'):
      path = r / 'eval' / f'test_{which}.json'
      if not path.exists():
        continue
      t = json.loads(path.read_text())
      attack = t.get('attack', attack)
      for learner, m in t['learners'].items():
        rows.append([
            n, which, t['step'], learner,
            tables.percent(m['clean_acc']),
            tables.percent(robust_acc(m))
        ])
  if rows:
    if attack:
      lines += [
          f"PGD: {attack['norm']}, eps={attack['eps']:.4g}, {attack['steps']} steps "
          f"(config `eval.test_attack`). Accuracies in %.", ''
      ]
    lines += tables.markdown_table(['run', 'checkpoint', 'step', 'learner', 'clean', 'robust'],
                                   rows)
  else:
    lines.append('No eval/test_*.json (the runs have not finished).')
  return lines + ['']


def _evaluation_section(eval_name: str, items: list) -> list[str]:
  """One table for the evaluation files named `eval_name` ((run, report) pairs): the
  accuracy after each attack and the worst case per norm, then each attack's settings."""
  columns = list(dict.fromkeys(c for _, e in items for c in plots.attack_columns(e)))
  worst = list(dict.fromkeys(c for _, e in items for c in plots.worst_columns(e)))
  lines = [
      f'## Evaluation `{eval_name}` (generalist_jax.evaluate)', '',
      'Accuracies in %; an attack column is the robust accuracy after the attacks '
      'up to it; worst = per-example worst case.', ''
  ]
  header = ['run', 'learner', 'checkpoint', 'n', 'clean'] + columns + [f'worst {w}' for w in worst]
  rows = []
  for n, e in items:
    rows.append([
        n,
        e.get('learner'), f"{e.get('checkpoint')} ({e.get('step')})",
        e.get('n_ex'),
        tables.percent(e.get('clean_acc'))
    ] + [
        tables.percent(e['attacks'][c]['robust_acc_after']) if c in e['attacks'] else '-'
        for c in columns
    ] + [tables.percent(e['worst_case'].get(w)) for w in worst])
  lines += tables.markdown_table(header, rows) + ['']
  settings = {c: a['settings'] for _, e in items for c, a in e['attacks'].items()}
  return lines + [
      f'- `{c}`: ' + ', '.join(f'{k}={v}' for k, v in s.items()) for c, s in settings.items()
  ] + ['']


def _evaluation_sections(names: list, runs: list) -> list[str]:
  """A section per evaluation name in the runs' eval/*.json (test_*.json aside)."""
  evals = {}
  for n, r in zip(names, runs):
    for path in sorted((r / 'eval').glob('*.json')):
      if not path.name.startswith('test_'):
        evals.setdefault(path.stem, []).append((n, json.loads(path.read_text())))
  return [
      line for eval_name, items in evals.items() for line in _evaluation_section(eval_name, items)
  ]


def _plots_section(dirs, names: list, runs: list, out: pathlib.Path) -> list[str]:
  """The PNGs of each suite's and each run's plots/ folder, linked relative to `out`'s
  folder: the trade-off path first, then schedules, then evaluation bars."""
  lines = ['## Plots', '']
  base = out.resolve().parent
  suites = [pathlib.Path(d) for d in dirs if not (pathlib.Path(d) / 'config.json').exists()]
  groups = [(f'suite {d.name}', d) for d in suites] + list(zip(names, runs))
  for n, r in groups:
    pngs = sorted((r / 'plots').glob('*.png'), key=lambda p:
                  (['tradeoff', 'schedules'].index(p.stem)
                   if p.stem in ('tradeoff', 'schedules') else 2, p.name))
    if not pngs:
      continue
    lines += [f'### {n}', '']
    for png in pngs:
      rel = pathlib.Path(os.path.relpath(png.resolve(), base)).as_posix()
      lines += [f'![{n}: {png.stem}]({rel})', '']
  if lines[-2:] == ['## Plots', '']:
    lines.append('No PNGs in the runs\' plots/ folders (runs trained before plots existed: '
                 '`python -c "from generalist_jax.evaluation import plots; '
                 'plots.training_plots(RUN)"`).')
  return lines


def build_report(dirs, out: pathlib.Path) -> str:
  """The Markdown comparison of runs (the module's sections, in order).

  Args:
    dirs: run directories, or suite workdirs standing for their runs (`expand_runs`).
    out: where the report will be written; embedded PNGs are linked relative to
      its folder.

  Returns:
    The Markdown text, ending in a newline.

  Raises:
    ValueError: a directory is neither a run nor a folder of runs.
  """
  runs = expand_runs(dirs)
  names = [r.name if [x.name for x in runs].count(r.name) == 1 else str(r) for r in runs]
  configs = {n: json.loads((r / 'config.json').read_text()) for n, r in zip(names, runs)}
  lines = [f"# Runs compared: {', '.join(names)}", '']
  lines += ['Run directories: ' + ', '.join(f'`{r}`' for r in runs), '']
  lines += _config_section(names, configs)
  lines += _validation_section(names, runs, configs)
  lines += _test_section(names, runs)
  lines += _evaluation_sections(names, runs)
  lines += _plots_section(dirs, names, runs, out)
  return '\n'.join(lines).rstrip() + '\n'


def write_report(dirs, out) -> pathlib.Path:
  """Writes the Markdown comparison of runs (`build_report`).

  Args:
    dirs: as `build_report`.
    out: the report's path (its folder is created).

  Returns:
    `out` as a Path.
  """
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(build_report(dirs, out))
  return out
