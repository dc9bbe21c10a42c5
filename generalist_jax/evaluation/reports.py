"""An evaluation's files: `<stem>.json` (numbers, settings, versions, sanity
checks), `<stem>.csv` (per-example flags and worst cases), `<stem>.md` (one
table), and the resumable flag state `<stem>.state.npz` written after every batch.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import platform

import jax
import numpy as np

from generalist_jax.evaluation import summary as summary_lib
from generalist_jax.evaluation import tables


def library_versions() -> dict:
  """The versions behind a result: python, jax, jaxlib, flax, optax,
  orbax_checkpoint, numpy, the JAX backend ('cpu', 'gpu', ...) and the devices and
  processes the attacks were split over."""
  import flax
  import optax
  import orbax.checkpoint
  return {
      'python': platform.python_version(), 'jax': jax.__version__,
      'jaxlib': importlib.metadata.version('jaxlib'), 'flax': flax.__version__,
      'optax': optax.__version__, 'orbax_checkpoint': orbax.checkpoint.__version__,
      'numpy': np.__version__, 'backend': jax.default_backend(), 'devices': jax.device_count(),
      'processes': jax.process_count()
  }


def write_reports(stem: pathlib.Path, state, plan, labels, meta: dict) -> dict:
  """Writes <stem>.json, .csv and .md of a finished evaluation.

  Args:
    stem: the files' path without suffix (its folder is created).
    state: the finished flag state (`runner.new_state`'s columns, complete).
    plan: the evaluation's `runner.AttackSpec`s.
    labels: [N] int, written to the csv.
    meta: the report's fields besides the summary; the .md reads name, workdir,
      checkpoint, step, learner, seed, sanity and versions (and subset,
      test_split_size, missing_components where given).

  Returns:
    The report: `meta` updated with `summary.summarize`'s summary.
  """
  summary, worst, union = summary_lib.summarize(state, plan)
  report = dict(meta, **summary)
  stem.parent.mkdir(parents=True, exist_ok=True)
  stem.with_suffix('.json').write_text(json.dumps(report, indent=2))

  columns = ['clean'] + [s.column for s in plan]
  lines = ['index,label,' + ','.join(columns + [f'worst/{n}' for n in worst] + ['worst/all'])]
  for i in range(len(labels)):
    values = [int(state[c][i]) for c in columns] + [int(w[i]) for w in worst.values()]
    lines.append(f'{i},{int(labels[i])},' + ','.join(map(str, values + [int(union[i])])))
  stem.with_suffix('.csv').write_text('\n'.join(lines) + '\n')

  header = ['clean'] + [s.column for s in plan] + [f'worst {n}' for n in worst]
  values = [summary['clean_acc']] + [
      summary['attacks'][s.column]['robust_acc_after'] for s in plan
  ] + list(summary['worst_case'][n] for n in worst)
  if len(worst) > 1:
    header.append('worst (union)')
    values.append(summary['robust_acc'])
  chosen = 'the first ones' if meta.get('subset') == 'first' else 'a fixed random subset'
  md = [
      f"# {meta['name']}: {meta['workdir']}", '',
      f"Checkpoint `{meta['checkpoint']}` (step {meta['step']}), learner "
      f"`{meta['learner']}`, {summary['n_ex']} of the {meta.get('test_split_size', '?')} "
      f"TEST examples ({chosen}), seed {meta['seed']}.",
      'Attack columns: robust accuracy after that attack (attacks run in order, each on '
      'the examples all earlier ones of its norm missed); worst = per-example AND.', '',
      *tables.markdown_table(header, [values], fmt=tables.percent), '', '## Attacks', ''
  ]
  for s in plan:
    md.append(f'- `{s.column}`: ' + ', '.join(f'{k}={v}' for k, v in s.settings().items()))
  if meta.get('missing_components'):
    md.append(f"- not implemented, so not run: {meta['missing_components']}")
  md += ['', '## Sanity checks', '']
  md += [f'- {k}: {v}' for k, v in meta['sanity'].items() if k != 'warnings']
  md += [f'- WARNING: {w}' for w in meta['sanity']['warnings']]
  md += ['', '## Versions', '', '- ' + ', '.join(f'{k} {v}' for k, v in meta['versions'].items())]
  stem.with_suffix('.md').write_text('\n'.join(md) + '\n')
  return report


# ----------------------------------------------------------------------------
# Resumable state on disk.
# ----------------------------------------------------------------------------


def save_state(path: pathlib.Path, state: dict, settings: dict) -> None:
  """Saves the flag state and the settings it belongs to as one .npz, atomically.

  Args:
    path: the state file.
    state: column -> numpy array ('/' in names is stored as '__').
    settings: JSON-able; `load_state` refuses the file under other settings.
  """
  tmp = path.with_name(path.name + '.tmp.npz')
  arrays = {k.replace('/', '__'): v for k, v in state.items()}
  np.savez(tmp, settings=np.array(json.dumps(settings, sort_keys=True)), **arrays)
  os.replace(tmp, path)  # atomic: a kill leaves the old or the new state


def load_state(path: pathlib.Path, settings: dict) -> dict | None:
  """The state `save_state` wrote, to resume from.

  Args:
    path: the state file.
    settings: the current evaluation's settings.

  Returns:
    column -> numpy array, or None when there is no file.

  Raises:
    ValueError: the file was saved under other settings.
  """
  if not path.exists():
    return None
  with np.load(path) as f:
    saved = json.loads(str(f['settings']))
    if saved != json.loads(json.dumps(settings, sort_keys=True)):
      raise ValueError(f'{path} holds an evaluation with other settings:\n  saved:   '
                       f'{saved}\n  current: {settings}\nuse another --name (or delete it).')
    return {k.replace('__', '/'): f[k].copy() for k in f.files if k != 'settings'}
