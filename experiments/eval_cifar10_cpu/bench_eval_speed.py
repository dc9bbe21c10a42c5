r"""Evaluation speed: images/s of APGD-CE and of the AutoAttack composites.

  python -m experiments.eval_cifar10_cpu.bench_eval_speed [--models small_cnn,preact_resnet18]
      [--batch 32] [--budget_fraction 0.1] [--reps 3] [--norm linf]

For each model (random init, CIFAR-10 shape; speed does not depend on the
weights except where noted) and each component of AutoAttack 'standard'
(APGD-CE, APGD-T, FAB-T, Square): compile time (lower + compile, once), then
the median over `reps` of the wall time of one batch. Every example is
attacked by every component (labels = the model's own predictions, so all are
"correct"): the composite's time is the sum of its components, i.e. the cost
when no attack breaks anything early; real evaluations are faster since each
attack runs only on what the earlier ones missed.

On a CPU the full budgets (100 iterations x 9 targets, 5000 queries) take
minutes per image, so `--budget_fraction` (default 0.1) scales iterations and
queries (targets kept); the loops never exit early, so time is linear in them
and images/s at the full budget = measured images/s x fraction (printed as
`full_budget_img_s`). FAB-T is the exception: it skips a target once every
example of the batch is broken, so its time depends on the model.
Writes bench_eval_speed.json next to this file, with `uptime` before and after.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from generalist_jax import models
from generalist_jax.attacks import autoattack
from generalist_jax.attacks import registry

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
MODELS = {
    'small_cnn': dict(name='small_cnn', width=0.5, batch_norm=True),
    'preact_resnet18': dict(name='preact_resnet18', width=0.25)
}


def uptime() -> str:
  return subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()


def component_budget(name: str, norm: str, fraction: float) -> dict:
  standard = registry.standard_settings(name, norm)
  full = standard['n_queries'] if name == 'square' else standard['steps']
  return {'steps': max(int(round(full * fraction)), 1)}


def time_component(logits_fn, variables, x, y, name, norm, eps, fraction, reps):
  attack = registry.build(name, norm=norm, eps=eps,
                          overrides=component_budget(name, norm, fraction))
  fn = jax.jit(lambda v, x, y, k: attack(lambda z: logits_fn(v, z), x, y, k),
               compiler_options=models.compiler_options())
  key = jax.random.PRNGKey(0)
  t0 = time.perf_counter()
  compiled = fn.lower(variables, x, y, key).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(variables, x, y, key))  # warm-up
  times = []
  for r in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(variables, x, y, jax.random.PRNGKey(r + 1)))
    times.append(time.perf_counter() - t0)
  return {
      'compile_s': compile_s, 'median_s': statistics.median(times), 'times_s': times,
      **component_budget(name, norm, fraction)
  }


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--models', default='small_cnn,preact_resnet18')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--budget_fraction', type=float, default=0.1)
  p.add_argument('--reps', type=int, default=3)
  p.add_argument('--norm', default='linf')
  p.add_argument('--out', default=str(pathlib.Path(__file__).with_name('bench_eval_speed.json')))
  args = p.parse_args()
  eps = autoattack.DEFAULT_EPS[args.norm]
  report = {
      'uptime_before': uptime(), 'backend': jax.default_backend(),
      'devices': [str(d) for d in jax.devices()], 'jax': jax.__version__, 'batch': args.batch,
      'budget_fraction': args.budget_fraction, 'reps': args.reps, 'norm': args.norm, 'eps': eps,
      'models': {}
  }
  print(report['uptime_before'])
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (args.batch, 32, 32, 3)), jnp.float32)
  for model_name in args.models.split(','):
    model = models.create_model(ml_collections.ConfigDict(MODELS[model_name]), 10, CIFAR_MEAN,
                                CIFAR_STD)
    variables = models.init_variables(model, jax.random.PRNGKey(0), (32, 32, 3))
    logits_fn = lambda v, z: models.apply_model(model, v, z, train=False)[0]
    y = jnp.argmax(logits_fn(variables, x), -1)
    per = {}
    for name in autoattack.version_components('standard', args.norm):
      per[name] = time_component(logits_fn, variables, x, y, name, args.norm, eps,
                                 args.budget_fraction, args.reps)
      per[name]['img_s'] = args.batch / per[name]['median_s']
      per[name]['full_budget_img_s'] = per[name]['img_s'] * args.budget_fraction
      print(f"{model_name} {name:8s} compile {per[name]['compile_s']:6.1f}s  "
            f"batch {per[name]['median_s']:7.2f}s  {per[name]['img_s']:8.2f} img/s "
            f"({per[name]['full_budget_img_s']:.3f} img/s at the full budget)")
    composites = {}
    for version in ('fast', 'standard'):
      names = autoattack.version_components(version, args.norm)
      seconds = sum(per[n]['median_s'] for n in names)
      composites[version] = {
          'components': list(names), 'median_s': seconds, 'img_s': args.batch / seconds,
          'full_budget_img_s': args.batch / seconds * args.budget_fraction
      }
      print(f"{model_name} AA-{version:8s} {composites[version]['img_s']:8.2f} img/s "
            f"({composites[version]['full_budget_img_s']:.3f} img/s at the full budget)")
    report['models'][model_name] = {
        'config': MODELS[model_name], 'components': per, 'composites': composites
    }
  report['uptime_after'] = uptime()
  print(report['uptime_after'])
  pathlib.Path(args.out).write_text(json.dumps(report, indent=2))
  print('wrote', args.out)


if __name__ == '__main__':
  main()
