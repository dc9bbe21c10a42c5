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
  stacked = parallel.to_host(pending)  # the one host sync per log interval
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
  """Trains (or resumes) the run in `workdir`, then tests it.

  A workdir that holds a run of another config is refused (run_config.py);
  `start_over` moves that run aside and trains from step 0 instead. A workdir
  another run is training in is refused before anything is written; the lock is
  released however this ends.

  Args:
    config: the run config (validated here first).
    workdir: the run's directory (created if missing).
    stop_after_steps: end this invocation after that many steps, as a kill would
      (tests use it); None runs on.
    stop_at_step: pause the run at that global step with a checkpoint there (a
      point to fork from, `init_from`); the same command without it continues.
    start_over: move a run of another config aside and train from step 0.

  Returns:
    The final test results (`validation.final_test`), or {} when this invocation
    stopped before the end or `eval.final_test` is off.

  Raises:
    ConfigError: a wrong config field.
    ConfigChangedError: `workdir` holds a run of another config (and not
      `start_over`).
    WorkdirLockedError: another run is training in `workdir`.
    NonFiniteError: a loss or gradient stopped being finite (nothing was saved
      after the last good checkpoint).
  """
  # Set-up: validate before any work, then data, model, state.
  config_validation.validate_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  with workdir_lock.hold(workdir):  # one writer, from before config.json on
    return _train_and_evaluate(config, workdir, stop_after_steps, stop_at_step, start_over)


def _train_and_evaluate(config, workdir: pathlib.Path, stop_after_steps, stop_at_step,
                        start_over) -> dict:
  """`train_and_evaluate` inside the workdir lock: set-up, restore, the loop, the
  final test."""
  run_config.check_and_write(config, workdir, start_over_allowed=start_over)
  fork_source = fork.source_workdir(config, workdir)
  dataset, setup = _set_up(config, workdir, fork_source)
  with contextlib.ExitStack() as cleanup:
    # On any error too (a restore that fails included): finish saves already under
    # way (all checked finite), then release orbax's threads and the log files.
    ckpts = checkpoints.RunCheckpoints(workdir / 'checkpoints', config.checkpoint.keep)
    cleanup.callback(ckpts.close)
    restored = _restore(config, workdir, setup, dataset, fork_source, ckpts)
    state = restored.state
    loop = _Loop.start(config, workdir, setup, dataset, ckpts, restored.run_meta,
                       restored.start_step, stop_after_steps, stop_at_step)
    cleanup.callback(loop.writer.close)
    cleanup.callback(ckpts.wait)
    preemption = cleanup.enter_context(preemption_lib.PreemptionGuard())
    state = loop.run(state, preemption)
    ckpts.wait()
    return _final_test(config, setup, dataset, workdir, state, restored)


def _set_up(config, workdir: pathlib.Path, fork_source):
  """The data (its info pinned to the run's first, or to the fork source's) and the
  run's `Setup`, then the checks that need both; prints the fidelity warnings.

  Returns:
    (dataset, setup).
  """
  dataset = data_lib.load_dataset(config.data)
  if fork_source is None:
    info = restore.run_data_info(workdir, dataset.info, write=parallel.is_main_process())
  else:
    info = fork.data_info(fork_source, workdir, dataset.info, write=parallel.is_main_process())
  dataset = dataclasses.replace(dataset, info=info)
  setup = step_lib.make_setup(config, dataset.info,
                              data_lib.steps_per_epoch(dataset, config.batch_size))
  fidelity_warnings = config_validation.validate_for_data(config, setup.clock,
                                                          dataset.info.image_shape,
                                                          dataset.info.num_classes)
  if fork_source is not None:
    fork.check_source(config, fork_source, setup.clock.total_steps)
  if parallel.is_main_process():  # logs and tables: process 0 only
    for warning in fidelity_warnings:
      print(f'WARNING (miniature below the faithful floors): {warning}')
  return dataset, setup


@dataclasses.dataclass(frozen=True)
class _Restored:
  """Where this invocation starts: the state, its checkpoints and run meta."""
  state: object  # the TrainState, replicated over the mesh
  template: object  # its abstract shape, for later restores (survives donation)
  ckpts: checkpoints.RunCheckpoints
  run_meta: dict  # {'best_value', 'best_step'}
  start_step: int


def _restore(config, workdir: pathlib.Path, setup, dataset, fork_source,
             ckpts: checkpoints.RunCheckpoints) -> _Restored:
  """The newest readable checkpoint in `ckpts` decides where this run continues: its
  own, else the fork source's step (`init_from`), else step 0."""
  state = parallel.replicate(
      step_lib.create_train_state(setup, dataset.info.image_shape, config.seed), setup.mesh)
  template = restore.state_template(state)  # survives donation
  run_meta = {'best_value': -math.inf, 'best_step': -1}
  restored = ckpts.restore(template)
  if restored is None and fork_source is not None:
    restored = fork.start(config, fork_source, workdir, template, ckpts)
  if restored is not None:
    state, run_meta = restored
  start_step = int(parallel.to_host(state.step))
  if restored is not None and parallel.is_main_process() and fork_source is None:
    print(f'resumed {workdir} from step {start_step} of {setup.clock.total_steps}')
  return _Restored(state, template, ckpts, run_meta, start_step)


def _final_test(config, setup, dataset, workdir: pathlib.Path, state, restored: _Restored) -> dict:
  """Test of the last and the best-on-validation checkpoints, once the run is
  complete (and `eval.final_test`); {} otherwise."""
  if int(parallel.to_host(state.step)) != setup.clock.total_steps or not config.eval.final_test:
    return {}
  return validation.final_test(config, setup, restored.ckpts, restored.template, dataset, workdir)


def _around_sync(config, setup) -> dict:
  """Validations just before and just after every sync window (the experts' drift
  apart in the free phase, and what the window made of the global learner):
  step -> 'presync' / 'postsync'; {} with `eval.around_sync` off."""
  if not config.eval.get('around_sync', True):
    return {}
  around_sync = {first: 'presync' for first, _ in setup.clock.sync_windows}
  around_sync.update({last + 1: 'postsync' for _, last in setup.clock.sync_windows})
  return around_sync


@dataclasses.dataclass
class _Loop:
  """The step loop of one invocation: its fixed parts, and the running log interval
  and best-on-validation meta. The host reads device values only at log points;
  every checkpoint is preceded by one, so no non-finite state is ever saved."""
  config: object
  workdir: pathlib.Path
  setup: object
  dataset: object
  ckpts: checkpoints.RunCheckpoints
  writer: object  # metric_writer.MetricWriter (process 0) or NullWriter
  step_fn: object  # step_lib.jit_train_step
  val_eval_fn: object
  batches: object  # global batches from start_step on
  bar: object  # tqdm progress bar, in images
  around_sync: dict  # step -> 'presync' / 'postsync'
  start_step: int
  end_step: int  # the global step this invocation stops at
  stop_at_step: int | None
  run_meta: dict
  pending: list = dataclasses.field(default_factory=list)  # metrics since the last log
  interval_start: float = 0.0
  last_log: float = 0.0

  @classmethod
  def start(cls, config, workdir, setup, dataset, ckpts, run_meta, start_step, stop_after_steps,
            stop_at_step) -> _Loop:
    """The loop from `start_step`: writer, jitted step, validation and the batches."""
    clock, main_process = setup.clock, parallel.is_main_process()
    writer = (metric_writer.MetricWriter(workdir, start_step)
              if main_process else metric_writer.NullWriter())
    step_fn = step_lib.jit_train_step(setup)
    val_eval_fn = learner_eval.make_eval_fn(setup.model, config.eval.val_attack, setup.mesh,
                                            setup.compute_dtype)
    local_batches = data_lib.train_batches(dataset, config.batch_size, seed=config.seed,
                                           start_step=start_step, augment=config.data.augment,
                                           num_threads=config.data.num_threads,
                                           prefetch=config.data.prefetch,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count())
    batches = (parallel.global_batch(b, setup.mesh) for b in local_batches)
    end_step = clock.total_steps if stop_after_steps is None else min(clock.total_steps,
                                                                      start_step + stop_after_steps)
    if stop_at_step is not None:
      end_step = min(end_step, max(int(stop_at_step), start_step))
    bar = tqdm.tqdm(total=clock.total_steps * config.batch_size,
                    initial=start_step * config.batch_size, unit='img', unit_scale=True,
                    disable=not (config.progress_bar and main_process), mininterval=2.0,
                    dynamic_ncols=True)
    now = time.perf_counter()
    return cls(config, workdir, setup, dataset, ckpts, writer, step_fn, val_eval_fn, batches, bar,
               _around_sync(config, setup), start_step, end_step, stop_at_step, run_meta,
               interval_start=now, last_log=now)

  def run(self, state, preemption):
    """Steps from start_step to end_step, or to a SIGTERM's stop; returns the state."""
    for step in range(self.start_step, self.end_step):
      state, metrics = self.step_fn(state, next(self.batches))
      self.pending.append(metrics)
      self.bar.update(self.config.batch_size)
      if self._after_step(step + 1, state, preemption):
        break
    self.bar.close()
    return state

  def _after_step(self, done: int, state, preemption) -> bool:
    """Log, validate and save as step `done` asks; True stops the loop (SIGTERM)."""
    config, clock = self.config, self.setup.clock
    epoch_end = done % clock.steps_per_epoch == 0
    # Every process reaches the same sync points; a SIGTERM seen by any host
    # stops all of them there, at the same step.
    stop = preemption.stop_requested(
        sync_point=done % config.log_every_steps == 0 or epoch_end or done == self.end_step)
    save = (done % (config.checkpoint.every_steps or clock.steps_per_epoch) == 0 or
            done == clock.total_steps or stop or done == self.stop_at_step)
    if done % config.log_every_steps == 0 or epoch_end or save or done == self.end_step:
      self._log(done)
    self._validate(done, state, epoch_end)
    if save:
      self.ckpts.save(done, state,
                      dict(self.run_meta, epoch=done / clock.steps_per_epoch, data_position=done))
    if not self.pending:  # interval timing excludes validation and checkpoint time
      self.interval_start = time.perf_counter()
    if stop:
      self.ckpts.wait()
      if parallel.is_main_process():
        self.bar.write(f'SIGTERM: saved step {done}; start the same command again to resume.')
    return stop

  def _log(self, done: int) -> None:
    """The interval's mean metrics (the one host sync), checked finite, and timings."""
    scalars = _mean_metrics(self.pending)
    _check_finite(scalars, done, self.setup.expert_names)
    scalars['perf/img_per_sec'] = (len(self.pending) * self.config.batch_size /
                                   (time.perf_counter() - self.interval_start))
    scalars['epoch'] = done / self.setup.clock.steps_per_epoch
    # Wall time since the last log point, validation and checkpoints included:
    # with perf/img_per_sec it says what the loop adds to the steps.
    now = time.perf_counter()
    scalars['perf/interval_wall_seconds'] = now - self.last_log
    self.last_log = now
    self.writer.write(done, scalars)
    self.pending = []

  def _validate(self, done: int, state, epoch_end: bool) -> None:
    """The around-sync validations, and at every eval.every_epochs-th epoch end (and
    the run's end) the one that keeps the best checkpoint, then the plots."""
    config, clock = self.config, self.setup.clock
    if done in self.around_sync:
      validation.validate(config, self.setup, self.dataset, state, self.val_eval_fn, self.writer,
                          self.bar, done, prefix=self.around_sync[done])
    epoch = done // clock.steps_per_epoch
    if not (epoch_end and (epoch % config.eval.every_epochs == 0 or done == clock.total_steps)):
      return
    self.run_meta = validation.validate_and_keep_best(config, self.setup, self.dataset, state,
                                                      self.run_meta, self.val_eval_fn, self.ckpts,
                                                      self.writer, self.bar, done)
    if parallel.is_main_process():  # PNGs in workdir/plots; a plotting error only logs a warning
      plots.safely(plots.training_plots_every, self.workdir, final=done == clock.total_steps)
