"""experiments/reference_clock_cifar10_cpu/{evaluate,collect}.py (on experiments/
study_tables.py) end to end, on a fake study of tiny runs with run.sh's layout: per seed
a Generalist trunk, a no-sync fork and a beta = 1 fork (RUNS/s<seed>/<row>), 20 steps.

Checked: every result file is there, once (a second evaluate.py evaluates nothing); the
`fast` images are the same for every row and seed; a fork's selected step before the
fork is evaluated in its source; the selected step is the argmax of the `val/` records;
the tables' numbers are the per-run JSON values; the paired differences and their SE
equal a hand computation; the window table, segment times and interpolation are there.
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys

import jax
import pytest

from generalist_jax.run import interpolate
from generalist_jax.run import loop
from tests.conftest import write_tiny_npz
from tests.tiny_config import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / 'experiments' / 'reference_clock_cifar10_cpu'
SEEDS = (0, 1)
EPOCHS, TOTAL = 4, 20  # 5 steps an epoch with the tiny npz
NOSYNC_AT, BETA1_AT = 10, 15  # run.sh's fork points, scaled
N_TEST, N_FAST = 16, 8  # all 16 tiny test images; a fixed 8 of them
BORROWED = 5  # s0/nosync's robust_ema is made to select this prefix step
# What the tables below check (evaluate.py --learners; each evaluation restores its run,
# about 1 s of CPU): Generalist's global learner and robust EMA, PGD-AT's EMA, the
# beta = 1 control.
LEARNERS = 'global,robust_ema'
ARGS = [f'--total_steps={TOTAL}', f'--n_test={N_TEST}', f'--n_fast={N_FAST}']


def _config(npz, seed, source=None, step=None):
  c = tiny_config(npz, EPOCHS)
  c.seed = seed
  c.eval.final_test = False
  c.checkpoint.every_steps = 0  # every epoch, all kept: run.sh's keep=200
  c.checkpoint.keep = 100
  c.meta.sync.start_epoch = 2  # windows of one step at 11, 15, 19: the no-sync row
  c.meta.sync.every_steps = 4  # forks before the first, as in run.sh
  if source is not None:
    c.init_from.workdir, c.init_from.step = str(source), step
  return c


def _train_seed(npz, d: pathlib.Path, seed: int) -> None:
  """run.sh's rows: the trunk, then its forks from its kept epoch checkpoints (run.sh
  forks before the trunk moves on only so that rotation cannot drop the step)."""
  loop.train_and_evaluate(_config(npz, seed), str(d / 'generalist'))
  nosync = _config(npz, seed, d / 'generalist', NOSYNC_AT)
  nosync.meta.sync.kind = 'never'
  loop.train_and_evaluate(nosync, str(d / 'nosync'))
  beta1 = _config(npz, seed, d / 'generalist', BETA1_AT)
  beta1.experts.robust.mix_values = (1.0,) * 4
  beta1.experts.natural.mix_values = (0.0,) * 4
  loop.train_and_evaluate(beta1, str(d / 'beta1'))
  if seed == 0:
    interpolate.interpolate(d / 'generalist', 'natural_ema', 'robust_ema', points=3, n_ex=N_TEST)


def _make_prefix_step_best(run: pathlib.Path, learner: str, step: int) -> None:
  """A fake validation value: the fork's best step lies in the shared prefix."""
  records = [json.loads(line) for line in (run / 'metrics.jsonl').read_text().splitlines()]
  for r in records:
    if r['step'] == step and f'val/{learner}/sum_acc' in r:
      r[f'val/{learner}/sum_acc'] = 2.0
  (run / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))


def _script(name, *args):
  # The session's XLA cache (conftest): the scripts reuse what training compiled.
  cache = jax.config.jax_compilation_cache_dir
  env = dict(os.environ)
  if cache:
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  out = subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout + out.stderr
  return out.stdout


@pytest.fixture(scope='module')
def study(tmp_path_factory):
  """(runs dir, collect.py's out dir, whether a second evaluate.py left every file)."""
  base = tmp_path_factory.mktemp('study')
  npz = write_tiny_npz(base / 'tiny.npz')
  runs = base / 'runs'
  times = []
  for seed in SEEDS:
    _train_seed(npz, runs / f's{seed}', seed)
    times += [{
        'seed': seed, 'segment': s, 'row': r, 'to': to, 'seconds': 60 * (k + 1) + seed,
        'load_end': '1.00 1.00 1.00', 'date': '2026-01-01T00:00:00Z'
    } for k, (s, r, to) in enumerate([('prefix', 'generalist',
                                       NOSYNC_AT), ('nosync', 'nosync',
                                                    'end'), ('nosync', 'nosync', 'end')])]
  (runs / 'times.jsonl').write_text(''.join(json.dumps(t) + '\n' for t in times))
  _make_prefix_step_best(runs / 's0' / 'nosync', 'robust_ema', BORROWED)
  _script('evaluate.py', runs, '--seeds=0,1', '--batch_size=8', f'--learners={LEARNERS}', *ARGS)
  before = _eval_files(runs)
  _script('evaluate.py', runs, '--seeds=0,1', f'--learners={LEARNERS}', *ARGS)
  resumed = before == _eval_files(runs)  # nothing evaluated or rewritten
  _script('collect.py', runs, f'--out={base / "out"}', *ARGS)
  return runs, base / 'out', resumed


def _eval_files(runs: pathlib.Path) -> dict:
  return {
      str(p): p.stat().st_mtime_ns
      for p in runs.glob('s*/*/eval/*')
      if not p.name.endswith('_selection.json')
  }


def _result(run, which, learner, attack):
  n = N_TEST if attack == 'pgd20' else N_FAST
  return json.loads((run / 'eval' / f'refclock_{which}_{learner}_{attack}_n{n}.json').read_text())


def test_every_result_once_on_fixed_images(study):
  runs, _, resumed = study
  sys.path.insert(0, str(SCRIPTS))
  from evaluate import LEARNERS as ROW_LEARNERS  # pylint: disable=g-import-not-at-top
  sys.path.remove(str(SCRIPTS))
  hashes = {'pgd20': set(), 'fast': set()}
  for seed in SEEDS:
    for row, learners in ROW_LEARNERS.items():
      for learner in learners:
        for which in ('last', 'selected'):
          for attack in hashes:
            if learner not in LEARNERS.split(','):  # --learners left it out
              with pytest.raises(FileNotFoundError):
                _result(runs / f's{seed}' / row, which, learner, attack)
              continue
            r = _result(runs / f's{seed}' / row, which, learner, attack)
            assert r['learner'] == learner
            assert r['n_ex'] == (N_TEST if attack == 'pgd20' else N_FAST)
            assert r['study_eval']['wall_seconds'] >= 0 and r['study_eval']['loadavg_end']
            hashes[attack].add(r['study_eval']['test_ids_sha1'])
  assert all(len(h) == 1 for h in hashes.values())  # the same images everywhere
  assert resumed  # a second evaluate.py evaluated nothing


def test_selected_is_the_best_val_step_and_borrows_the_prefix(study):
  runs, _, _ = study
  for seed in SEEDS:
    run = runs / f's{seed}' / 'generalist'
    records = [json.loads(line) for line in (run / 'metrics.jsonl').read_text().splitlines()]
    val = [r for r in records if 'val/global/sum_acc' in r]
    best = max(val, key=lambda r: r['val/global/sum_acc'])  # first of the ties
    assert _result(run, 'selected', 'global', 'pgd20')['step'] == best['step']
    assert _result(run, 'last', 'global', 'pgd20')['step'] == TOTAL
  fork, source = runs / 's0' / 'nosync', runs / 's0' / 'generalist'
  selection = json.loads((fork / 'eval' / 'refclock_selection.json').read_text())
  assert selection['robust_ema']['selected'] == str(BORROWED)
  assert selection['robust_ema']['selected_from'] == str(source)
  for attack in ('pgd20', 'fast'):
    mine = _result(fork, 'selected', 'robust_ema', attack)
    n = N_TEST if attack == 'pgd20' else N_FAST
    theirs = json.loads((source / 'eval' / f'refclock_step{BORROWED}_robust_ema_{attack}_n{n}'
                         '.json').read_text())
    assert mine['evaluated_in'] == str(source) and mine['step'] == BORROWED
    assert (mine['clean_acc'], mine['robust_acc']) == (theirs['clean_acc'], theirs['robust_acc'])


def _row(results, label):
  return next(e for e in results['rows'] if e['row'] == label)


def test_tables_hold_the_per_run_values(study):
  runs, out, _ = study
  results = json.loads((out / 'results.json').read_text())
  rows = {
      'Generalist (global)': ('generalist', 'global'), "PGD-AT's EMA (no-sync fork, robust_ema)":
          ('nosync', 'robust_ema'), 'Generalist robust EMA': ('generalist', 'robust_ema'),
      'beta = 1 control (global)': ('beta1', 'global')
  }
  md = (out / 'results.md').read_text()
  for label, (row, learner) in rows.items():
    entry = _row(results, label)
    cells = []
    for which in ('last', 'selected'):
      for column, attack, key in (('clean', 'pgd20', 'clean_acc'),
                                  ('PGD-20', 'pgd20', 'robust_acc'), ('APGD-CE+T', 'fast',
                                                                      'robust_acc')):
        values = {str(s): _result(runs / f's{s}' / row, which, learner, attack)[key] for s in SEEDS}
        assert entry[f'{which}/{column}'] == values
        v = [100 * x for x in values.values()]
        cells.append(f'{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f} (n=2)')
    assert f'| {label} | {learner} | 2 | ' + ' | '.join(cells) + ' | ' in md


def test_paired_differences_by_hand(study):
  runs, out, _ = study
  results = json.loads((out / 'results.json').read_text())
  md = (out / 'results.md').read_text()
  for reference, (row, learner) in (("PGD-AT's EMA (no-sync fork, robust_ema)",
                                     ('nosync', 'robust_ema')), ('beta = 1 control (global)',
                                                                 ('beta1', 'global'))):
    paired = next(p for p in results['paired'] if p['minus'] == reference)
    assert paired['row'] == 'Generalist (global)'
    cells = []
    for which in ('last', 'selected'):
      for column, attack, key in (('clean', 'pgd20', 'clean_acc'),
                                  ('PGD-20', 'pgd20', 'robust_acc'), ('APGD-CE+T', 'fast',
                                                                      'robust_acc')):
        d = [
            100 * (_result(runs / f's{s}' / 'generalist', which, 'global', attack)[key] -
                   _result(runs / f's{s}' / row, which, learner, attack)[key]) for s in SEEDS
        ]
        mean, se = (d[0] + d[1]) / 2, abs(d[0] - d[1]) / 2  # SE of a 2-seed mean
        got = paired['points'][f'{which}/{column}']
        assert got['per_seed'] == pytest.approx({str(s): x for s, x in zip(SEEDS, d)})
        assert got['mean'] == pytest.approx(mean) and got['se'] == pytest.approx(se)
        cells.append(f'{mean:+.2f} (SE {se:.2f}; {d[0]:+.1f}, {d[1]:+.1f})')
    assert '| Generalist (global) | ' + ' | '.join(cells) + ' |' in md


def test_windows_segments_interpolation_and_plots(study):
  runs, out, _ = study
  results = json.loads((out / 'results.json').read_text())
  for seed in SEEDS:
    records = [
        json.loads(line)
        for line in (runs / f's{seed}' / 'generalist' / 'metrics.jsonl').read_text().splitlines()
    ]
    pre = [r for r in records if 'presync/robust_ema/clean_acc' in r]
    mine = [w for w in results['windows'] if w['run'] == f's{seed}/generalist']
    assert len(mine) == len(pre) > 1
    assert [w['pre/robust_ema/clean_acc'] for w in mine
           ] == [r['presync/robust_ema/clean_acc'] for r in pre]
  first = [w['pre/natural_ema/clean_acc'] for w in results['windows'] if w['window'] == 1]
  md = (out / 'results.md').read_text()
  assert (f"| 1 | {results['windows'][0]['presync_step']} | "
          f'{100 * statistics.mean(first):.1f} ± {100 * statistics.stdev(first):.1f} (n=2)' in md)
  nosync = [s for s in results['segments'] if s['segment'] == 'nosync']
  assert [(s['seconds'], s['sittings']) for s in nosync] == [(120 + 180, 2), (121 + 181, 2)]
  assert results['interpolation']['generalist']['natural_ema_to_robust_ema_last'].keys() == {'0'}
  assert '| barrier | ' in md and '<!-- end interpolation -->' in md
  for png in ('windows.png', 'trajectory_s0.png', 'trajectory_s1.png',
              'interpolation_s0_generalist_natural_ema_to_robust_ema_last.png'):
    assert (out / png).stat().st_size > 0
