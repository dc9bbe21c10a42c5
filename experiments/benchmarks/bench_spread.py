r"""`bench.py` run several times, each in a fresh process, and the spread of its ratios.

  python experiments/benchmarks/bench_spread.py --runs=4 --name=amd-zen5-spread \
      -- --models=small_cnn:1@128 --kinds=natural,pgd --reps=5

One `bench.py` run alternates JAX and PyTorch repetitions inside one process,
which cancels load that hits both alike. It does not cancel what changes between
processes and over minutes on a shared VM (thread placement, the host's load):
on the 2-core KVM box the same line read 0.76-1.00 across runs an hour apart.
This driver runs `bench.py` (arguments after `--`) `--runs` times in fresh
processes, one after another, and writes <out_dir>/<name>.json and .md: per
line the JAX/PyTorch throughput ratio of every run with its median, min and max
and how many runs were >= 1.0; per Generalist line the step over PGD-AT against
its work count. Each run's own bench.py files go to <out_dir>/<name>-runs/.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402


def run_once(index: int, bench_args: list, runs_dir: pathlib.Path) -> dict:
  """One bench.py process; returns its JSON result."""
  machine = f'run{index}'
  cmd = [
      sys.executable,
      str(HERE / 'bench.py'), *bench_args, f'--out_dir={runs_dir}', f'--machine={machine}'
  ]
  subprocess.run(cmd, check=True)
  return json.loads((runs_dir / f'{machine}.json').read_text())


def spread(values: list) -> dict | None:
  """Median, min and max of the runs that have a value; `values` keeps one entry
  per run (None where a run has none, e.g. no PyTorch side or cut by --budget_s)."""
  present = [v for v in values if v is not None]
  if not present:
    return None
  return {
      'median': statistics.median(present), 'min': min(present), 'max': max(present),
      'values': values
  }


def summarize(results: list) -> dict:
  """Per (model, batch, kind): each run's JAX/PyTorch ratio and times; per
  Generalist line each run's step / PGD-AT ratio and that over the work count.
  Lists hold one entry per run, None where that run lacks the line."""
  by_line = lambda r: {f"{l['model']}@{l['batch']} {l['kind']}": l for l in r['lines']}
  by_generalist = lambda r: {
      f"{g['model']}@{g['batch']} {g['kind']}/pgd": g for g in r['generalist']
  }
  line_runs = [by_line(r) for r in results]
  generalist_runs = [by_generalist(r) for r in results]
  column = lambda runs, key, field: [run[key][field] if key in run else None for run in runs]
  out = {'lines': {}, 'generalist': {}}
  for key in dict.fromkeys(k for run in line_runs for k in run):
    ratios = column(line_runs, key, 'jax_over_torch_throughput')
    out['lines'][key] = {
        'ratio': spread(ratios), 'runs_at_least_1': sum(x is not None and x >= 1.0 for x in ratios),
        'jax_s': spread(column(line_runs, key,
                               'jax_s')), 'torch_s': spread(column(line_runs, key, 'torch_s'))
    }
  for key in dict.fromkeys(k for run in generalist_runs for k in run):
    work = next(run[key]['work_count'] for run in generalist_runs if key in run)
    out['generalist'][key] = {
        'work_count': work, 'jax_ratio': spread(column(generalist_runs, key, 'jax_ratio')),
        'jax_ratio_over_work': spread(column(generalist_runs, key, 'jax_ratio_over_work'))
    }
  return out


def _each(values: list, spec: str) -> str:
  return ', '.join(bench._fmt(v, spec) for v in values)


def markdown(result: dict) -> str:
  s = result['summary']
  rows = [
      f"# bench.py spread over {result['runs']} processes", '', f"Command: `{result['command']}`",
      '', f"Machine: {result['machine']['cpu']}, {result['machine']['usable_cores']} cores; "
      f"uptime before: `{result['uptime_before']}`; after: `{result['uptime_after']}`. "
      'Each run\'s own file (with its load) is in the `-runs/` folder.', '',
      '| line | JAX/PyTorch median | min | max | runs >= 1.0 | each run | JAX s median | '
      'PyTorch s median |', '|---|---|---|---|---|---|---|---|'
  ]
  for key, v in s['lines'].items():
    r = v['ratio'] or dict.fromkeys(('median', 'min', 'max'), None)
    torch_s = v['torch_s']['median'] if v['torch_s'] else None
    rows.append(f"| {key} | {bench._fmt(r['median'])} | {bench._fmt(r['min'])} | "
                f"{bench._fmt(r['max'])} | {v['runs_at_least_1']} of {result['runs']} | "
                f"{_each(v['ratio']['values'], '.2f') if v['ratio'] else '-'} | "
                f"{v['jax_s']['median']:.3f} | {bench._fmt(torch_s, '.3f')} |")
  if s['generalist']:
    rows += [
        '', '| JAX step / PGD-AT step | work count | median | min | max | '
        'median / work count | each run |', '|---|---|---|---|---|---|---|'
    ]
    for key, v in s['generalist'].items():
      r = v['jax_ratio']
      rows.append(f"| {key} | {v['work_count']:.3f} | {r['median']:.3f} | {r['min']:.3f} | "
                  f"{r['max']:.3f} | {v['jax_ratio_over_work']['median']:.3f} | "
                  f"{_each(r['values'], '.3f')} |")
  return '\n'.join(rows) + '\n'


def main(argv=None) -> dict:
  from_command_line = argv is None
  argv = sys.argv[1:] if from_command_line else argv
  ours, bench_args = (argv[:argv.index('--')], argv[argv.index('--') + 1:]) if '--' in argv \
      else (argv, [])
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--runs', type=int, default=4)
  p.add_argument('--name', required=True, help='results file name')
  p.add_argument('--out_dir', default=str(HERE / 'results'))
  args = p.parse_args(ours)
  if args.runs < 2:
    raise ValueError(f'--runs={args.runs}: a spread needs at least 2 runs.')
  if any(a.startswith(('--out_dir', '--machine')) for a in bench_args):
    raise ValueError('--out_dir / --machine after `--`: this driver sets them per run; '
                     'use its own --out_dir and --name.')
  out_dir = pathlib.Path(args.out_dir)
  runs_dir = out_dir / f'{args.name}-runs'
  runs_dir.mkdir(parents=True, exist_ok=True)
  result = {
      'command':
          (' '.join([sys.executable] + sys.argv) if from_command_line else 'bench_spread.main(' +
           ' '.join(argv) + ')'), 'runs': args.runs, 'uptime_before': bench.uptime()
  }
  results = [run_once(i, bench_args, runs_dir) for i in range(args.runs)]
  result.update(
      machine=results[0]['machine'],  # this process never starts JAX's backend
      uptime_after=bench.uptime(),
      summary=summarize(results))
  (out_dir / f'{args.name}.json').write_text(json.dumps(result, indent=2))
  (out_dir / f'{args.name}.md').write_text(markdown(result))
  print(markdown(result))
  return result


if __name__ == '__main__':
  main()
