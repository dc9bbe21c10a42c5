"""The run's clock: every time-dependent quantity of the method, built once.

`make_clock(config, steps_per_epoch)` is the one place that reads the config's
time fields (num_epochs, meta.timescale / clock / sync / ema_* / drift_lr_scale /
mix_epochs, every expert's optimizer and mix_values). It composes the pure
formulas of `timescale.py` (steps -> schedule time, the EMA cap, the sync
windows) and `schedules.py` (lr, mixing weights, sync, EMA decay) into a frozen
`RunClock`; the train step, the loop and the data checks read that object.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from generalist_jax.method import schedules
from generalist_jax.method import timescale


@dataclasses.dataclass(frozen=True)
class RunClock:
  """The run's time: its length, its sync windows, and lr, mixing weights, sync
  and EMA decay as pure (jittable) functions of the 0-based global step.

  Build it with `make_clock`; the fields are its parts, the methods what the
  step reads.

  Example:
    >>> from generalist_jax import config as config_lib
    >>> from generalist_jax.method import clock
    >>> c = config_lib.base_config()
    >>> c.experts = config_lib.generalist_experts()
    >>> run_clock = clock.make_clock(c, steps_per_epoch=391)
    >>> run_clock.total_steps, run_clock.sync_windows[0]   # epoch 75 = steps 28934..29324
    (46920, (28934, 29324))
    >>> float(run_clock.mix_weights(0)[1]), bool(run_clock.is_sync(28934))
    (1.0, True)
  """
  timeline: timescale.Timeline  # steps -> schedule time (epochs)
  lr_schedules: tuple  # per expert, in config.experts order: step -> lr
  mix_schedule: Callable  # step -> [N] mixing weights
  sync_schedule: Callable  # step -> bool
  ema_max_decay: float  # the EMA decay cap (`timescale.ema_cap`)
  sync_windows: tuple = ()  # ((first, last) 0-based steps of every sync window)

  @property
  def total_steps(self) -> int:
    """T: the run's optimizer steps."""
    return self.timeline.total_steps

  @property
  def steps_per_epoch(self) -> int:
    """Optimizer steps per (real) epoch."""
    return self.timeline.steps_per_epoch

  def lr(self, expert: int, step):
    """Expert `expert`'s learning rate at `step` (what its optimizer uses).

    Args:
      expert: the expert's index in `config.experts` order.
      step: 0-based global step, scalar or array.

    Returns:
      float32 lr of `step`'s shape.
    """
    return self.lr_schedules[expert](step)

  def mix_weights(self, step):
    """Every expert's mixing weight at `step` (they sum to one).

    Args:
      step: 0-based global step, a scalar.

    Returns:
      [N] float32 weights, in `config.experts` order.
    """
    return self.mix_schedule(step)

  def is_sync(self, step):
    """Whether the global learner is copied into every expert after `step`.

    Args:
      step: 0-based global step, scalar or array.

    Returns:
      bool of `step`'s shape.
    """
    return self.sync_schedule(step)

  def ema_decay(self, step):
    """The decay of the experts' EMAs and the global learner at `step`.

    Args:
      step: 0-based global step (`TrainState.step`), scalar or array.

    Returns:
      float32 min(ema_max_decay, (step + 1) / (step + 10)), of `step`'s shape.
    """
    return schedules.ema_decay(step, self.ema_max_decay)


def make_clock(config, steps_per_epoch: int) -> RunClock:
  """The RunClock of a run.

  Args:
    config: the run config; reads num_epochs, meta (timescale, clock, sync,
      ema_max_decay, ema_horizon, drift_lr_scale, mix_epochs) and every
      expert's optimizer and mix_values.
    steps_per_epoch: optimizer steps per epoch of the training split.

  Returns:
    The run's `RunClock`: lr schedules scaled by meta.drift_lr_scale from the
    first sync step on, and the sync windows found host-side once.

  Raises:
    ValueError: an unknown optimizer.schedule or meta.sync.kind.
  """
  meta_config, num_epochs = config.meta, config.num_epochs
  experts = [config.experts[n] for n in config.experts.keys()]  # sorted, as Setup's
  timeline = timescale.make_timeline(meta_config, num_epochs, steps_per_epoch)
  sync_fn = schedules.make_sync_schedule(meta_config.sync, timeline)
  windows = tuple(timescale.sync_windows(sync_fn, timeline.total_steps))
  first_sync = windows[0][0] if windows else timeline.total_steps
  drift_scale = float(meta_config.get('drift_lr_scale', 1.0))
  lr_fns = tuple(
      schedules.scaled_after(schedules.make_lr_schedule(e.optimizer, num_epochs, timeline.epoch),
                             first_sync, drift_scale) for e in experts)
  return RunClock(
      timeline=timeline, lr_schedules=lr_fns,
      mix_schedule=schedules.make_mix_schedule(meta_config.mix_epochs,
                                               [e.mix_values for e in experts],
                                               timeline.epoch), sync_schedule=sync_fn,
      ema_max_decay=timescale.ema_cap(meta_config, timeline.total_steps), sync_windows=windows)
