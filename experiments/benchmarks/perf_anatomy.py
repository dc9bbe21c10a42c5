r"""Where one train step's CPU time goes, by library and symbol, as Linux `perf` samples it.

  python experiments/benchmarks/perf_anatomy.py --model=preact_resnet18:0.25@64 --kind=natural

Builds the JAX step and its PyTorch twin as bench.py does, warms both up, then, for each
framework in turn, attaches `perf record` (cpu-clock samples of every thread) and then
`perf stat` (page faults, mmap/munmap calls) to this process for --steps steps; the CPU
time per step is the process's own (getrusage) over the steps. Unlike
step_profile.py this sees inside XLA:CPU's runtime: Eigen's convolution packing
(`gemm_pack_*`), the JIT-compiled code (XLA's fusions and oneDNN's xbyak GEMM kernels,
which perf cannot tell apart), malloc, and the kernel's page faults. CPU ms are summed over
threads, spin-waiting threads included. The shares are `perf report`'s; with JIT code
sampled on several threads they can add up to a few percent over 100. Needs `perf` (linux-perf) with
perf_event_paranoid <= 1 or root; the mmap counts also need tracefs (left blank without).
Writes results/anatomy_<model>_b<batch>_<kind>_<machine>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402  (puts the repository root on sys.path)

from generalist_jax import host_memory  # noqa: E402

_SAMPLE_HZ = 2000
_STAT_EVENTS = ('page-faults', 'syscalls:sys_enter_mmap', 'syscalls:sys_enter_munmap')


def _attached(perf_args: list[str], run) -> tuple[str, float]:
  """Runs `run()` with `perf <perf_args> -p <this pid>` attached.

  Returns perf's stderr and the process's CPU seconds (user + system, every thread)
  spent in `run()` alone.
  """
  proc = subprocess.Popen(['perf', *perf_args, '-p', str(os.getpid())], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  time.sleep(1.0)  # perf attaches to every thread before the steps start
  before = resource.getrusage(resource.RUSAGE_SELF)
  run()
  after = resource.getrusage(resource.RUSAGE_SELF)
  proc.send_signal(signal.SIGINT)
  cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  return proc.communicate(timeout=120)[1], cpu_s


def _report(data: str) -> dict[str, list[tuple[float, str]]]:
  """(percent, name) rows of one `perf report --sort dso,sym`, grouped two ways:
  'dso', one row per library; 'sym', one per symbol family (template arguments
  cut, JIT code one row). Each list is largest first."""
  out = subprocess.run(['perf', 'report', '-i', data, '--sort', 'dso,sym', '--stdio'],
                       capture_output=True, text=True, check=True).stdout
  merged = {'dso': {}, 'sym': {}}
  for line in out.splitlines():
    m = re.match(r'\s*([\d.]+)%\s+(.+?)\s+\[[.k]\]\s+(.*)', line)
    if not m:
      continue
    dso = re.sub(r'\[JIT\] tid \d+', '[JIT]', m.group(2).strip())
    sym = dso if dso == '[JIT]' else re.sub(r'<.*', '', m.group(3).strip())
    for key, name in (('dso', dso), ('sym', sym)):
      merged[key][name] = merged[key].get(name, 0.0) + float(m.group(1))
  return {
      key: sorted(((p, n) for n, p in rows.items()), reverse=True) for key, rows in merged.items()
  }


def _stat_counts(stderr: str) -> dict:
  counts = {}
  for line in stderr.splitlines():  # `-x,` output: value,unit,event,...
    fields = line.split(',')
    if len(fields) > 2 and fields[2] in _STAT_EVENTS:
      counts[fields[2]] = float(fields[0]) if fields[0].replace('.', '').isdigit() else None
  return counts


def anatomy(name: str, step, steps: int, top: int, tmp: str) -> dict:
  """Wall time, CPU ms per step by library and by symbol, page faults and mmaps per step."""
  run = lambda: [step() for _ in range(steps)]
  t0 = time.perf_counter()
  run()
  wall_s = (time.perf_counter() - t0) / steps
  data = os.path.join(tmp, f'{name}.data')
  _, cpu_s = _attached(['record', '-e', 'cpu-clock', '-F',
                        str(_SAMPLE_HZ), '-o', data, '--quiet'], run)
  events = [
      e for e in _STAT_EVENTS
      if e == 'page-faults' or os.path.isdir('/sys/kernel/tracing/events/syscalls')
  ]
  stat = _stat_counts(_attached(['stat', '-x,', *sum((['-e', e] for e in events), [])], run)[0])
  report = _report(data)
  per_step = lambda e: None if stat.get(e) is None else stat[e] / steps
  return {
      'wall_ms': wall_s * 1e3, 'cpu_ms_per_step': cpu_s * 1e3 / steps, 'by_library': report['dso']
                                                                                     [:top],
      'by_symbol': report['sym'][:top], 'page_faults_per_step': per_step('page-faults'),
      'mmap_per_step': per_step('syscalls:sys_enter_mmap'),
      'munmap_per_step': per_step('syscalls:sys_enter_munmap')
  }


def markdown(result: dict) -> str:
  s = result['settings']
  lines = [
      f'# Step anatomy (perf): {s["model"]}, {s["kind"]} step', '',
      f'Command: `{result["command"]}`', '',
      f'Load: before `{result["uptime_before"]}`; after `{result["uptime_after"]}`.', '',
      f'{s["steps"]} steps per measurement after {s["warmup"]} warm-up; perf at '
      f'{_SAMPLE_HZ} Hz over every thread; CPU ms summed over threads; '
      f'`host_memory.keep_cpu_buffers_resident()` applied: {result["cpu_resident_buffers"]}.', ''
  ]
  for fw, r in result['frameworks'].items():
    fmt = lambda v: '-' if v is None else f'{v:,.0f}'
    lines += [
        f'## {fw}', '',
        f'Step {r["wall_ms"]:.1f} ms wall (unprofiled), {r["cpu_ms_per_step"]:.1f} CPU ms '
        f'(profiled steps, every thread); page faults {fmt(r["page_faults_per_step"])}, mmap '
        f'{fmt(r["mmap_per_step"])}, munmap {fmt(r["munmap_per_step"])} per step.', '',
        '| % of samples | CPU ms per step | library |', '|---|---|---|'
    ]
    lines += [
        f'| {p:.1f} | {p / 100 * r["cpu_ms_per_step"]:.1f} | `{d}` |' for p, d in r['by_library']
        if p >= 0.5
    ]
    lines += [
        '', '| % of samples | CPU ms per step | symbol (template arguments cut) |', '|---|---|---|'
    ]
    lines += [
        f'| {p:.1f} | {p / 100 * r["cpu_ms_per_step"]:.1f} | `{d[:100]}` |'
        for p, d in r['by_symbol']
    ]
    lines.append('')
  return '\n'.join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--model', default='preact_resnet18:0.25@64', help='model:width@batch')
  p.add_argument('--kind', default='natural', choices=bench.STEP_KINDS[:-1])
  p.add_argument('--k', type=int, default=10)
  p.add_argument('--threads', type=int, default=2, help='PyTorch intra-op threads')
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--steps', type=int, default=40)
  p.add_argument('--top', type=int, default=15)
  p.add_argument('--machine', default='cpu')
  p.add_argument('--no_torch', action='store_true')
  p.add_argument('--out_dir', default=str(pathlib.Path(__file__).parent / 'results'))
  args = p.parse_args(argv)
  if shutil.which('perf') is None:
    sys.exit('perf_anatomy.py needs Linux perf on PATH (Debian: apt install linux-perf).')
  spec, batch = args.model.split('@')
  batch = int(batch)
  config = bench.step_config(args.kind, bench.parse_model(spec)[1], batch, args.k)
  host = bench._batch(batch)
  jax_step = bench.JaxStep(config, host).compile()
  steps = {'JAX': jax_step}
  if not args.no_torch:
    steps['PyTorch'] = bench.TorchSteps(config, jax_step.setup, host, args.threads).train_step
  for step in steps.values():
    for _ in range(args.warmup):
      step()
  result = {
      'command': ' '.join([sys.executable] + (sys.argv if argv is None else argv)),
      'settings': vars(args), 'uptime_before': bench.uptime(), 'frameworks': {},
      'cpu_resident_buffers': host_memory.buffers_resident()
  }
  with tempfile.TemporaryDirectory() as tmp:
    for name, step in steps.items():
      result['frameworks'][name] = anatomy(name, step, args.steps, args.top, tmp)
  result['uptime_after'] = bench.uptime()
  stem = (f'anatomy_{spec.replace(":", "_w").replace(".", "p")}_b{batch}_{args.kind}_'
          f'{args.machine}')
  out = pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  (out / f'{stem}.json').write_text(json.dumps(result, indent=1))
  text = markdown(result)
  (out / f'{stem}.md').write_text(text)
  print(text)


if __name__ == '__main__':
  host_memory.keep_cpu_buffers_resident()  # before the jits are made
  main()
