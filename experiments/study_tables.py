"""Test-set evaluation and tables of a seeded study of runs, one implementation for
experiments/fidelity_cifar10_cpu and experiments/reference_clock_cifar10_cpu, set up
by a `Study` (its rows, their learners, T, the result files' prefix, the attacks).

Evaluation (`evaluate_run_learners`): every learner of a finished run at
  last      the end of training;
  selected  the validated step with the highest validation clean + robust accuracy of
            that learner (`<learner>/sum_acc` of the `val/` records: the reference's
            quantity, on validation instead of test; no clean floor);
one result file per (checkpoint, learner, attack, images), skipped when it exists:
<run>/eval/<prefix>_<which>_<learner>_<attack>_n<n>.json; the choice in
<run>/eval/<prefix>_selection.json. A fork's selected step may lie before the fork,
where only its source has the checkpoint (the same state): that one is evaluated in the
source's eval/ and copied.
Tables: mean +- std over seeds, seed-paired differences with SE, the per-sync-window
table and plot, the validation trajectory, interpolation paths, splicing into a
results.md between `<!-- begin X -->` / `<!-- end X -->` markers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import shutil
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from generalist_jax.evaluation import plots  # noqa: E402

# (column, attack label, key in its result file): clean accuracy comes with PGD-20.
METRICS = (('clean', 'pgd20', 'clean_acc'), ('PGD-20', 'pgd20', 'robust_acc'), ('APGD-CE+T', 'fast',
                                                                                'robust_acc'))
WHICH = ('last', 'selected')


@dataclasses.dataclass(frozen=True)
class Study:
  prefix: str  # result files <prefix>_<which>_<learner>_<attack>_n<n>.json
  total_steps: int  # a run is finished once checkpoints/last/<total_steps> exists
  learners: dict  # row -> the learners evaluated
  attacks: dict  # label -> (evaluate_run attacks, budget overrides)
  layout: str = 'flat'  # 'flat': RUNS/<row>_s<seed>; 'nested': RUNS/s<seed>/<row>
  batch_size: int = 250
  command: str = ''  # written into every report
  log_costs: bool = False  # add wall time, /proc/loadavg and the test ids to each result


@dataclasses.dataclass(frozen=True)
class Run:
  seed: str  # as in the folder name ('0')
  path: pathlib.Path
  label: str  # 'generalist_s0' (flat) or 's0/generalist' (nested)


# ----------------------------------------------------------------------------
# Runs and files.
# ----------------------------------------------------------------------------


def runs_of(study: Study, runs_dir: pathlib.Path, row: str) -> list[Run]:
  """The row's run folders, seed order."""
  if study.layout == 'flat':
    return [
        Run(p.name.rsplit('_s', 1)[1], p, p.name)
        for p in sorted(runs_dir.glob(f'{row}_s[0-9]'))
        if p.is_dir()
    ]
  found = [p for p in runs_dir.glob(f's[0-9]*/{row}') if p.is_dir() and p.parent.name[1:].isdigit()]
  return [
      Run(p.parent.name[1:], p, f'{p.parent.name}/{row}')
      for p in sorted(found, key=lambda p: int(p.parent.name[1:]))
  ]


def finished(study: Study, run: pathlib.Path) -> bool:
  return (run / 'checkpoints' / 'last' / str(study.total_steps)).exists()


def result_name(study: Study, which: str, learner: str, attack: str, n_ex: int) -> str:
  """The file stem of one evaluation under <run>/eval."""
  return f'{study.prefix}_{which}_{learner}_{attack}_n{n_ex}'


def selection_path(study: Study, run: pathlib.Path) -> pathlib.Path:
  return run / 'eval' / f'{study.prefix}_selection.json'


def read_json(path: pathlib.Path):
  return json.loads(path.read_text()) if path.exists() else None


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


def selected_step(run: pathlib.Path, learner: str) -> int | None:
  """The validated step with the highest `val/<learner>/sum_acc` (first on ties)."""
  # It imports jax: imported here, so the collect scripts start fast.
  from generalist_jax.evaluation import learners  # pylint: disable=g-import-not-at-top
  best = learners.select_best(plots.read_metrics(run), f'{learner}/sum_acc')
  return None if best is None else best[0]


def checkpoint_home(run: pathlib.Path, step: int) -> pathlib.Path:
  """The workdir holding `run`'s checkpoint at `step`: its own, or (a fork, the step
  before the fork) its `init_from` source's, followed back; `run` itself when none
  has it (evaluate_run then names the missing step). A source path that no longer
  resolves (a runs dir moved, a relative path) is looked up as a sibling."""
  home = run
  while not (home / 'checkpoints' / 'last' / str(step)).exists():
    source = (read_json(home / 'config.json') or {}).get('init_from') or {}
    if not source.get('workdir') or step > int(source.get('step', -1)):
      return run
    path = pathlib.Path(source['workdir'])
    home = path if path.is_dir() else home.parent / path.name
  return home


def loadavg() -> str:
  try:
    return ' '.join(pathlib.Path('/proc/loadavg').read_text().split()[:3])
  except OSError:
    return ''


def test_ids_sha1(report: dict) -> str:
  """A hash of the test images a report used: the same for every run evaluated with
  the same n (`runner.sample_test_points` draws them with a fixed generator, no run
  seed)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from generalist_jax.evaluation import runner  # pylint: disable=g-import-not-at-top
  ids = np.arange(report['test_split_size'])
  keep = runner.sample_test_points(ids, ids, report['n_ex_requested'])[2]
  return hashlib.sha1(np.asarray(keep, np.int64).tobytes()).hexdigest()


def evaluate_one(study: Study, workdir: pathlib.Path, name: str, checkpoint: str, learner: str,
                 label: str, n_ex: int) -> None:
  """One evaluate_run into <workdir>/eval/<name>.json unless it exists."""
  from generalist_jax.run import evaluate_run  # pylint: disable=g-import-not-at-top
  path = workdir / 'eval' / f'{name}.json'
  if path.exists():
    return
  attacks, overrides = study.attacks[label]
  started, load_start = time.time(), loadavg()
  report = evaluate_run.evaluate_run(workdir, checkpoint=checkpoint, learner=learner,
                                     attacks=attacks, norms=['linf'], eps=[8 / 255], n_ex=n_ex,
                                     batch_size=study.batch_size, seed=0, name=name,
                                     overrides=overrides, progress=False, command=study.command)
  seconds = time.time() - started
  print(f'{workdir} {name}: {seconds:.0f} s', flush=True)
  if study.log_costs and report is not None:
    report['study_eval'] = {
        'wall_seconds': round(seconds, 1), 'loadavg_start': load_start, 'loadavg_end': loadavg(),
        'test_ids_sha1': test_ids_sha1(report), 'date': time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                                                      time.gmtime())
    }
    path.write_text(json.dumps(report, indent=2))


def evaluate_borrowed(study: Study, run: pathlib.Path, home: pathlib.Path, step: int, name: str,
                      learner: str, label: str, n_ex: int) -> None:
  """A checkpoint only the fork's source holds: evaluated there once (named by its
  step, so every fork of that source shares it), copied as the fork's result."""
  shared = f'{study.prefix}_step{step}_{learner}_{label}_n{n_ex}'
  evaluate_one(study, home, shared, str(step), learner, label, n_ex)
  report = json.loads((home / 'eval' / f'{shared}.json').read_text())
  report['evaluated_in'] = str(home)
  (run / 'eval').mkdir(parents=True, exist_ok=True)
  (run / 'eval' / f'{name}.json').write_text(json.dumps(report, indent=2))


def evaluate_run_learners(study: Study, run: pathlib.Path, row: str, *, which, attacks, n_ex: dict,
                          learners=()) -> dict:
  """Every (checkpoint, learner, attack) of the run not evaluated yet; `n_ex`: attack
  label -> test images; `learners` (empty: all) limits what is evaluated, not the
  selection file. Returns the selection {learner: {'last': 'last', 'selected': step}}."""
  selection = {}
  for learner in study.learners[row]:
    step = selected_step(run, learner)
    home = run if step is None else checkpoint_home(run, step)
    selection[learner] = {'last': 'last'}
    if step is not None:
      selection[learner]['selected'] = str(step)
    if home != run:
      selection[learner]['selected_from'] = str(home)
    if learners and learner not in learners:
      continue
    for w, checkpoint in selection[learner].items():
      if w not in which:
        continue
      for label in attacks:
        name = result_name(study, w, learner, label, n_ex[label])
        if w == 'selected' and home != run:
          if not (run / 'eval' / f'{name}.json').exists():
            evaluate_borrowed(study, run, home, step, name, learner, label, n_ex[label])
        else:
          evaluate_one(study, run, name, checkpoint, learner, label, n_ex[label])
  selection_path(study, run).parent.mkdir(parents=True, exist_ok=True)
  selection_path(study, run).write_text(json.dumps(selection, indent=2))
  return selection


# ----------------------------------------------------------------------------
# Tables.
# ----------------------------------------------------------------------------


def mean_std(values):
  """(mean, std, n) in percent of fractions; None for no values."""
  if not values:
    return None
  return (100 * statistics.mean(values), 100 * statistics.stdev(values) if len(values) > 1 else 0.0,
          len(values))


def fmt(ms) -> str:
  """'mean ± std', n shown when it is not the full 3 seeds."""
  if ms is None:
    return '-'
  mean, std, n = ms
  if n == 1:
    return f'{mean:.1f} (n=1)'
  return f'{mean:.1f} ± {std:.1f}' + ('' if n == 3 else f' (n={n})')


def eval_value(study: Study, run: pathlib.Path, which: str, learner: str, attack: str, key: str,
               n_ex: int):
  path = run / 'eval' / f'{result_name(study, which, learner, attack, n_ex)}.json'
  return json.loads(path.read_text())[key] if path.exists() else None


def table(study: Study, rows, runs_dir: pathlib.Path, n_ex: dict,
          times: dict | None = None) -> tuple[list, list]:
  """rows: (label, row, learner). Returns (cells per row, raw entries); seeds key
  every value. `times`: run label -> training seconds (a 'train min' column), or None."""
  cells_out, raw = [], []
  for label, row, learner in rows:
    runs = [r for r in runs_of(study, runs_dir, row) if (r.path / 'eval').is_dir()]
    if not runs:
      continue
    entry = {'row': label, 'runs': [r.label for r in runs], 'learner': learner}
    cells = [label, learner, str(len(runs))]
    for which in WHICH:
      for name, attack, key in METRICS:
        by_seed = {
            r.seed: v
            for r in runs
            if (v := eval_value(study, r.path, which, learner, attack, key, n_ex[attack])
               ) is not None
        }
        entry[f'{which}/{name}'] = by_seed
        cells.append(fmt(mean_std(list(by_seed.values()))))
    steps = [
        json.loads(selection_path(study, r.path).read_text())[learner]['selected']
        for r in runs
        if selection_path(study, r.path).exists()
    ]
    entry['selected_steps'] = steps
    cells.append(', '.join(steps) or '-')
    if times is not None:
      train_s = [times[r.label] for r in runs if r.label in times]
      entry['train_seconds'] = train_s
      cells.append(f'{statistics.mean(train_s) / 60:.0f}' if train_s else '-')
    cells_out.append(cells)
    raw.append(entry)
  return cells_out, raw


def table_lines(cells: list, with_times: bool) -> list[str]:
  header = (['row', 'learner', 'seeds'] + [f'{w} {m}' for w in WHICH for m, _, _ in METRICS] +
            ['selected steps'] + (['train min'] if with_times else []))
  return (['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] +
          ['| ' + ' | '.join(c) + ' |' for c in cells])


def paired_diffs(entry: dict, ref: dict, col: str) -> dict:
  """seed -> difference in points, on the seeds both have (same data split and test
  images for the same seed)."""
  mine, theirs = entry[col], ref[col]
  return {s: 100 * (mine[s] - theirs[s]) for s in sorted(mine.keys() & theirs.keys())}


def paired_cell(diffs: list) -> str:
  if not diffs:
    return '-'
  se = f'{statistics.stdev(diffs) / len(diffs) ** 0.5:.2f}' if len(diffs) > 1 else '-'
  return (f'{statistics.mean(diffs):+.2f} (SE {se}; ' + ', '.join(f'{d:+.1f}' for d in diffs) + ')')


def paired_table(raw: list[dict], reference: str, prefixes=None) -> list[str]:
  """Each row (those whose label starts with one of `prefixes`; all when None) minus
  `reference`, seed by seed: mean difference in points, its standard error, and each
  seed's difference, per column."""
  ref = next((e for e in raw if e['row'] == reference), None)
  if ref is None:
    return []
  cols = [f'{w}/{m}' for w in WHICH for m, _, _ in METRICS]
  lines = [
      '| row minus ' + reference + ' | ' + ' | '.join(cols) + ' |', '|' + '---|' * (len(cols) + 1)
  ]
  for entry in raw:
    if entry is ref or (prefixes is not None and not entry['row'].startswith(prefixes)):
      continue
    cells = [paired_cell(list(paired_diffs(entry, ref, col).values())) for col in cols]
    lines.append(f"| {entry['row']} | " + ' | '.join(cells) + ' |')
  return lines


def paired_values(raw: list[dict], reference: str, rows) -> list[dict]:
  """The paired differences of `rows` (labels) minus `reference` as numbers (results.json)."""
  ref = next((e for e in raw if e['row'] == reference), None)
  out = []
  for entry in raw:
    if ref is None or entry is ref or entry['row'] not in rows:
      continue
    cols = {}
    for col in (f'{w}/{m}' for w in WHICH for m, _, _ in METRICS):
      d = paired_diffs(entry, ref, col)
      values = list(d.values())
      cols[col] = {
          'per_seed': d, 'mean': statistics.mean(values) if values else None,
          'se': (statistics.stdev(values) / len(values)**0.5 if len(values) > 1 else None)
      }
    out.append({'row': entry['row'], 'minus': reference, 'points': cols})
  return out


# ----------------------------------------------------------------------------
# Sync windows and trajectories (validation records of metrics.jsonl).
# ----------------------------------------------------------------------------

WINDOW_LEARNERS = ('natural', 'robust', 'natural_ema', 'robust_ema', 'global')


def windows(study: Study, runs_dir: pathlib.Path, row: str = 'generalist') -> list[dict]:
  """Per sync window k: the learners just before it (presync) and the global learner
  just after it (postsync), each seed."""
  out = []
  for run in runs_of(study, runs_dir, row):
    records = plots.read_metrics(run.path)
    pre = [r for r in records if 'presync/global/clean_acc' in r]
    post = [r for r in records if 'postsync/global/clean_acc' in r]
    for k, (a, b) in enumerate(zip(pre, post)):
      accs = ('clean_acc', 'robust_acc')
      before = {f'pre/{n}/{m}': a[f'presync/{n}/{m}'] for n in WINDOW_LEARNERS for m in accs}
      after = {f'post/global/{m}': b[f'postsync/global/{m}'] for m in accs}
      out.append({
          'run': run.label, 'window': k + 1, 'presync_step': a['step'], 'postsync_step': b['step'],
          **before, **after
      })
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
    lines.append(f"| {k} | {group[0]['presync_step']} | " +
                 ' | '.join(fmt(mean_std([r[key] for r in group])) for key, _ in keys) + ' |')
  return lines


def window_plot(rows: list[dict], path: pathlib.Path, robust_label: str = 'PGD-5') -> None:
  plt = plots._pyplot()  # pylint: disable=protected-access
  fig, (ax_c, ax_r) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
  ks = sorted({r['window'] for r in rows})
  series = [('pre/natural_ema', 'natural EMA, end of free phase', '#1f77b4', '--'),
            ('pre/robust_ema', 'robust EMA, end of free phase', '#d62728', '--'),
            ('post/global', 'global, just after the window', 'black', '-')]
  for ax, metric, title in ((ax_c, 'clean_acc', 'clean'), (ax_r, 'robust_acc', robust_label)):
    for prefix, label, color, style in series:
      means = [
          100 *
          statistics.mean(r[f'{prefix}/{metric}'] for r in rows if r['window'] == k) for k in ks
      ]
      ax.plot(ks, means, style, marker='o', color=color, label=label)
    ax.set_xlabel('sync window (virtual epochs 75, 80, ..., 120)')
    ax.set_ylabel(f'validation {title} accuracy (%), mean over seeds')
    ax.grid(alpha=0.3)
  ax_c.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def validation_by_step(records: list[dict]) -> dict:
  """learner -> {'step', 'clean', 'robust'} (%) of the `val/` records, step order."""
  series = {}
  for r in sorted(records, key=lambda r: r['step']):
    for key, value in r.items():
      parts = key.split('/')
      if len(parts) == 3 and parts[0] == 'val' and parts[2] == 'clean_acc':
        robust = r.get(f'val/{parts[1]}/robust_acc')
        if value is not None and robust is not None:
          s = series.setdefault(parts[1], {'step': [], 'clean': [], 'robust': []})
          s['step'].append(r['step'])
          s['clean'].append(100 * value)
          s['robust'].append(100 * robust)
  return series


def trajectory_plot(records: list[dict], path: pathlib.Path, title: str,
                    robust_label: str) -> pathlib.Path | None:
  """Validation clean and robust accuracy of every learner against the step, the
  sync windows (presync -> postsync records) shaded."""
  series = validation_by_step(records)
  if not series:
    return None
  plt = plots._pyplot()  # pylint: disable=protected-access
  colors = plots._learner_colors(series)  # pylint: disable=protected-access
  pre = [r['step'] for r in records if 'presync/global/clean_acc' in r]
  post = [r['step'] for r in records if 'postsync/global/clean_acc' in r]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, sharex=True)
  for ax, key, what in zip(axes, ('clean', 'robust'), ('clean', robust_label)):
    for a, b in zip(pre, post):
      ax.axvspan(a, b, color='0.85', lw=0)
    for name, s in series.items():
      ax.plot(s['step'], s[key], color=colors[name], lw=2.0 if name == 'global' else 1.2,
              ls='-' if name == 'global' else '--', marker='.', ms=3, label=name)
    ax.set_xlabel('step (grey: sync windows)')
    ax.set_ylabel(f'validation {what} accuracy (%)')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  return plots._save(fig, path)  # pylint: disable=protected-access


# ----------------------------------------------------------------------------
# Interpolation paths (`python -m generalist_jax.interpolate`), results.md.
# ----------------------------------------------------------------------------


def interpolations(study: Study, runs_dir: pathlib.Path, row: str) -> dict:
  """stem ('natural_ema_to_robust_ema_last') -> {seed: result} of the row's
  <workdir>/interpolation/*.json."""
  out = {}
  for run in runs_of(study, runs_dir, row):
    for path in sorted((run.path / 'interpolation').glob('*.json')):
      out.setdefault(path.stem, {})[run.seed] = json.loads(path.read_text())
  return out


def interpolation_table(row_label: str, stem: str, by_seed: dict) -> list[str]:
  """Clean and robust accuracy at every alpha, and the barriers, mean ± std over seeds."""
  first = next(iter(by_seed.values()))
  lines = [
      f"**{row_label}**, `{stem}` ({first['split']}, {first['n']} images; seeds "
      f"{', '.join(sorted(by_seed))})", '',
      f"| alpha ({first['a']} -> {first['b']}) | clean | robust |", '|---|---|---|'
  ]
  for k, alpha in enumerate(first['alpha']):
    lines.append(f'| {alpha:.2f} | ' + ' | '.join(
        fmt(mean_std([r[key][k]
                      for r in by_seed.values()
                      if len(r[key]) > k]))
        for key in ('clean_acc', 'robust_acc')) + ' |')
  lines.append('| barrier | ' + ' | '.join(
      fmt(mean_std([r['barrier'][key]
                    for r in by_seed.values()]))
      for key in ('clean_acc', 'robust_acc')) + ' |')
  return lines + ['']


def copy_interpolation_plots(run: pathlib.Path, out: pathlib.Path, name: str) -> None:
  """<run>/interpolation/*.png and their JSON as out/interpolation_<name>_<file>."""
  for png in (run / 'interpolation').glob('*.png') if run.exists() else ():
    shutil.copy(png, out / f'interpolation_{name}_{png.name}')
    shutil.copy(png.with_suffix('.json'), out / f'interpolation_{name}_{png.stem}.json')


def splice(text: str, name: str, lines: list[str]) -> str:
  """`text` with the lines between `<!-- begin NAME -->` and `<!-- end NAME -->`
  replaced by `lines`; unchanged when the markers are absent."""
  begin, end = f'<!-- begin {name} -->', f'<!-- end {name} -->'
  if begin not in text or end not in text:
    return text
  head, rest = text.split(begin, 1)
  return head + begin + '\n' + '\n'.join(lines) + '\n' + end + rest.split(end, 1)[1]


def splice_file(path: pathlib.Path, blocks: dict) -> None:
  """Splices every {name: lines} into the file, if it exists."""
  if path.exists():
    text = path.read_text()
    for name, lines in blocks.items():
      text = splice(text, name, lines)
    path.write_text(text)
