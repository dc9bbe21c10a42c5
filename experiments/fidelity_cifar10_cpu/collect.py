r"""Tables and plots of the fidelity runs (issue 15), from their files.

  python experiments/fidelity_cifar10_cpu/collect.py RUNS_DIR [OUT_DIR] [N_EX]

Writes OUT_DIR (default: this folder) results.json, table.md (rows x {last,
selected} x {clean, PGD-20, APGD-CE+T}, mean +- std over seeds, wall times), the
seed-paired differences against PGD-AT's EMA and against beta = 1 paired.md, the per-sync-window table
windows.md (all three also spliced into results.md between its
`<!-- begin table.md -->` / `<!-- end table.md -->` markers, so the prose file never
quotes stale tables), and PNGs: windows.png (each expert's EMA at the end of the
free phase before a window, the global learner just after it), trajectory_<run>.png
(validation clean vs robust of every learner through training) and the copied
interpolation curves.
"""
import json
import pathlib
import shutil
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from generalist_jax.evaluation import plots  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from evaluate import result_name  # noqa: E402
sys.path.insert(0, str(HERE.parent))
import eval_tables  # noqa: E402

N_EX = 1000   # default test images per evaluation (evaluate.py --n_ex)
ROWS = [('Generalist (relative timescale)', 'generalist', 'global'),
        ('PGD-AT', 'pgd_at', 'robust'),
        ("PGD-AT's EMA (same horizon)", 'pgd_at', 'robust_ema'),
        ('standard training', 'standard', 'natural'),
        ('Generalist, beta = 1 throughout', 'generalist_beta1', 'global'),
        ('Generalist without sync', 'generalist_nosync', 'global'),
        ('ablation: Generalist, free-phase lr x10', 'generalist_drift10', 'global')]
METRICS = (('clean', 'pgd20', 'clean_acc'), ('PGD-20', 'pgd20', 'robust_acc'),
           ('APGD-CE+T', 'fast', 'robust_acc'))


def mean_std(values):
  if not values:
    return None
  return (100 * statistics.mean(values), 100 * statistics.stdev(values) if len(values) > 1
          else 0.0, len(values))


def fmt(ms) -> str:
  if ms is None:
    return '-'
  mean, std, n = ms
  if n == 1:
    return f'{mean:.1f} (n=1)'
  return f'{mean:.1f} ± {std:.1f}' + ('' if n == 3 else f' (n={n})')


def runs_of(runs_dir: pathlib.Path, row: str):
  return sorted(p for p in runs_dir.glob(f'{row}_s[0-9]') if p.is_dir())


def eval_value(run: pathlib.Path, which: str, learner: str, attack: str, key: str, n_ex: int):
  path = run / 'eval' / f'{result_name(which, learner, attack, n_ex)}.json'
  return json.loads(path.read_text())[key] if path.exists() else None


def table(runs_dir: pathlib.Path, times: dict, n_ex: int) -> tuple[list, list]:
  rows, raw = [], []
  for label, row, learner in ROWS:
    runs = [r for r in runs_of(runs_dir, row) if (r / 'eval').is_dir()]   # evaluated only
    if not runs:
      continue
    entry = {'row': label, 'runs': [r.name for r in runs], 'learner': learner}
    cells = [label, learner, str(len(runs))]
    for which in ('last', 'selected'):
      for name, attack, key in METRICS:
        by_seed = {r.name.rsplit('_s', 1)[1]: v for r in runs
                   if (v := eval_value(r, which, learner, attack, key, n_ex)) is not None}
        entry[f'{which}/{name}'] = by_seed   # seed -> value
        cells.append(fmt(mean_std(list(by_seed.values()))))
    steps = [json.loads((r / 'eval' / 'fidelity_selection.json').read_text())[learner]['selected']
             for r in runs if (r / 'eval' / 'fidelity_selection.json').exists()]
    entry['selected_steps'] = steps
    train_s = [times[r.name] for r in runs if r.name in times]
    entry['train_seconds'] = train_s
    cells += [', '.join(steps) or '-',
              f'{statistics.mean(train_s) / 60:.0f}' if train_s else '-']
    rows.append(cells)
    raw.append(entry)
  return rows, raw


# (reference row, which rows to compare with it: label prefixes, None for all)
PAIRED_REFERENCES = (("PGD-AT's EMA (same horizon)", None),   # the baseline to beat
                     ('Generalist, beta = 1 throughout',        # the same run, no mixing
                      ('Generalist', 'ablation')))


def paired_table(raw: list[dict], reference: str, prefixes=None) -> list[str]:
  """Each row (those whose label starts with one of `prefixes`; all when None) minus
  `reference`, seed by seed (same seed, data split and test images): mean difference
  in points, its standard error, and each seed's difference, per column."""
  ref = next((e for e in raw if e['row'] == reference), None)
  if ref is None:
    return []
  cols = [f'{w}/{m}' for w in ('last', 'selected') for m, _, _ in METRICS]
  lines = ['| row minus ' + reference + ' | ' + ' | '.join(cols) + ' |',
           '|' + '---|' * (len(cols) + 1)]
  for entry in raw:
    if entry is ref or (prefixes is not None and not entry['row'].startswith(prefixes)):
      continue
    cells = []
    for col in cols:
      mine, theirs = entry[col], ref[col]
      diffs = [100 * (mine[s] - theirs[s]) for s in sorted(mine.keys() & theirs.keys())]
      if not diffs:
        cells.append('-')
        continue
      se = (f'{statistics.stdev(diffs) / len(diffs) ** 0.5:.2f}' if len(diffs) > 1 else '-')
      cells.append(f'{statistics.mean(diffs):+.2f} (SE {se}; '
                   + ', '.join(f'{d:+.1f}' for d in diffs) + ')')
    lines.append(f"| {entry['row']} | " + ' | '.join(cells) + ' |')
  return lines


def windows(runs_dir: pathlib.Path, row: str = 'generalist') -> list[dict]:
  """Per sync window k: experts' EMAs at the end of the free phase before it
  (presync) and the global learner just after it (postsync), each seed."""
  out = []
  for run in runs_of(runs_dir, row):
    records = plots.read_metrics(run)
    pre = [r for r in records if 'presync/global/clean_acc' in r]
    post = [r for r in records if 'postsync/global/clean_acc' in r]
    for k, (a, b) in enumerate(zip(pre, post)):
      out.append({'run': run.name, 'window': k + 1, 'presync_step': a['step'],
                  'postsync_step': b['step'],
                  **{f'pre/{n}/{m}': a[f'presync/{n}/{m}'] for n in
                     ('natural', 'robust', 'natural_ema', 'robust_ema', 'global')
                     for m in ('clean_acc', 'robust_acc')},
                  **{f'post/global/{m}': b[f'postsync/global/{m}'] for m in
                     ('clean_acc', 'robust_acc')}})
  return out


def window_table(rows: list[dict]) -> list[str]:
  keys = [('pre/natural_ema/clean_acc', 'natural EMA clean (before)'),
          ('pre/natural_ema/robust_acc', 'natural EMA robust (before)'),
          ('pre/robust_ema/clean_acc', 'robust EMA clean (before)'),
          ('pre/robust_ema/robust_acc', 'robust EMA robust (before)'),
          ('post/global/clean_acc', 'global clean (after)'),
          ('post/global/robust_acc', 'global robust (after)')]
  header = ['window', 'step'] + [name for _, name in keys]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for k in sorted({r['window'] for r in rows}):
    group = [r for r in rows if r['window'] == k]
    lines.append(f"| {k} | {group[0]['presync_step']} | " + ' | '.join(
        fmt(mean_std([r[key] for r in group])) for key, _ in keys) + ' |')
  return lines


def window_plot(rows: list[dict], path: pathlib.Path) -> None:
  plt = plots._pyplot()   # pylint: disable=protected-access
  fig, (ax_c, ax_r) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
  ks = sorted({r['window'] for r in rows})
  series = [('pre/natural_ema', 'natural EMA, end of free phase', '#1f77b4', '--'),
            ('pre/robust_ema', 'robust EMA, end of free phase', '#d62728', '--'),
            ('post/global', 'global, just after the window', 'black', '-')]
  for ax, metric, title in ((ax_c, 'clean_acc', 'clean'), (ax_r, 'robust_acc', 'PGD-5')):
    for prefix, label, color, style in series:
      means = [100 * statistics.mean(r[f'{prefix}/{metric}'] for r in rows if r['window'] == k)
               for k in ks]
      ax.plot(ks, means, style, marker='o', color=color, label=label)
    ax.set_xlabel('sync window (virtual epochs 75, 80, ..., 120)')
    ax.set_ylabel(f'validation {title} accuracy (%), mean over seeds')
    ax.grid(alpha=0.3)
  ax_c.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def splice(text: str, name: str, lines: list[str]) -> str:
  """`text` with the lines between `<!-- begin NAME -->` and `<!-- end NAME -->`
  replaced by `lines`; unchanged when the markers are absent."""
  begin, end = f'<!-- begin {name} -->', f'<!-- end {name} -->'
  if begin not in text or end not in text:
    return text
  head, rest = text.split(begin, 1)
  return head + begin + '\n' + '\n'.join(lines) + '\n' + end + rest.split(end, 1)[1]


def main(argv):
  runs_dir = pathlib.Path(argv[1])
  out = pathlib.Path(argv[2]) if len(argv) > 2 else HERE
  n_ex = int(argv[3]) if len(argv) > 3 else N_EX
  times = {}
  for t in eval_tables.times(runs_dir):
    # A resumed run logs one entry per sitting: its training time is their sum.
    times[t['run']] = times.get(t['run'], 0) + t['train_seconds']
  rows, raw = table(runs_dir, times, n_ex)
  per_window = windows(runs_dir)
  header = (['row', 'learner', 'seeds'] + [f'last {m}' for m, _, _ in METRICS]
            + [f'selected {m}' for m, _, _ in METRICS] + ['selected steps', 'train min'])
  md = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  md += ['| ' + ' | '.join(cells) + ' |' for cells in rows]
  (out / 'table.md').write_text('\n'.join(md) + '\n')
  paired_lines = []
  for reference, prefixes in PAIRED_REFERENCES:
    lines = paired_table(raw, reference, prefixes)
    paired_lines += lines + [''] if lines else []
  (out / 'paired.md').write_text('\n'.join(paired_lines))
  window_lines = window_table(per_window) if per_window else []
  (out / 'windows.md').write_text('\n'.join(window_lines) + '\n' if per_window
                                  else 'no sync windows logged\n')
  if per_window:
    window_plot(per_window, out / 'windows.png')
  for name in ('generalist_s0', 'generalist_nosync_s0', 'pgd_at_s0'):
    run = runs_dir / name
    series = plots.validation_series(plots.read_metrics(run)) if run.exists() else {}
    if series:
      plots.tradeoff_plot(series, out / f'trajectory_{name}.png',
                          f'Validation path of every learner: {name}', 'l-inf PGD-5, 8/255')
    for png in (run / 'interpolation').glob('*.png') if run.exists() else ():
      shutil.copy(png, out / f'interpolation_{name}_{png.name}')
      shutil.copy(png.with_suffix('.json'), out / f'interpolation_{name}_{png.stem}.json')
  (out / 'results.json').write_text(json.dumps({'rows': raw, 'windows': per_window}, indent=2))
  prose = out / 'results.md'
  if prose.exists():
    text = splice(prose.read_text(), 'table.md', md)
    text = splice(text, 'paired.md', paired_lines)
    prose.write_text(splice(text, 'windows.md', window_lines))
  print('\n'.join(md))


if __name__ == '__main__':
  main(sys.argv)
