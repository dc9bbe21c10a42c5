r"""Tables and plots of the reference-clock study (issue 30), from its files.

  python experiments/reference_clock_cifar10_cpu/collect.py RUNS_DIR [--out=DIR] \
      [--n_test=10000] [--n_fast=2000] [--total_steps=45840]

Reads what evaluate.py wrote (<RUNS>/s<seed>/<row>/eval/refclock_*.json), the runs'
metrics.jsonl, <RUNS>/times.jsonl (run.sh) and any <workdir>/interpolation/*.json of
`python -m generalist_jax.interpolate`, and writes into DIR (default: this folder):
  results.json      every number below, per seed;
  results.md        the tables spliced between its `<!-- begin X -->` / `<!-- end X -->`
                    markers, X in table, paired, windows, segments, interpolation (the
                    protocol above them is prose; a bare skeleton when it is missing);
  windows.png       each expert's EMA just before every sync window, the global learner
                    just after it (validation, mean over seeds);
  trajectory_s<seed>.png  validation clean and PGD-10 of every learner of the Generalist
                    row against the step, the windows shaded;
  interpolation_s0_<file>.png  seed 0's interpolation curves.
"""
import argparse
import json
import pathlib
import statistics
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import evaluate  # noqa: E402

sys.path.insert(0, str(HERE.parent))
import study_tables as st  # noqa: E402
from generalist_jax.evaluation import plots  # noqa: E402

GENERALIST = 'Generalist (global)'
PGD_AT_EMA = "PGD-AT's EMA (no-sync fork, robust_ema)"
BETA1 = 'beta = 1 control (global)'
ROWS = [(GENERALIST, 'generalist', 'global'),
        ('Generalist natural EMA', 'generalist', 'natural_ema'),
        ('Generalist robust EMA', 'generalist', 'robust_ema'),
        ('Generalist natural expert', 'generalist', 'natural'),
        ('Generalist robust expert', 'generalist', 'robust'), (BETA1, 'beta1', 'global'),
        (PGD_AT_EMA, 'nosync', 'robust_ema'), ('PGD-AT (no-sync fork, robust)', 'nosync', 'robust'),
        ('standard training (no-sync fork, natural)', 'nosync', 'natural')]
# Generalist's global learner minus the baseline to beat, and minus its own run with
# beta = 1 to the end (the same prefix, no mixing: what the mixing adds).
PAIRED_REFERENCES = (PGD_AT_EMA, BETA1)
SEGMENTS = ('prefix', 'fork_nosync', 'sync75', 'fork_beta1', 'generalist', 'nosync', 'beta1')
BLOCKS = ('table', 'paired', 'windows', 'segments', 'interpolation')


def parse(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument('runs_dir', type=pathlib.Path)
  parser.add_argument('--out', type=pathlib.Path, default=HERE)
  parser.add_argument('--n_test', type=int, default=evaluate.N_TEST)
  parser.add_argument('--n_fast', type=int, default=evaluate.N_FAST)
  parser.add_argument('--total_steps', type=int, default=evaluate.STUDY.total_steps)
  return parser.parse_args(argv[1:])


def test_ids(study, runs_dir: pathlib.Path, n_ex: dict) -> dict:
  """attack -> the test-subset hashes its results carry (one expected)."""
  seen = {}
  for _, row, learner in ROWS:
    for run in st.runs_of(study, runs_dir, row):
      for which in st.WHICH:
        for attack, n in n_ex.items():
          report = st.read_json(run.path / 'eval' /
                                f'{st.result_name(study, which, learner, attack, n)}.json')
          sha = ((report or {}).get('study_eval') or {}).get('test_ids_sha1')
          if sha:
            seen.setdefault(attack, set()).add(sha)
  return {a: sorted(s) for a, s in seen.items()}


def read_times(runs_dir: pathlib.Path) -> list[dict]:
  path = runs_dir / 'times.jsonl'
  lines = path.read_text().splitlines() if path.exists() else []
  return [json.loads(line) for line in lines if line.strip()]


def segments(runs_dir: pathlib.Path) -> list[dict]:
  """Per (seed, segment): wall seconds summed over its sittings (each start of run.sh
  logs every segment, a finished one with the seconds it took to notice), the last
  sitting's load."""
  out = {}
  for t in read_times(runs_dir):
    key = (str(t['seed']), t['segment'])
    e = out.setdefault(
        key, {
            'seed': key[0], 'segment': t['segment'], 'row': t['row'], 'to': t['to'], 'seconds': 0,
            'sittings': 0
        })
    e['seconds'] += t['seconds']
    e['sittings'] += 1
    e['load_end'], e['date'] = t.get('load_end'), t.get('date')
  order = {s: k for k, s in enumerate(SEGMENTS)}
  return sorted(out.values(), key=lambda e: (order.get(e['segment'], 99), int(e['seed'])))


def minutes(values) -> str:
  if not values:
    return '-'
  mean = statistics.mean(values) / 60
  if len(values) == 1:
    return f'{mean:.0f} (n=1)'
  return f'{mean:.0f} ± {statistics.stdev(values) / 60:.0f}' + ('' if len(values) == 3 else
                                                                f' (n={len(values)})')


def segment_table(rows: list[dict]) -> list[str]:
  lines = [
      '| segment | row | to step | minutes (mean ± std over seeds) | per seed (s) | '
      'sittings | load at the end (1, 5, 15 min) |', '|---|---|---|---|---|---|---|'
  ]
  names = list(dict.fromkeys(r['segment'] for r in rows))
  for name in names:
    group = [r for r in rows if r['segment'] == name]
    lines.append(f"| {name} | {group[0]['row']} | {group[0]['to']} | "
                 f"{minutes([r['seconds'] for r in group])} | " +
                 ', '.join(f"s{r['seed']} {r['seconds']}" for r in group) + ' | ' +
                 ', '.join(str(r['sittings']) for r in group) + ' | ' +
                 '; '.join(f"s{r['seed']} {r['load_end']}" for r in group) + ' |')
  by_seed = {}
  for r in rows:
    by_seed[r['seed']] = by_seed.get(r['seed'], 0) + r['seconds']
  if by_seed:
    lines.append('| all | | | ' + minutes(list(by_seed.values())) + ' | ' +
                 ', '.join(f's{s} {v}' for s, v in by_seed.items()) + ' | | |')
  return lines


def interpolation_blocks(study, runs_dir: pathlib.Path, out: pathlib.Path) -> tuple:
  """(markdown lines, {row: {stem: {seed: result}}}) of every row's interpolation files;
  seed 0's PNGs copied to `out`."""
  lines, raw = [], {}
  for row in evaluate.LEARNERS:
    found = st.interpolations(study, runs_dir, row)
    if found:
      raw[row] = found
    for stem, by_seed in found.items():
      lines += st.interpolation_table(f'{row} row', stem, by_seed)
    for run in st.runs_of(study, runs_dir, row):
      if run.seed == '0':
        st.copy_interpolation_plots(run.path, out, f's0_{row}')
  return lines or ['no interpolation measured yet'], raw


def skeleton() -> str:
  """results.md before anything was collected: the markers collect.py fills."""
  parts = [
      '# The reference-clock study (issue 30): results', '',
      'Protocol and commands: experiments/reference_clock_cifar10_cpu/results.md. Every '
      'block below is written by `collect.py`.', ''
  ]
  for name in BLOCKS:
    parts += [f'## {name}', '', f'<!-- begin {name} -->', f'<!-- end {name} -->', '']
  return '\n'.join(parts)


def main(argv):
  args = parse(argv)
  study = evaluate.study(args)
  n_ex = evaluate.n_ex(args)
  runs_dir, out = args.runs_dir, args.out
  out.mkdir(parents=True, exist_ok=True)
  cells, raw = st.table(study, ROWS, runs_dir, n_ex)
  table = ([
      f'Test images: clean and PGD-20 on {args.n_test}, APGD-CE+T on a fixed '
      f'{args.n_fast} (the same for every row and seed). %, mean ± std over seeds '
      '(n = seeds when fewer than 3); selected steps in seed order.', ''
  ] + st.table_lines(cells, with_times=False))
  paired, paired_raw = [], []
  for reference in PAIRED_REFERENCES:
    lines = st.paired_table(raw, reference, (GENERALIST,))
    paired += lines + [''] if lines else []
    paired_raw += st.paired_values(raw, reference, (GENERALIST,))
  per_window = st.windows(study, runs_dir, 'generalist')
  window_lines = st.window_table(per_window) if per_window else ['no sync windows logged']
  if per_window:
    st.window_plot(per_window, out / 'windows.png', robust_label='PGD-10')
  for run in st.runs_of(study, runs_dir, 'generalist'):
    if not st.finished(study, run.path):  # a seed still training gets its plot when done
      continue
    st.trajectory_plot(
        plots.read_metrics(run.path), out / f'trajectory_s{run.seed}.png',
        f'Generalist row, seed {run.seed}: validation of every learner '
        '(1,000 held-out images)', 'l-inf PGD-10, 8/255')
  segs = segments(runs_dir)
  interp_lines, interp_raw = interpolation_blocks(study, runs_dir, out)
  ids = test_ids(study, runs_dir, n_ex)
  for attack, hashes in ids.items():
    if len(hashes) > 1:
      print(f'WARNING: {attack} results used {len(hashes)} different test subsets')
  (out / 'results.json').write_text(
      json.dumps(
          {
              'n_ex': n_ex, 'rows': raw, 'paired': paired_raw, 'windows': per_window,
              'segments': segs, 'interpolation': interp_raw, 'test_ids_sha1': ids
          }, indent=2))
  if not (out / 'results.md').exists():
    (out / 'results.md').write_text(skeleton())
  st.splice_file(
      out / 'results.md', {
          'table': table, 'paired': paired or ['no paired seeds yet'], 'windows': window_lines,
          'segments': segment_table(segs) if segs else ['no times.jsonl yet'],
          'interpolation': interp_lines
      })
  print('\n'.join(table + [''] + paired))


if __name__ == '__main__':
  main(sys.argv)
