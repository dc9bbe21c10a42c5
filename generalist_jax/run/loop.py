"""The training loop: `train_and_evaluate(config, workdir)` trains (or resumes) one
run: validate the config, read the data, restore the newest checkpoint, then
step, log, validate, checkpoint, and test at the end.

The host reads device values only at log points; every checkpoint is preceded
by one, so no non-finite state is ever saved.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib
import time

import jax
import numpy as np
import tqdm

from generalist_jax import data as data_lib
from generalist_jax import parallel
from generalist_jax.config import validation as config_validation
from generalist_jax.evaluation import learners as learner_eval
from generalist_jax.evaluation import plots
from generalist_jax.method import step as step_lib
from generalist_jax.run import checkpoints
from generalist_jax.run import fork
from generalist_jax.run import metric_writer
from generalist_jax.run import preemption as preemption_lib
from generalist_jax.run import restore
from generalist_jax.run import run_config
from generalist_jax.run import validation
from generalist_jax.run import workdir_lock


class NonFiniteError(FloatingPointError):
  """A loss or gradient stopped being finite; the run stops before saving."""


def _mean_metrics(pending: list) -> dict:
  stacked = parallel.to_host(pending)   # the one host sync per log interval
  return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


def _check_finite(scalars: dict, step: int, expert_names) -> None:
  for name in expert_names:
    for metric in ('loss', 'grad_norm', 'param_norm'):
      value = scalars.get(f'train/{name}/{metric}')
      if value is not None and not math.isfinite(value):
        raise NonFiniteError(
            f'expert {name!r}: {metric} is {value} in the log interval ending at step '
            f'{step}. Nothing was saved after the last good checkpoint; lower the lr of '
            f'experts.{name}.optimizer or check the data, then start the same command again.')


def train_and_evaluate(config, workdir: str, *, stop_after_steps: int | None = None,
                       stop_at_step: int | None = None, start_over: bool = False) -> dict:
  """Trains (or resumes) the run in `workdir`; returns the final test results.

  A workdir that holds a run of another config is refused (run_config.py);
  `start_over` moves that run aside and trains from step 0 instead. A workdir
  another run is training in is refused (`workdir_lock.WorkdirLockedError`)
  before anything is written; the lock is released however this ends.
  `stop_at_step` pauses the run at that global step with a checkpoint there (a
  point to fork from, `init_from`); the same command without it continues.
  `stop_after_steps` ends this invocation early, as a kill would (tests use it).
  """
  # Set-up: validate before any work, then data, model, state.
  config_validation.validate_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  with workdir_lock.hold(workdir):   # one writer, from before config.json on
    return _train_and_evaluate(config, workdir, stop_after_steps, stop_at_step, start_over)


def _train_and_evaluate(config, workdir: pathlib.Path, stop_after_steps, stop_at_step,
                        start_over) -> dict:
  run_config.check_and_write(config, workdir, start_over_allowed=start_over)
  fork_source = fork.source_workdir(config, workdir)
  dataset = data_lib.load_dataset(config.data)
  if fork_source is None:
    info = restore.run_data_info(workdir, dataset.info, write=parallel.is_main_process())
  else:
    info = fork.data_info(fork_source, workdir, dataset.info,
                          write=parallel.is_main_process())
  dataset = dataclasses.replace(dataset, info=info)
  steps_per_epoch = data_lib.steps_per_epoch(dataset, config.batch_size)
  setup = step_lib.make_setup(config, dataset.info, steps_per_epoch)
  fidelity_warnings = config_validation.validate_for_data(config, setup.clock,
                                                          dataset.info.image_shape,
                                                          dataset.info.num_classes)
  if fork_source is not None:
    fork.check_source(config, fork_source, setup.clock.total_steps)
  main_process = parallel.is_main_process()   # logs and tables: process 0 only
  if main_process:
    for warning in fidelity_warnings:
      print(f'WARNING (miniature below the faithful floors): {warning}')
  # Validations just before and just after every sync window (the experts' drift
  # apart in the free phase, and what the window made of the global learner).
  around_sync = {first: 'presync' for first, _ in setup.clock.sync_windows}
  around_sync.update({last + 1: 'postsync' for _, last in setup.clock.sync_windows})
  if not config.eval.get('around_sync', True):
    around_sync = {}

  # Restore: the newest readable checkpoint decides where this run continues.
  state = parallel.replicate(step_lib.create_train_state(setup, dataset.info.image_shape,
                                                         config.seed),
                             setup.mesh)
  template = restore.state_template(state)  # survives donation
  ckpts = checkpoints.RunCheckpoints(workdir / 'checkpoints', config.checkpoint.keep)
  run_meta = {'best_value': -math.inf, 'best_step': -1}
  restored = ckpts.restore(template)
  if restored is None and fork_source is not None:
    restored = fork.start(config, fork_source, workdir, template, ckpts)
  if restored is not None:
    state, run_meta = restored
  start_step = int(parallel.to_host(state.step))
  if restored is not None and main_process and fork_source is None:
    print(f'resumed {workdir} from step {start_step} of {setup.clock.total_steps}')

  writer = (metric_writer.MetricWriter(workdir, start_step) if main_process
            else metric_writer.NullWriter())
  step_fn = step_lib.jit_train_step(setup)
  val_eval_fn = learner_eval.make_eval_fn(setup.model, config.eval.val_attack, setup.mesh,
                                          setup.compute_dtype)
  local_batches = data_lib.train_batches(
      dataset, config.batch_size, seed=config.seed, start_step=start_step,
      augment=config.data.augment, num_threads=config.data.num_threads,
      prefetch=config.data.prefetch, process_index=jax.process_index(),
      process_count=jax.process_count())
  batches = (parallel.global_batch(b, setup.mesh) for b in local_batches)
  end_step = setup.clock.total_steps if stop_after_steps is None else min(
      setup.clock.total_steps, start_step + stop_after_steps)
  if stop_at_step is not None:
    end_step = min(end_step, max(int(stop_at_step), start_step))

  ckpt_every = config.checkpoint.every_steps or steps_per_epoch

  # Loop. The host reads device values only at log points; every checkpoint is
  # preceded by one, so no non-finite state is ever saved.
  bar = tqdm.tqdm(total=setup.clock.total_steps * config.batch_size,
                  initial=start_step * config.batch_size, unit='img', unit_scale=True,
                  disable=not (config.progress_bar and main_process), mininterval=2.0,
                  dynamic_ncols=True)
  pending, interval_start = [], time.perf_counter()
  last_log = interval_start
  with contextlib.ExitStack() as cleanup:
    # On any error too: finish saves already under way (all checked finite),
    # then release orbax's threads and the log files.
    cleanup.callback(ckpts.close)
    cleanup.callback(writer.close)
    cleanup.callback(ckpts.wait)
    preemption = cleanup.enter_context(preemption_lib.PreemptionGuard())
    for step in range(start_step, end_step):
      state, metrics = step_fn(state, next(batches))
      pending.append(metrics)
      done, epoch = step + 1, (step + 1) // steps_per_epoch
      bar.update(config.batch_size)
      epoch_end = done % steps_per_epoch == 0
      validate = epoch_end and (epoch % config.eval.every_epochs == 0
                                or done == setup.clock.total_steps)
      # Every process reaches the same sync points; a SIGTERM seen by any host
      # stops all of them there, at the same step.
      stop = preemption.stop_requested(
          sync_point=done % config.log_every_steps == 0 or epoch_end or done == end_step)
      save = (done % ckpt_every == 0 or done == setup.clock.total_steps or stop
              or done == stop_at_step)
      if done % config.log_every_steps == 0 or epoch_end or save or done == end_step:
        scalars = _mean_metrics(pending)
        _check_finite(scalars, done, setup.expert_names)
        scalars['perf/img_per_sec'] = (len(pending) * config.batch_size
                                       / (time.perf_counter() - interval_start))
        scalars['epoch'] = done / steps_per_epoch
        # Wall time since the last log point, validation and checkpoints included:
        # with perf/img_per_sec it says what the loop adds to the steps.
        now = time.perf_counter()
        scalars['perf/interval_wall_seconds'] = now - last_log
        last_log = now
        writer.write(done, scalars)
        pending = []
      if done in around_sync:
        validation.validate(config, setup, dataset, state, val_eval_fn, writer, bar, done,
                            prefix=around_sync[done])
      if validate:
        run_meta = validation.validate_and_keep_best(config, setup, dataset, state, run_meta,
                                                    val_eval_fn, ckpts, writer, bar, done)
        if main_process:   # PNGs in workdir/plots; a plotting error only logs a warning
          plots.safely(plots.training_plots_every, workdir, final=done == setup.clock.total_steps)
      if save:
        ckpts.save(done, state, dict(run_meta, epoch=done / steps_per_epoch,
                                     data_position=done))
      if not pending:   # interval timing excludes validation and checkpoint time
        interval_start = time.perf_counter()
      if stop:
        ckpts.wait()
        if main_process:
          bar.write(f'SIGTERM: saved step {done}; start the same command again to resume.')
        break
    bar.close()
    ckpts.wait()

    # Final test of the last and the best-on-validation checkpoints.
    results = {}
    if (int(parallel.to_host(state.step)) == setup.clock.total_steps
        and config.eval.final_test):
      results = validation.final_test(config, setup, ckpts, template, dataset, workdir)
  return results
