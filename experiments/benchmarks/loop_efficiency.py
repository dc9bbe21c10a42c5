r"""Does the training loop keep up with its step? Loop vs isolated-step throughput.

  python experiments/benchmarks/loop_efficiency.py --npz=/work/data/cifar10.npz

Runs `loop.train_and_evaluate` on an .npz dataset (grain input pipeline with
augmentation, metrics.jsonl + TensorBoard logging, orbax checkpoints, all on)
and times it between two log points after the first (which holds the
compile): the wall time between them covers every step, batch, log write and
checkpoint save of that stretch. Validation is kept out of the window (the
epoch is longer than the run). The isolated step is the same jitted step
(`step_lib.jit_train_step`, `bench.JaxStep`) on one device-resident batch,
measured just before and just after the loop (median of reps), so load drift
on a shared machine shows as their difference.

Writes results/loop_efficiency_<machine>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402  (puts the repository root on sys.path)

from generalist_jax import config as config_lib  # noqa: E402
from generalist_jax import host_memory  # noqa: E402
from generalist_jax.config import validation
from generalist_jax.run import loop
from generalist_jax.run import metric_writer  # noqa: E402


def loop_config(args):
  c = config_lib.base_config()
  c.experts = config_lib.generalist_experts()
  for name in c.experts.keys():
    c.experts[name].attack = bench._pgd('linf', args.k)
  c.model.update(bench.parse_model(args.model)[1])
  c.batch_size = args.batch
  c.data.source, c.data.path = 'npz', args.npz
  # One epoch longer than the run: no validation inside the timed stretch.
  c.data.train_size = args.batch * (args.steps + 10)
  c.data.val_size = 500
  config_lib.scale_epochs(c, 1)
  c.meta.sync.kind = 'never'
  c.log_every_steps = args.log_every
  c.checkpoint.every_steps = args.ckpt_every
  c.eval.final_test = False
  c.progress_bar = False
  validation.validate_config(c)
  return c


def isolated_step_s(config, reps: int) -> list[float]:
  host = bench._batch(config.batch_size)
  step = bench.JaxStep(config, host).compile()
  step()  # warm-up
  return [bench._timed(step) for _ in range(reps)]


def timed_loop(config, workdir: str, steps: int) -> dict:
  """train_and_evaluate for `steps` steps; wall-clock time of every log write."""
  stamps = []
  original = metric_writer.MetricWriter.write

  def write(self, step, scalars):
    original(self, step, scalars)
    stamps.append((int(step), time.perf_counter()))

  metric_writer.MetricWriter.write = write
  try:
    loop.train_and_evaluate(config, workdir, stop_after_steps=steps)
  finally:
    metric_writer.MetricWriter.write = original
  (s0, t0), (s1, t1) = stamps[0], stamps[-1]
  return {
      'first_logged_step': s0, 'last_logged_step': s1, 'seconds': t1 - t0,
      'step_s': (t1 - t0) / (s1 - s0), 'log_points': stamps
  }


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--npz', required=True)
  p.add_argument('--model', default='small_cnn:0.5', help='model:width (bench.parse_model)')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--k', type=int, default=10)
  p.add_argument('--steps', type=int, default=40)
  p.add_argument('--log_every', type=int, default=10)
  p.add_argument('--ckpt_every', type=int, default=10)
  p.add_argument('--reps', type=int, default=10)
  p.add_argument('--machine', default=None)
  p.add_argument('--out_dir', default=str(bench.ROOT / 'experiments' / 'benchmarks' / 'results'))
  args = p.parse_args(argv)
  config = loop_config(args)
  load_before = bench.uptime()
  before = isolated_step_s(config, args.reps)
  with tempfile.TemporaryDirectory() as workdir:
    loop = timed_loop(config, workdir, args.steps)
  after = isolated_step_s(config, args.reps)
  isolated = statistics.median(before + after)
  result = {
      'command': ' '.join([sys.executable] + (sys.argv if argv is None else argv)),
      'machine': bench.machine(), 'uptime_before': load_before, 'uptime_after': bench.uptime(),
      'settings': vars(args),
      'isolated_step_s': {'before': before, 'after': after, 'median': isolated
                         }, 'loop': loop, 'loop_img_s': args.batch / loop['step_s'],
      'isolated_img_s': args.batch / isolated, 'efficiency': isolated / loop['step_s']
  }
  print(f"isolated step {isolated:.3f} s (before {statistics.median(before):.3f}, after "
        f"{statistics.median(after):.3f}); loop {loop['step_s']:.3f} s/step over steps "
        f"{loop['first_logged_step']}..{loop['last_logged_step']} (logs every "
        f"{args.log_every}, checkpoints every {args.ckpt_every}): efficiency "
        f"{100 * result['efficiency']:.1f}%")
  out = pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  stem = out / f"loop_efficiency_{args.machine or bench.machine_name(result['machine'])}"
  stem.with_suffix('.json').write_text(json.dumps(result, indent=2))
  stem.with_suffix('.md').write_text(
      f"# Training loop vs isolated step\n\nCommand: `{result['command']}`\n\n"
      f"Machine: {result['machine']['cpu']}, {result['machine']['usable_cores']} cores. "
      f"Load before `{load_before}`, after `{result['uptime_after']}`.\n\n"
      f"Generalist 2-expert step (PGD-{args.k}), {args.model} batch {args.batch}; logs every "
      f"{args.log_every} steps, orbax checkpoint every {args.ckpt_every} steps, grain "
      f"pipeline with crop+flip.\n\n"
      '| | s/step | img/s |\n|---|---|---|\n'
      f"| isolated step (median of {2 * args.reps}) | {isolated:.3f} | "
      f"{result['isolated_img_s']:.1f} |\n"
      f"| training loop (steps {loop['first_logged_step']}..{loop['last_logged_step']}) | "
      f"{loop['step_s']:.3f} | {result['loop_img_s']:.1f} |\n\n"
      f"Efficiency: {100 * result['efficiency']:.1f}% (isolated before "
      f"{statistics.median(before):.3f} s, after {statistics.median(after):.3f} s; single "
      f"repetitions {min(before + after):.3f} to {max(before + after):.3f} s).\n")
  print(f'wrote {stem}.json and .md')
  return result


if __name__ == '__main__':
  host_memory.keep_cpu_buffers_resident()  # as main does
  main()
