"""Schedules: pure functions of the (0-based) global step, so they jit and resume
without state of their own.

Epoch-based schedules read the step's schedule time from `epoch_of(step)
-> epoch` (`timescale.Timeline.epoch`: the fractional epoch after the step by
default, or the integer epoch counted from 1 as the authors' `main.py`).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import jax.numpy as jnp

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def piecewise_linear(t, knots: Sequence[float], values: Sequence[float]):
  """np.interp semantics: linear between knots, constant outside.

  Args:
    t: schedule time (scalar or array), in the knots' units.
    knots: increasing knot positions.
    values: the value at each knot.

  Returns:
    float32 array of `t`'s shape.
  """
  return jnp.interp(t, jnp.asarray(knots, jnp.float32), jnp.asarray(values, jnp.float32))


EpochOf = Callable[[jnp.ndarray], jnp.ndarray]  # step -> schedule time in epochs


def _piecewise_linear_lr(opt_config, num_epochs: int, epoch_of: EpochOf) -> Schedule:
  """Knots `lr_epochs`, values `lr_values`, as the reference."""
  del num_epochs
  knots, values = tuple(opt_config.lr_epochs), tuple(opt_config.lr_values)
  return lambda step: piecewise_linear(epoch_of(step), knots, values)


def _cosine_lr(opt_config, num_epochs: int, epoch_of: EpochOf) -> Schedule:
  """Peak `lr`, to 0 at `num_epochs`."""
  peak = float(opt_config.lr)
  return lambda step: peak * 0.5 * (1 + jnp.cos(math.pi * epoch_of(step) / num_epochs))


def _constant_lr(opt_config, num_epochs: int, epoch_of: EpochOf) -> Schedule:
  """`lr` throughout."""
  del num_epochs, epoch_of
  return lambda step: jnp.full((), float(opt_config.lr), jnp.float32)


# optimizer.schedule -> (optimizer config, num_epochs, epoch_of) -> Schedule.
LR_SCHEDULES = {
    'piecewise_linear': _piecewise_linear_lr, 'cosine': _cosine_lr, 'constant': _constant_lr
}


def make_lr_schedule(opt_config, num_epochs: int, epoch_of: EpochOf) -> Schedule:
  """lr as a function of optax's update count (= 0-based global step).

  Args:
    opt_config: an expert's `optimizer` config; `schedule` is a key of
      LR_SCHEDULES, and the kind reads its own fields (lr_epochs / lr_values,
      or lr).
    num_epochs: the run's epochs (the cosine schedule reaches 0 there).
    epoch_of: step -> schedule time in epochs (`timescale.Timeline.epoch`).

  Returns:
    step -> lr, jittable.

  Raises:
    ValueError: `opt_config.schedule` is not in LR_SCHEDULES.
  """
  kind = opt_config.schedule
  if kind not in LR_SCHEDULES:
    raise ValueError(f'optimizer.schedule={kind!r}: use one of {tuple(LR_SCHEDULES)}.')
  return LR_SCHEDULES[kind](opt_config, num_epochs, epoch_of)


def scaled_after(schedule: Schedule, first_step: int, scale: float) -> Schedule:
  """`schedule` times `scale` from `first_step` on (meta.drift_lr_scale: the lr of
  the free phases between sync windows).

  Args:
    schedule: step -> lr.
    first_step: the 0-based step from which `scale` applies (the trainer passes
      the first sync step).
    scale: multiplier; 1.0 returns `schedule` itself.

  Returns:
    step -> lr.
  """
  if scale == 1.0:
    return schedule
  return lambda step: schedule(step) * jnp.where(step >= first_step, scale, 1.0)


def ema_decay(step, max_decay: float = 0.999):
  """Warm-up decay of the reference EMA: min(max, (t + 1) / (t + 10)),
  t = number of updates before this one.

  Args:
    step: t, the 0-based optimizer step (`TrainState.step`), scalar or array.
    max_decay: the cap (`timescale.ema_cap`).

  Returns:
    float32 decay of `step`'s shape.
  """
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(max_decay, (step + 1.0) / (step + 10.0))


def make_mix_schedule(knots: Sequence[float], values_per_expert: Sequence[Sequence[float]],
                      epoch_of: EpochOf) -> Schedule:
  """Mixing weights (one per expert, summing to one) at the schedule time of `step`.

  All experts share the knots (in epochs); since the values sum to one at each
  knot (config validation checks it), the interpolated weights sum to one
  everywhere.

  Args:
    knots: increasing knots in epochs (`meta.mix_epochs`).
    values_per_expert: per expert, its weight at each knot (`mix_values`).
    epoch_of: step -> schedule time in epochs.

  Returns:
    step -> [N] float32 weights, in the experts' order.
  """
  knots = tuple(knots)
  table = tuple(tuple(v) for v in values_per_expert)

  def weights(step):
    t = epoch_of(step)
    return jnp.stack([piecewise_linear(t, knots, v) for v in table])

  return weights


def _reference_sync(sync_config, timeline) -> Schedule:
  """Every step of the windows of `window_epochs` (virtual) epochs that end at each
  epoch e % every_epochs == 0 with e >= start_epoch, epochs counted from 1 (window
  1: the authors' rule, every step of epochs 75, 80, ..., 120)."""
  start, every = int(sync_config.start_epoch), int(sync_config.every_epochs)
  window = int(sync_config.get('window_epochs', 1))

  def sync(step):
    epoch = timeline.integer_epoch(step)
    window_end = ((epoch - 1) // every + 1) * every  # the period's last epoch
    return (window_end >= start) & ((epoch - 1) % every >= every - window)

  return sync


def _every_steps_sync(sync_config, timeline) -> Schedule:
  """Every `every_steps` steps once epoch `start_epoch` (counted from 0) has begun."""
  start, every = int(sync_config.start_epoch), int(sync_config.every_steps)

  def sync(step):
    return (step >= start * timeline.steps_per_epoch) & ((step + 1) % every == 0)

  return sync


def _never_sync(sync_config, timeline) -> Schedule:
  del sync_config, timeline
  return lambda step: jnp.zeros(jnp.shape(step), bool)


# meta.sync.kind -> (sync config, timescale.Timeline) -> Schedule of bools.
SYNC_SCHEDULES = {
    'reference': _reference_sync, 'every_steps': _every_steps_sync, 'never': _never_sync
}


def make_sync_schedule(sync_config, timeline) -> Schedule:
  """Whether the global learner is copied into every expert after `step`.

  Args:
    sync_config: `config.meta.sync`; `kind` is a key of SYNC_SCHEDULES, and the
      kind reads its own fields (start_epoch, every_epochs, window_epochs, or
      every_steps).
    timeline: the run's `timescale.Timeline`.

  Returns:
    0-based step (scalar or array) -> bool of its shape, jittable.

  Raises:
    ValueError: `sync_config.kind` is not in SYNC_SCHEDULES.
  """
  kind = sync_config.kind
  if kind not in SYNC_SCHEDULES:
    raise ValueError(f'meta.sync.kind={kind!r}: use one of {tuple(SYNC_SCHEDULES)}.')
  return SYNC_SCHEDULES[kind](sync_config, timeline)
