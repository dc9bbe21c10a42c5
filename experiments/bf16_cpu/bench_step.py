"""Step time of the same Generalist train step in float32 and bfloat16 compute,
interleaved in one process (so machine load hits both alike), median of reps.

  python experiments/bf16_cpu/bench_step.py [--reps 7] [--model small_cnn] [--width 0.5]
Prints one JSON line; the ratio is bf16 time / f32 time (below 1: bf16 faster).
"""
import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from generalist_jax import config as config_lib
from generalist_jax import data as data_lib
from generalist_jax import models
from generalist_jax.method import step as step_lib


def make_step(config, dtype, batch_size):
  config = config.copy_and_resolve_references()
  config.compute_dtype = dtype
  info = data_lib.DatasetInfo(num_classes=10, image_shape=(32, 32, 3), mean=(0.5,) * 3,
                              std=(0.25,) * 3)  # random data: speed only
  setup = step_lib.make_setup(config, info, steps_per_epoch=100)
  state = step_lib.create_train_state(setup, info.image_shape, seed=0)
  rng = np.random.default_rng(0)
  batch = {
      'image': rng.random((batch_size, 32, 32, 3), np.float32),
      'label': rng.integers(0, 10, batch_size).astype(np.int32)
  }
  step = jax.jit(lambda s, b: step_lib.train_step(setup, s, b), donate_argnums=0,
                 compiler_options=models.compiler_options())
  t0 = time.perf_counter()
  state, m = step(state, batch)
  jax.block_until_ready(m)
  return step, state, batch, time.perf_counter() - t0


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--reps', type=int, default=7)
  parser.add_argument('--model', default='small_cnn')
  parser.add_argument('--width', type=float, default=0.5)
  parser.add_argument('--batch_size', type=int, default=128)
  args = parser.parse_args()
  config = config_lib.base_config()
  config.experts = config_lib.generalist_experts()
  config_lib.smoke(config)
  config.model.name, config.model.width = args.model, args.width
  runs = {d: make_step(config, d, args.batch_size) for d in ('float32', 'bfloat16')}
  states = {d: r[1] for d, r in runs.items()}
  times = {d: [] for d in runs}
  for _ in range(args.reps):
    for d, (step, _, batch, _) in runs.items():  # interleaved
      t0 = time.perf_counter()
      states[d], m = step(states[d], batch)
      jax.block_until_ready(m)
      times[d].append(time.perf_counter() - t0)
  med = {d: float(np.median(t)) for d, t in times.items()}
  print(
      json.dumps({
          'model': args.model, 'width': args.width, 'batch_size': args.batch_size,
          'step': 'generalist natural + PGD-10 expert', 'reps': args.reps,
          'compile_s': {d: round(r[3], 1) for d, r in runs.items()}, 'step_s_median': med,
          'img_per_s': {d: round(args.batch_size / t, 1) for d, t in med.items()
                       }, 'bf16_over_f32_time': round(med['bfloat16'] / med['float32'], 3),
          'backend': jax.default_backend(), 'device': str(jax.devices()[0].device_kind),
          'cpu': platform.processor() or platform.machine(), 'load_avg': os.getloadavg()
      }))


if __name__ == '__main__':
  main()
