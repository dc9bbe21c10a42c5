r"""PyTorch's own per-op profile of the PyTorch twin of one train step (bench.py's TorchSteps).

  python experiments/benchmarks/torch_step_profile.py --model=small_cnn:1@128 --kind=natural

The counterpart of step_profile.py for the PyTorch side: `torch.profiler` over --reps
steps after --warmup, ops sorted by self CPU time, in ms per step. Writes
results/torch_profile_<model>_b<batch>_<kind>_<machine>.md.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402  (puts the repository root on sys.path)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--model', default='small_cnn:1@128', help='model:width@batch')
  p.add_argument('--kind', default='natural', choices=bench.STEP_KINDS[:-1])
  p.add_argument('--k', type=int, default=10)
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--top', type=int, default=15)
  p.add_argument('--machine', default='cpu')
  p.add_argument('--out_dir', default=str(pathlib.Path(__file__).parent / 'results'))
  args = p.parse_args(argv)
  import torch  # pylint: disable=g-import-not-at-top
  from torch import profiler  # pylint: disable=g-import-not-at-top
  spec, batch = args.model.split('@')
  batch = int(batch)
  config = bench.step_config(args.kind, bench.parse_model(spec)[1], batch, args.k)
  host = bench._batch(batch)
  steps = bench.TorchSteps(config, bench.JaxStep(config, host).setup, host, args.threads)
  for _ in range(args.warmup):
    steps.train_step()
  load = bench.uptime()
  with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(args.reps):
      steps.train_step()
  rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:args.top]
  total_ms = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e3 / args.reps
  lines = [f'# PyTorch per-op profile: {spec} batch {batch}, {args.kind} step', '',
           f'Command: `{" ".join([sys.executable] + (sys.argv if argv is None else argv))}`',
           '', f'Load: `{load}`; torch {torch.__version__}, {args.threads} threads; '
           f'{args.reps} profiled steps after {args.warmup} warm-up.', '',
           f'Self CPU time of all ops: {total_ms:.1f} ms per step (profiled).', '',
           '| self ms per step | calls per step | op |', '|---|---|---|']
  lines += [f'| {e.self_cpu_time_total / 1e3 / args.reps:.2f} | {e.count / args.reps:g} | '
            f'`{e.key}` |' for e in rows]
  stem = (f'torch_profile_{spec.replace(":", "_w").replace(".", "p")}_b{batch}_{args.kind}_'
          f'{args.machine}')
  out = pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  (out / f'{stem}.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
