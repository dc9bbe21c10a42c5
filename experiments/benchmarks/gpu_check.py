r"""The GPU check (issue 16): one run, one JSON + Markdown, made to finish inside 8
minutes on one H200.

  bash experiments/benchmarks/gpu_check.sh [--quick] [ARCHIVE.tar.gz]

In one process: JAX vs PyTorch step throughput (bench.py: natural, PGD-10 and
Generalist-2 steps; PreAct-ResNet-18 and WRN-34-10; batch 128 and 512; float32 and
bfloat16, PyTorch under autocast), with compile time and peak memory, each dtype
inside half of --budget_s (lines that do not fit are listed as skipped); then the
real training loop's images/s on CIFAR-10 (loop_efficiency.py: grain pipeline,
logs, checkpoints) for --loop_steps steps, from the CIFAR-10 JPEG archive
(jpeg_archive.py); then our AutoAttack 'standard' (l-inf, 8/255, full budgets) through
the public API on --aa_n_ex CIFAR-shaped random images with the loop's model (random
weights; labels = its own predictions, so every example starts clean-correct),
timed twice: the first call compiles, the second does not. On such a model APGD-CE
breaks nearly everything, so APGD-T, FAB-T and Square see few examples (the
per-attack counts are written): a lower bound for a robust model's time. `--quick`
shrinks everything to run in a minute on a CPU (the test suite runs it so):
SmallCNN at batch 8, PGD-2, one repetition, a few loop steps, AutoAttack on 16
images with 2 steps and 2 targets.
Writes experiments/benchmarks/results/gpu_check_<machine>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (puts the repository root on sys.path)
import jpeg_archive  # noqa: E402
import loop_efficiency  # noqa: E402
import numpy as np  # noqa: E402

FULL = dict(models='preact_resnet18:1@128,preact_resnet18:1@512,wrn-34-10:1@128,'
            'wrn-34-10:1@512', k=10, reps=3, warmup=1, loop_model='preact_resnet18:1',
            loop_batch=128, aa_n_ex=500, aa_batch=500, aa_overrides={})
QUICK = dict(models='small_cnn:0.125@8', k=2, reps=1, warmup=0, loop_model='small_cnn:0.125',
             loop_batch=8, aa_n_ex=16, aa_batch=8, aa_overrides={'steps': 2, 'n_targets': 2})


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--quick', action='store_true')
  p.add_argument('--archive', default=None, help='CIFAR-10 JPEG .tar.gz (default: synthetic '
                 'images, only with --quick)')
  p.add_argument('--budget_s', type=float, default=330.0, help='for both step benchmarks')
  p.add_argument('--loop_steps', type=int, default=300)
  p.add_argument('--out_dir', default=str(HERE / 'results'))
  p.add_argument('--machine', default=None)
  args = p.parse_args(argv)
  for k, v in (QUICK if args.quick else FULL).items():
    setattr(args, k, v)
  if args.quick:
    args.loop_steps = min(args.loop_steps, 12)
  elif not args.archive:
    p.error('--archive (the CIFAR-10 JPEG .tar.gz) is needed without --quick')
  return args


def cifar_npz(args, directory: pathlib.Path) -> pathlib.Path:
  path = directory / 'cifar10.npz'
  if args.archive:
    np.savez(path, **jpeg_archive.read_archive(args.archive))
  else:  # --quick without data: random images of CIFAR-10's shape
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (700, 32, 32, 3),
                                        np.uint8), y_train=rng.integers(0, 10, 700),
             x_test=rng.integers(0, 256, (50, 32, 32, 3), np.uint8), y_test=rng.integers(0, 10, 50))
  return path


def autoattack_timing(args) -> dict:
  """Wall seconds of AutoAttack 'standard' (l-inf 8/255) on args.loop_model with random
  weights: the first call (compiles) and the second (compiled), and how many
  examples each attack ran on. Labels are the model's predictions (clean 100%)."""
  import jax  # pylint: disable=g-import-not-at-top
  from generalist_jax import AutoAttack  # pylint: disable=g-import-not-at-top
  from generalist_jax import models  # pylint: disable=g-import-not-at-top
  from generalist_jax.evaluation import jitted  # pylint: disable=g-import-not-at-top
  label, fields = bench.parse_model(args.loop_model)
  info = bench.CIFAR_INFO
  model = models.create_model(fields, info.num_classes, info.mean, info.std)
  variables = models.init_variables(model, jax.random.PRNGKey(0), info.image_shape)
  apply_fn = jitted.model_apply_fn(model)
  x = np.random.default_rng(0).uniform(size=(args.aa_n_ex, *info.image_shape)).astype(np.float32)
  y = np.concatenate([
      np.asarray(jax.jit(apply_fn)(variables, x[i:i + args.aa_batch])).argmax(-1)
      for i in range(0, len(x), args.aa_batch)
  ])
  adversary = AutoAttack(apply_fn, params=variables, norm='Linf', eps=8 / 255, version='standard',
                         overrides=args.aa_overrides)
  seconds = []
  for _ in range(2):
    started = time.perf_counter()
    report = adversary.run(x, y, batch_size=args.aa_batch)
    seconds.append(time.perf_counter() - started)
  return {
      'model': label, 'n_ex': args.aa_n_ex, 'batch': args.aa_batch, 'overrides': args.aa_overrides,
      'first_s': seconds[0], 'second_s': seconds[1], 'clean_acc': report.clean_acc,
      'robust_acc': report.robust_acc,
      'attacked': {name: int((flags != -1).sum()) for name, flags in report.flags.items()}
  }


def markdown(result: dict) -> str:
  lines = [
      f"# GPU check: {result['machine']['cpu']}, devices {result['machine']['jax_devices']}", '',
      f"Command: `{result['command']}`; wall time {result['seconds']:.0f} s.", ''
  ]
  for dtype, bench_result in result['bench'].items():
    lines += [f'## Steps, {dtype}', '', bench.markdown(bench_result).split('\n', 2)[2]]
    lines += [f'Skipped (time budget): {s}' for s in bench_result.get('skipped', [])] + ['']
  loop = result['loop']
  lines += [
      '## Training loop on CIFAR-10', '',
      f"Generalist-2 (PGD-{loop['settings']['k']}), {loop['settings']['model']} batch "
      f"{loop['settings']['batch']}: loop {loop['loop_img_s']:.1f} img/s, isolated step "
      f"{loop['isolated_img_s']:.1f} img/s, efficiency {100 * loop['efficiency']:.1f}% "
      f"(steps {loop['loop']['first_logged_step']}..{loop['loop']['last_logged_step']}).", ''
  ]
  aa = result['autoattack']
  lines += [
      "## AutoAttack 'standard', l-inf 8/255", '',
      f"{aa['model']} (random weights), {aa['n_ex']} random CIFAR-shaped images, batch "
      f"{aa['batch']}{', budgets ' + str(aa['overrides']) if aa['overrides'] else ''}: "
      f"first call {aa['first_s']:.1f} s (compiles), second {aa['second_s']:.1f} s "
      f"({aa['n_ex'] / aa['second_s']:.1f} img/s); robust {100 * aa['robust_acc']:.1f}% "
      f"of {100 * aa['clean_acc']:.0f}% clean; examples attacked: " +
      ', '.join(f'{k} {v}' for k, v in aa['attacked'].items()) + '.', ''
  ]
  return '\n'.join(lines)


def main(argv=None) -> dict:
  args = parse_args(argv)
  started = time.perf_counter()
  out = pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  machine = bench.machine()
  name = args.machine or f'gpu_check_{bench.machine_name(machine)}'
  result = {
      'command': ' '.join([sys.executable, __file__] + (argv or sys.argv[1:])), 'machine': machine,
      'bench': {}
  }
  for dtype in ('float32', 'bfloat16'):
    result['bench'][dtype] = bench.main([
        f'--models={args.models}', '--kinds=natural,pgd,generalist2', f'--k={args.k}',
        f'--reps={args.reps}', f'--slow_reps={args.reps}', f'--warmup={args.warmup}',
        f'--compute_dtype={dtype}', f'--budget_s={args.budget_s / 2}', f'--out_dir={out}',
        f'--machine={name}_steps_{dtype}'
    ])
  with tempfile.TemporaryDirectory() as tmp:
    npz = cifar_npz(args, pathlib.Path(tmp))
    result['loop'] = loop_efficiency.main([
        f'--npz={npz}', f'--model={args.loop_model}', f'--batch={args.loop_batch}', f'--k={args.k}',
        f'--steps={args.loop_steps}', '--log_every=20' if not args.quick else '--log_every=2',
        '--ckpt_every=100' if not args.quick else '--ckpt_every=4', f'--reps={args.reps + 2}',
        f'--out_dir={out}', f'--machine={name}'
    ])
  result['autoattack'] = autoattack_timing(args)
  aa = result['autoattack']
  print(f"AutoAttack standard l-inf 8/255, {aa['model']}, n_ex {aa['n_ex']}: first call "
        f"{aa['first_s']:.1f} s, second {aa['second_s']:.1f} s; attacked {aa['attacked']}")
  result['seconds'] = time.perf_counter() - started
  stem = out / name
  stem.with_suffix('.json').write_text(json.dumps(result, indent=2, default=str))
  stem.with_suffix('.md').write_text(markdown(result))
  print(f'wrote {stem}.json and .md ({result["seconds"]:.0f} s)')
  return result


if __name__ == '__main__':
  main()
