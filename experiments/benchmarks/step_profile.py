r"""Per-op profile of one jitted train step, grouped by the model layer that issued each op.

  python experiments/benchmarks/step_profile.py --model=small_cnn:1@128 --kind=natural

Runs the step as `bench.py` does (warm-up, then --reps steps under
`jax.profiler.trace`), with XLA:CPU's per-thunk trace annotations on
(--xla_cpu_enable_xprof_traceme, set here before JAX starts). Each op's time is
attributed through the compiled HLO's op_name metadata ("jvp/conv2": forward of
conv2, "transpose(jvp)/conv2": its gradients, ".../loop/...": inside a scan).
Ops that XLA:CPU runs without an annotation (Eigen convolutions among them) are
not listed; the "not attributed" line is the step's wall time minus the listed
ops. Writes results/profile_<model>_b<batch>_<kind>.{json,md}.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import re
import statistics
import sys
import tempfile
import time

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_cpu_enable_xprof_traceme=true').strip()

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402
import jax  # noqa: E402

from generalist_jax import host_memory  # noqa: E402
from generalist_jax.models import cpu_ops  # noqa: E402

_MODEL_SCOPE = re.compile(r'\((SmallCNN|PreActResNet18|ResNet18|WideResNet)\)')


def op_groups(hlo_text: str) -> dict:
  """HLO instruction name -> 'jvp/conv2'-style group from its op_name metadata."""
  groups = {}
  for m in re.finditer(r'\n\s*(?:ROOT )?%?([\w.\-]+) = [^\n]*?op_name="([^"]+)"', hlo_text):
    op = _MODEL_SCOPE.sub('', m.group(2).replace('/while/body', '/loop'))
    # Keep the differentiation scope, the layer and the primitive; drop call wrappers.
    parts = [p for p in op.split('/') if p not in ('closed_call', 'jit(<lambda>)')]
    groups[m.group(1)] = '/'.join(parts[:2] + parts[-1:]) if len(parts) > 3 else '/'.join(parts)
  return groups


def profile(step, reps: int) -> tuple[dict, float]:
  """(group -> ms per step, wall ms per step) from a trace of `reps` steps."""
  groups = op_groups(step.compiled.as_text())
  with tempfile.TemporaryDirectory() as out:
    t = time.perf_counter()
    with jax.profiler.trace(out, create_perfetto_trace=True):
      for _ in range(reps):
        step()
    wall_ms = 1e3 * (time.perf_counter() - t) / reps
    trace = json.load(gzip.open(glob.glob(f'{out}/**/*.trace.json.gz', recursive=True)[0]))
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  ms = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and e['name'] in groups:
      ms[groups[e['name']]] += e.get('dur', 0) / 1e3 / reps
  return dict(ms), wall_ms


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--model', default='small_cnn:1@128', help='model:width@batch')
  p.add_argument('--kind', default='natural', choices=bench.STEP_KINDS[:-1])
  p.add_argument('--k', type=int, default=10)
  p.add_argument('--reps', type=int, default=3)
  p.add_argument('--top', type=int, default=25)
  p.add_argument('--out_dir', default=str(pathlib.Path(__file__).parent / 'results'))
  args = p.parse_args(argv)
  spec, rest = args.model.split('@')
  _, fields = bench.parse_model(spec)
  batch = int(rest)
  step = bench.JaxStep(bench.step_config(args.kind, fields, batch, args.k),
                       bench._batch(batch)).compile()
  untraced = []
  for _ in range(args.reps + 1):
    untraced.append(bench._timed(step))
  load = bench.uptime()
  ms, wall_ms = profile(step, args.reps)
  listed = sum(ms.values())
  rows = sorted(ms.items(), key=lambda kv: -kv[1])[:args.top]
  result = {
      'command': ' '.join([sys.executable] + (sys.argv if argv is None else argv)), 'uptime': load,
      'conv_engine': cpu_ops.conv_engine(),
      'step_ms_untraced_median': 1e3 * statistics.median(untraced[1:]), 'step_ms_traced': wall_ms,
      'listed_ms': listed, 'ms_per_group': ms
  }
  stem = f'profile_{spec.replace(":", "_w").replace(".", "p")}_b{batch}_{args.kind}'
  lines = [
      f'# Per-op profile: {spec} batch {batch}, {args.kind} step', '',
      f'Command: `{result["command"]}`', '', f'Load: `{load}`; XLA:CPU conv engine: '
      f'{result["conv_engine"]}.', '',
      f'Step: {result["step_ms_untraced_median"]:.1f} ms untraced (median), '
      f'{wall_ms:.1f} ms traced; listed ops {listed:.1f} ms, not attributed '
      f'{wall_ms - listed:.1f} ms (ops without a trace annotation, e.g. Eigen '
      'convolutions, and gaps).', '', '| ms per step | op group |', '|---|---|'
  ]
  lines += [f'| {v:.2f} | `{k}` |' for k, v in rows]
  out = pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  (out / f'{stem}.json').write_text(json.dumps(result, indent=2))
  (out / f'{stem}.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  host_memory.keep_cpu_buffers_resident()  # as main runs steps
  main()
