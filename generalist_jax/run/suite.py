"""A suite: several runs of one comparison, trained one after another in sub-workdirs,
evaluated with the same attacks, and compared in one table (and one report).

A suite config is a ConfigDict with two fields (see configs/demo.py;
`config.compare_config` builds the second):

  runs      name -> an ordinary run config (trained by `loop.train_and_evaluate`
            in <workdir>/<name>, so each is validated, resumable and plotted as usual)
  compare   how every run is evaluated and where the table goes:
              name        the table is <workdir>/<name>_table.{md,json}
              order       run names in table order (ConfigDict keys come sorted)
              checkpoint  'best' (on validation) or 'last'
              attacks     evaluate's --attacks (e.g. 'pgd,apgd-ce')
              norms, eps  one eps per norm; several norms add a union column
              steps       iterations of every attack (evaluate's --steps)
              n_ex, batch_size

The learner evaluated in a run is the one its `eval.best_metric` selects on
(e.g. 'global' for Generalist, the single expert for a baseline).
Starting the same command again resumes: finished runs and evaluations are read
back, not redone.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import time

from generalist_jax.attacks import registry
from generalist_jax.attacks import threat
from generalist_jax.config import validation as config_validation
from generalist_jax.config.schema import ConfigError
from generalist_jax.evaluation import compare as compare_runs
from generalist_jax.evaluation import plots
from generalist_jax.evaluation import runner
from generalist_jax.evaluation import tables
from generalist_jax.run import evaluate_run
from generalist_jax.run import loop
from generalist_jax.run import workdir_lock


def is_suite(config) -> bool:
  """Whether a config is a suite.

  Args:
    config: a loaded config.

  Returns:
    True for a config with `runs` (a suite), False for one run.
  """
  return 'runs' in config


def evaluated_learner(run_config) -> str:
  """The learner a run selects its checkpoints for.

  Args:
    run_config: one run's config.

  Returns:
    The prefix of its `eval.best_metric` ('global' of 'global/robust_acc').
  """
  return run_config.eval.best_metric.split('/')[0]


def run_names(config) -> list[str]:
  """The suite's runs in table order.

  Args:
    config: the suite config.

  Returns:
    Run names: `compare.order` first, then any other run in sorted order.
  """
  names = list(config.runs.keys())
  return [n for n in config.compare.order if n in names
         ] + [n for n in names if n not in config.compare.order]


def _check(config) -> None:
  c = config.compare
  if len(config.runs) < 1:
    raise ConfigError('config.runs: define at least one run.')
  unknown = [n for n in c.order if n not in config.runs]
  if unknown:
    raise ConfigError(f'config.compare.order: {unknown} are not in config.runs '
                      f'{sorted(config.runs.keys())}.')
  if len(c.norms) != len(c.eps):
    raise ConfigError(
        f'config.compare.eps: needs one eps per norm {tuple(c.norms)}, got {tuple(c.eps)}.')
  for norm, eps in zip(c.norms, c.eps):
    problem = threat.eps_problem(norm, float(eps), 1) if norm == 'linf' else None
    if problem:
      raise ConfigError(f'config.compare.eps: {problem}')
  if c.checkpoint not in ('best', 'last'):
    raise ConfigError(f"config.compare.checkpoint: {c.checkpoint!r}; use 'best' or 'last'.")
  for field in ('n_ex', 'batch_size', 'steps'):  # now, not after every run has trained
    try:
      registry.check_positive({field: c[field]})
    except ValueError as e:
      raise ConfigError(f'config.compare.{e}') from None
  try:  # an unknown attack must fail now, not after every run has trained
    runner.make_plan(list(c.norms), list(c.eps), c.attacks, {'steps': c.steps})
  except ValueError as e:
    raise ConfigError(f'config.compare.attacks / norms: {e}') from None
  for name in config.runs.keys():  # every run is checked before any trains
    try:
      config_validation.validate_config(config.runs[name])
    except ConfigError as e:
      raise ConfigError(str(e).replace('config.', f'config.runs.{name}.', 1)) from None


def _share_compiles(cache_dir: pathlib.Path) -> None:
  """XLA's persistent cache, unless one is set: the runs of a suite compile the same
  evaluation functions (same model and attack), and on CPU compiling dominates small runs."""
  import jax
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update('jax_compilation_cache_dir', str(cache_dir))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


@contextlib.contextmanager
def _quiet_absl():
  from absl import logging as absl_logging
  before = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    yield
  finally:
    absl_logging.set_verbosity(before)


def evaluate(run_dir: pathlib.Path, run_config, compare) -> dict:
  """Evaluates one run of the suite as `compare` says (`evaluate_run.evaluate_run`).

  Args:
    run_dir: the run's sub-workdir.
    run_config: its run config (the learner is `evaluated_learner`'s).
    compare: the suite's `compare` config.

  Returns:
    `evaluate_run.evaluate_run`'s return value; the report is also written to
    <run_dir>/eval/<compare.name>.json, which the suite reads back.
  """
  return evaluate_run.evaluate_run(run_dir, checkpoint=compare.checkpoint,
                                   learner=evaluated_learner(run_config), attacks=compare.attacks,
                                   norms=tuple(compare.norms), eps=tuple(compare.eps),
                                   n_ex=compare.n_ex, batch_size=compare.batch_size,
                                   name=compare.name, overrides={'steps': compare.steps},
                                   progress=False, command=f'suite compare {compare.name}')


def table_rows(reports: dict, seconds: dict) -> tuple[list[str], list[list]]:
  """(header, rows) of the comparison: accuracies in %, one row per run.

  Args:
    reports: run name -> its evaluation report, in table order; the first one's
      attack and worst-case columns make the header.
    seconds: run name -> seconds to train and test it in this invocation.

  Returns:
    (header, rows): column names, and one list of cells per run.
  """
  first = next(iter(reports.values()))
  attack_cols = plots.attack_columns(first)
  worst_cols = plots.worst_columns(first)
  header = (['run', 'learner', 'step', 'clean'] + [f'after {c}' for c in attack_cols] +
            [f'worst {c}' for c in worst_cols] + ['run s'])
  rows = []
  for name, r in reports.items():
    rows.append([name, r['learner'], r['step'], 100 * r['clean_acc']] +
                [100 * r['attacks'][c]['robust_acc_after'] for c in attack_cols] +
                [100 * r['worst_case'][c] for c in worst_cols] + [seconds.get(name)])
  return header, rows


def format_table(header, rows) -> str:
  """A Markdown table, floats with one decimal.

  Args:
    header, rows: as `table_rows` returns them.

  Returns:
    The table's lines, joined by newlines.
  """
  return '\n'.join(tables.markdown_table(header, rows, fmt=tables.cell))


def describe(compare, n_ex: int) -> str:
  """One line saying what the table's numbers are.

  Args:
    compare: the suite's `compare` config.
    n_ex: the test images actually evaluated.

  Returns:
    The line.
  """
  threat = ', '.join(f'{n} eps={e:.4g}' for n, e in zip(compare.norms, compare.eps))
  return (f"Test accuracy (%) on {n_ex} test images, checkpoint '{compare.checkpoint}' "
          f'(on validation), attacks {compare.attacks} with {compare.steps} steps each, '
          f'{threat}. "after X": robust accuracy after the attacks up to X (each runs on the '
          'examples the earlier ones missed); "worst": per-example worst case; "run s": '
          'seconds to train and test the run in this invocation (a finished run started again '
          'is only re-tested).')


def run_suite(config, workdir: str, *, start_over: bool = False) -> dict:
  """Trains and evaluates every run of the suite, writes and prints the comparison.
  A suite workdir another suite is using is refused before anything is written
  (`workdir_lock`); each run also locks its own sub-workdir.

  Writes <workdir>/<compare.name>_table.{md,json}, plots/<compare.name>_comparison.png
  and report.md.

  Args:
    config: the suite config (`runs`, `compare`).
    workdir: the suite's directory (created).
    start_over: passed to every run (`loop.train_and_evaluate`).

  Returns:
    {'header', 'rows'} of the table.

  Raises:
    ConfigError: a bad `compare` field or run config, before anything trains.
    WorkdirLockedError: another process holds the suite's workdir.
  """
  _check(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  with workdir_lock.hold(workdir):
    return _run_suite(config, workdir, start_over)


def _run_suite(config, workdir: pathlib.Path, start_over: bool) -> dict:
  _share_compiles(workdir / 'xla_cache')
  compare = config.compare
  reports, seconds = {}, {}
  for name in run_names(config):
    run_dir = workdir / name
    eval_json = run_dir / 'eval' / f'{compare.name}.json'
    started = time.perf_counter()
    print(f'== {name}: training in {run_dir}', flush=True)
    loop.train_and_evaluate(config.runs[name], str(run_dir), start_over=start_over)
    seconds[name] = time.perf_counter() - started
    if not eval_json.exists():
      with _quiet_absl():  # orbax warns at length about read-only restores
        evaluate(run_dir, config.runs[name], compare)
    reports[name] = json.loads(eval_json.read_text())
  header, rows = table_rows(reports, seconds)
  description = describe(compare, next(iter(reports.values()))['n_ex'])
  text = description + '\n\n' + format_table(header, rows) + '\n'
  stem = workdir / f'{compare.name}_table'
  stem.with_suffix('.md').write_text(text)
  stem.with_suffix('.json').write_text(
      json.dumps({'description': description, 'header': header, 'rows': rows, 'reports': reports},
                 indent=2, sort_keys=True))
  plots.safely(plots.comparison_plot, reports, workdir / 'plots' / f'{compare.name}_comparison.png')
  compare_runs.write_report([workdir / n for n in run_names(config)], workdir / 'report.md')
  print('\n' + text + f'\n-> {stem}.md, {workdir / "report.md"}')
  return {'header': header, 'rows': rows}
