"""PNG plots of a run (matplotlib, Agg backend: no display needed).

From a run's `metrics.jsonl` (`training_plots`; during training `training_plots_every`):
  plots/tradeoff.png    validation clean vs robust accuracy of every learner, one
                        line per learner through the epochs (the trade-off path)
  plots/schedules.png   learning rate and mixing weight of every expert per epoch
From an evaluation report of `generalist_jax.evaluate` (`eval_plots`):
  plots/eval_<name>_attacks.png  robust accuracy after each attack, per norm
  plots/eval_<name>_norms.png    worst case per norm and their union (several norms)

Plotting must never stop a run: the hooks in the training loop and evaluation go
through `safely`, which logs a warning instead of raising. Every `*_plot` function
writes the PNG `path` (its folder created) and returns it; None where it draws nothing.
"""
from __future__ import annotations

import json
import logging
import math
import pathlib
import time


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def safely(fn, *args, **kwargs):
  """fn(*args, **kwargs), or None with a logged warning if it raises."""
  try:
    return fn(*args, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('plotting failed (%s: %s); the run goes on', type(e).__name__, e)
    return None


def read_metrics(workdir) -> list[dict]:
  """The records of `<workdir>/metrics.jsonl` (missing file: []), one dict a line."""
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def validation_series(records: list[dict]) -> dict:
  """learner -> {'epoch': [...], 'clean': [...], 'robust': [...]} in %, in step order.

  Validation records carry no epoch; the training record logged at the same step
  (every validation falls on an epoch end, which is always logged) gives it (NaN
  where none was).

  Args:
    records: `read_metrics`' records; 'val/<learner>/clean_acc' and
      'val/<learner>/robust_acc' (or the older 'pgd_acc') are read.
  """
  epoch_at = {r['step']: r['epoch'] for r in records if 'epoch' in r}
  series = {}
  for r in records:
    for key, value in r.items():
      parts = key.split('/')
      if len(parts) != 3 or parts[0] != 'val' or parts[2] != 'clean_acc':
        continue
      # robust_acc; older runs wrote pgd_acc
      robust = r.get(f'val/{parts[1]}/robust_acc', r.get(f'val/{parts[1]}/pgd_acc'))
      if value is None or robust is None:
        continue
      s = series.setdefault(parts[1], {'epoch': [], 'clean': [], 'robust': []})
      s['epoch'].append(epoch_at.get(r['step'], float('nan')))
      s['clean'].append(100 * value)
      s['robust'].append(100 * robust)
  return series


def schedule_series(records: list[dict], what: str) -> dict:
  """expert -> (epochs, values) of `schedule/<expert>/<what>` (lr or mix_weight),
  from the `records` (`read_metrics`) that carry an epoch."""
  out = {}
  for r in records:
    for key, value in r.items():
      parts = key.split('/')
      if len(parts) == 3 and parts[0] == 'schedule' and parts[2] == what and 'epoch' in r:
        epochs, values = out.setdefault(parts[1], ([], []))
        epochs.append(r['epoch'])
        values.append(value)
  return out


NORM_ORDER = ('linf', 'l2', 'l1')


def attack_columns(report: dict) -> list[str]:
  """The attack columns ('<norm>/<attack>') of an evaluate report (its 'attacks')
  in the order they ran.

  The JSON file sorts keys, so the order is rebuilt: norms as NORM_ORDER, and within
  a norm by decreasing 'robust accuracy after', which can only fall along the sequence
  (equal values: the order among them does not change any number).
  """

  def key(column):
    norm = column.split('/')[0]
    rank = NORM_ORDER.index(norm) if norm in NORM_ORDER else len(NORM_ORDER)
    return rank, norm, -report['attacks'][column]['robust_acc_after']

  return sorted(report['attacks'], key=key)


def worst_columns(report: dict) -> list[str]:
  """Per-norm worst-case keys of an evaluate report's 'worst_case', as NORM_ORDER,
  'union' last."""
  norms = sorted((k for k in report['worst_case'] if k != 'union'), key=lambda n:
                 (NORM_ORDER.index(n) if n in NORM_ORDER else 9, n))
  return norms + (['union'] if 'union' in report['worst_case'] else [])


def _read_config(workdir) -> dict:
  path = pathlib.Path(workdir) / 'config.json'
  return json.loads(path.read_text()) if path.exists() else {}


def _attack_label(attack: dict) -> str:
  if not attack:
    return 'PGD'
  return f"{attack['norm']} PGD-{attack['steps']}, eps={attack['eps']:.3g}"


def _learner_colors(names):
  """The global learner black, experts from the tab10 cycle (stable per name order)."""
  palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#8c564b', '#e377c2']
  colors, k = {}, 0
  for n in names:
    if n == 'global':
      colors[n] = 'black'
    else:
      colors[n] = palette[k % len(palette)]
      k += 1
  return colors


def tradeoff_plot(series: dict, path, title: str, attack_label: str) -> pathlib.Path:
  """Clean (x) vs robust (y) validation accuracy, one line per learner, epochs marked.

  Args:
    series: `validation_series`' output (not empty).
    path, title: the PNG to write; its title.
    attack_label: the validation attack, for the y label.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
  colors = _learner_colors(series)
  for name, s in series.items():
    style = dict(color=colors[name], lw=2.2 if name == 'global' else 1.4,
                 ls='-' if name == 'global' else '--', zorder=3 if name == 'global' else 2)
    ax.plot(s['clean'], s['robust'], marker='o', ms=3.5, label=name, **style)
    # First and last epoch as marker shapes, not text labels (those collide).
    ax.plot(s['clean'][:1], s['robust'][:1], marker='s', ms=8, mfc='white', color=colors[name],
            ls='none', zorder=4)
    ax.plot(s['clean'][-1:], s['robust'][-1:], marker='*', ms=13, color=colors[name], ls='none',
            zorder=4)
  epochs = next(iter(series.values()))['epoch']
  xs = [v for s in series.values() for v in s['clean']]
  ys = [v for s in series.values() for v in s['robust']]
  # Zoom on the paths (a full 0-100 square squeezes them into a corner), within [0, 100].
  # (limits a hair outside [0, 100] keep points at 0% or 100% visible, with no tick there)
  ax.set_xlim(max(-1.5, min(xs) - 4), min(101.5, max(xs) + 4))
  ax.set_ylim(max(-1.5, min(ys) - 6), min(101.5, max(ys) + 8))
  ax.set_xlabel('validation clean accuracy (%)')
  ax.set_ylabel(f'validation robust accuracy (%)\n({attack_label})')
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  legend = f'learner (o: each epoch; square: epoch {epochs[0]:g},\nstar: epoch {epochs[-1]:g})'
  ax.legend(title=legend, fontsize=8, title_fontsize=8, loc='best')
  return _save(fig, path)


def schedules_plot(records: list[dict], path, title: str) -> pathlib.Path | None:
  """Learning rate (log scale when all positive) and mixing weight of every expert
  against the epoch, sync steps marked.

  Args:
    records: `read_metrics`' records; None is returned when none has a schedule.
    path, title: the PNG to write; its title.
  """
  lr, mix = schedule_series(records, 'lr'), schedule_series(records, 'mix_weight')
  if not lr and not mix:
    return None
  plt = _pyplot()
  fig, (ax_lr, ax_mix) = plt.subplots(2, 1, figsize=(6.4, 5.2), dpi=110, sharex=True)
  colors = _learner_colors(list(lr) or list(mix))
  # Dashes of different lengths: equal schedules (a common case) stay visible.
  dashes = [(None, None), (6, 3), (2, 2), (8, 2, 2, 2)]
  for k, (name, (epochs, values)) in enumerate(lr.items()):
    ax_lr.plot(epochs, values, color=colors[name], label=name, dashes=dashes[k % 4] if k else
               (None, None), lw=1.8)
  for k, (name, (epochs, values)) in enumerate(mix.items()):
    ax_mix.plot(epochs, values, color=colors[name], label=name, lw=1.8)
  if any(v > 0 for v in (r.get('schedule/sync') or 0 for r in records)):
    synced = [r['epoch'] for r in records if (r.get('schedule/sync') or 0) > 0 and 'epoch' in r]
    ax_mix.plot(synced, [1.04] * len(synced), '|', color='0.3', ms=8,
                label='sync (global -> experts)')
  if lr and all(v > 0 for _, vs in lr.values() for v in vs):
    ax_lr.set_yscale('log')
  ax_lr.set_ylabel('learning rate\n(mean per log interval)')
  ax_mix.set_ylabel('mixing weight')
  ax_mix.set_ylim(-0.05, 1.12)
  ax_mix.set_xlabel('epoch')
  ax_lr.set_title(title, fontsize=10)
  for ax in (ax_lr, ax_mix):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='best')
  return _save(fig, path)


def training_plots(workdir) -> list[pathlib.Path]:
  """Writes <workdir>/plots/{tradeoff,schedules}.png from metrics.jsonl (and
  config.json's eval.val_attack for the label); returns the paths written."""
  workdir = pathlib.Path(workdir)
  records = read_metrics(workdir)
  config = _read_config(workdir)
  label = _attack_label(config.get('eval', {}).get('val_attack'))
  out = []
  series = validation_series(records)
  if series:
    out.append(
        tradeoff_plot(series, workdir / 'plots' / 'tradeoff.png',
                      f'Trade-off path on validation: {workdir.name}', label))
  path = schedules_plot(records, workdir / 'plots' / 'schedules.png', f'Schedules: {workdir.name}')
  return out + ([path] if path else [])


_LAST_DRAWN = {}  # workdir -> time.monotonic() of its last training_plots


def training_plots_every(workdir, *, final: bool, min_seconds: float = 60.0):
  """`training_plots` at most every `min_seconds` per workdir, and always when `final`.

  A redraw costs CPU time (experiments/benchmarks/README.md, History); at every
  validation of a small run that would be a large share of the run.

  Args:
    workdir: the run directory.
    final: draw whatever the time since the last drawing.
    min_seconds: the least time between drawings of one workdir, this process.

  Returns:
    The paths written; [] when skipped.
  """
  now = time.monotonic()
  if not final and now - _LAST_DRAWN.get(str(workdir), -math.inf) < min_seconds:
    return []
  _LAST_DRAWN[str(workdir)] = now
  return training_plots(workdir)


def _bars(ax, labels, values, colors, ylabel):
  bars = ax.bar(range(len(values)), values, color=colors)
  ax.set_xticks(range(len(values)), labels, rotation=20, ha='right', fontsize=8)
  for b, v in zip(bars, values):
    ax.annotate(f'{v:.1f}', (b.get_x() + b.get_width() / 2, v), textcoords='offset points',
                xytext=(0, 2), ha='center', fontsize=8)
  ax.set_ylim(0, 105)
  ax.set_ylabel(ylabel)
  ax.grid(axis='y', alpha=0.3)


def _eval_title(report: dict) -> str:
  return (f"{pathlib.Path(report.get('workdir', '')).name}: learner {report.get('learner')}, "
          f"checkpoint {report.get('checkpoint')} (step {report.get('step')}), "
          f"{report.get('n_ex')} test images")


def attack_bars_plot(report: dict, path) -> pathlib.Path:
  """Clean accuracy, then robust accuracy after each attack (cumulative), per norm,
  of an evaluate `report` (its .json) -> `path`."""
  plt = _pyplot()
  labels, values, colors = ['clean'], [100 * report['clean_acc']], ['0.6']
  palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd']
  columns = attack_columns(report)
  norms = list(dict.fromkeys(c.split('/')[0] for c in columns))
  for column in columns:
    a = report['attacks'][column]
    norm, name = column.split('/')
    eps = a['settings'].get('eps')
    labels.append(f'{name}\n{norm} eps={eps:.3g}')
    values.append(100 * a['robust_acc_after'])
    colors.append(palette[norms.index(norm) % len(palette)])
  fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.9 * len(values)), 4.2), dpi=110)
  _bars(ax, labels, values, colors, 'test accuracy (%)')
  ax.set_title(
      _eval_title(report) + '\nbar: accuracy after this attack and the ones left '
      'of it (same norm)', fontsize=8)
  return _save(fig, path)


def norm_bars_plot(report: dict, path) -> pathlib.Path | None:
  """Worst case per norm and the union over norms of an evaluate `report` -> `path`;
  None with a single norm."""
  worst = report['worst_case']
  if 'union' not in worst:
    return None
  plt = _pyplot()
  eps = {c.split('/')[0]: a['settings'].get('eps') for c, a in report['attacks'].items()}
  norms = [n for n in worst_columns(report) if n != 'union']
  labels = ['clean'] + [f'{n}\neps={eps.get(n, float("nan")):.3g}' for n in norms
                       ] + ['union\n(all norms)']
  values = [100 * report['clean_acc']] + [100 * worst[n] for n in norms] + [100 * worst['union']]
  colors = ['0.6'] + ['#1f77b4'] * (len(values) - 2) + ['black']
  fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(values)), 4.2), dpi=110)
  _bars(ax, labels, values, colors, 'robust test accuracy, worst case (%)')
  ax.set_title(
      _eval_title(report) + '\nper-norm worst case over its attacks; union: robust '
      'to every norm at once', fontsize=8)
  return _save(fig, path)


def eval_plots(report: dict, plot_dir, name: str) -> list[pathlib.Path]:
  """Writes <plot_dir>/eval_<name>_attacks.png (and _norms.png with several norms)
  of an evaluate `report`; returns the paths written."""
  plot_dir = pathlib.Path(plot_dir)
  attacks_png = attack_bars_plot(report, plot_dir / f'eval_{name}_attacks.png')
  paths = [attacks_png, norm_bars_plot(report, plot_dir / f'eval_{name}_norms.png')]
  return [p for p in paths if p is not None]


def comparison_plot(reports: dict, path) -> pathlib.Path:
  """Grouped bars: clean and per-norm worst-case test accuracy of several runs.

  Args:
    reports: run name -> its evaluate report; the first one's columns, attacks
      and checkpoint label the plot.
    path: the PNG to write.
  """
  plt = _pyplot()
  import numpy as np  # pylint: disable=g-import-not-at-top
  first = next(iter(reports.values()))
  columns = ['clean'] + worst_columns(first)
  width = 0.8 / len(columns)
  fig, ax = plt.subplots(figsize=(max(5.5, 2.2 * len(reports)), 4.2), dpi=110)
  cmap = plt.get_cmap('tab10')
  for k, column in enumerate(columns):
    values = [
        100 * (r['clean_acc'] if column == 'clean' else r['worst_case'][column])
        for r in reports.values()
    ]
    xs = np.arange(len(reports)) + (k - (len(columns) - 1) / 2) * width
    label = {'clean': 'clean', 'union': 'union (all norms)'}.get(column, f'worst {column}')
    bars = ax.bar(xs, values, width, label=label, color='0.6' if column == 'clean' else cmap(k))
    for b, v in zip(bars, values):
      ax.annotate(f'{v:.1f}', (b.get_x() + b.get_width() / 2, v), textcoords='offset points',
                  xytext=(0, 2), ha='center', fontsize=6.5)
  ax.set_xticks(range(len(reports)), [f"{n}\n({r['learner']})" for n, r in reports.items()],
                fontsize=9)
  ax.set_ylim(0, 109)
  ax.set_ylabel('test accuracy (%)')
  ax.legend(fontsize=8, ncol=len(columns), loc='upper center')
  ax.grid(axis='y', alpha=0.3)
  columns = attack_columns(first)
  eps = {c.split('/')[0]: first['attacks'][c]['settings'].get('eps') for c in columns}
  names = ', '.join(dict.fromkeys(c.split('/')[1] for c in columns))
  ax.set_title(
      f"{first['n_ex']} test images, checkpoint {first['checkpoint']}; worst case "
      f'over {names}; ' + ', '.join(f'{n} eps={e:.3g}' for n, e in eps.items()), fontsize=9)
  return _save(fig, path)


def interpolation_plot(result: dict, path) -> pathlib.Path:
  """Clean and robust accuracy against alpha on the path from learner a to b.

  Args:
    result: `run.interpolate.interpolate`'s result (alpha, clean_acc, robust_acc,
      a, b, split, n, workdir, checkpoint, step, attack).
    path: the PNG to write.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=110)
  alpha = result['alpha']
  ax.plot(alpha, [100 * v for v in result['clean_acc']], 'o-', color='0.4', label='clean')
  ax.plot(alpha, [100 * v for v in result['robust_acc']], 's-', color='#d62728',
          label=_attack_label(result.get('attack')))
  ax.set_xlabel(f"alpha: (1 - alpha) {result['a']} + alpha {result['b']}")
  ax.set_ylabel(f"{result['split']} accuracy (%), {result['n']} images")
  ax.set_title(
      f"{pathlib.Path(result['workdir']).name}, checkpoint {result['checkpoint']} "
      f"(step {result['step']})", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)


def _save(fig, path) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  plt.close(fig)
  return path
