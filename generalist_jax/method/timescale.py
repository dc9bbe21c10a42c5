"""Timescales: how a step maps to the epochs its schedules are written in, and
the run-relative time constants of a miniature (faithful only where every
constant stays above the floors below; the method's own clock is in steps).
`clock.make_clock` composes these formulas and `schedules.py`'s into the run's
`RunClock`.

The reference run (PKU-ML/Generalist `main.py`, ResNet-18 on CIFAR-10) has
T = 120 epochs x 391 steps = 46,920 steps. Its time constants as shares of T:
lr and mixing knots at 0, 1/3, 2/3, 1; an EMA cap of 0.999 (a horizon of 1,000
steps, 1000 / 46920 = 2.1% of T); sync on every step of epochs 75, 80, ..., 120
(windows of 1/120 of T every 1/24 of it, the first ending at 62.5%).

`meta.timescale='epochs'` uses the constants as configured (at full scale: the
reference). `'relative'` keeps their shares of T in a run of any length: the EMA
cap becomes 1 - 1 / (meta.ema_horizon * T) and the sync rule counts virtual
epochs of T / meta.sync.virtual_epochs steps. With T = 46,920 both equal the
reference (tests/test_timescale.py). The derivation: docs/meta-update.md.

`meta.clock` picks the schedule time of a step: 'fractional' is the epoch
reached after it, (step + 1) / steps_per_epoch (TMLlib's trainer, our default);
'integer' is the (virtual) epoch holding it, counted from 1, constant within the
epoch (the authors' `main.py`: `adjust_learning_rate(epoch)`, `adjust_beta(epoch)`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

REFERENCE_STEPS = 120 * 391  # T of the reference run
REFERENCE_EMA_HORIZON = 1000 / REFERENCE_STEPS  # 1 / (1 - 0.999) steps, as a share of T
TIMESCALES = ('epochs', 'relative')
CLOCKS = ('fractional', 'integer')
MIN_HORIZON_STEPS = 8  # below this an EMA is hardly an average: refuse
FAITHFUL_HORIZON_STEPS = 50  # below this, warn: the EMA still averages, but over few steps


@dataclasses.dataclass(frozen=True)
class Timeline:
  """Steps -> schedule time. `virtual_epochs` (relative timescale) divides the run
  into that many equal parts for the sync rule and the integer clock; None uses
  the real epochs."""
  steps_per_epoch: int
  num_epochs: int
  clock: str = 'fractional'
  virtual_epochs: int | None = None

  @property
  def total_steps(self) -> int:
    """T: the run's optimizer steps, steps_per_epoch x num_epochs."""
    return self.steps_per_epoch * self.num_epochs

  def integer_epoch(self, step):
    """The (virtual) epoch holding 0-based `step`, counted from 1 (int arithmetic).

    Args:
      step: 0-based optimizer step; an int or an int array (traced or numpy).

    Returns:
      The 1-based epoch, of `step`'s type: a real epoch, or with `virtual_epochs`
      one of that many equal parts of the run.
    """
    if self.virtual_epochs is None:
      return step // self.steps_per_epoch + 1
    return (step * self.virtual_epochs) // self.total_steps + 1

  def epoch(self, step):
    """Schedule time of `step` in (real) epochs: what lr and mixing knots are read at.

    Args:
      step: 0-based optimizer step; an int or an int array.

    Returns:
      'fractional' clock: (step + 1) / steps_per_epoch. 'integer' clock: the
      integer epoch holding it (`integer_epoch`), with `virtual_epochs` scaled
      back to real epochs (x num_epochs / virtual_epochs).
    """
    if self.clock == 'fractional':
      return (step + 1) / self.steps_per_epoch
    if self.virtual_epochs is None:
      return self.integer_epoch(step)
    return self.integer_epoch(step) * (self.num_epochs / self.virtual_epochs)


def make_timeline(meta_config, num_epochs: int, steps_per_epoch: int) -> Timeline:
  """The Timeline of a run.

  Args:
    meta_config: `config.meta`; reads timescale, clock and sync.virtual_epochs
      (default 120, used only when timescale='relative').
    num_epochs: the run's epochs.
    steps_per_epoch: optimizer steps per epoch.

  Returns:
    The run's `Timeline`.
  """
  relative = meta_config.get('timescale', 'epochs') == 'relative'
  return Timeline(
      steps_per_epoch=steps_per_epoch, num_epochs=num_epochs,
      clock=meta_config.get('clock', 'fractional'),
      virtual_epochs=int(meta_config.sync.get('virtual_epochs', 120)) if relative else None)


def ema_cap(meta_config, total_steps: int) -> float:
  """The EMA decay cap: `meta.ema_max_decay`, or in the relative timescale
  1 - 1 / (meta.ema_horizon * T) (0.999 at T = 46,920 with the default horizon).

  Args:
    meta_config: `config.meta`.
    total_steps: T, the run's optimizer steps.

  Returns:
    The largest EMA decay, a float below 1.
  """
  if meta_config.get('timescale', 'epochs') != 'relative':
    return float(meta_config.ema_max_decay)
  return 1.0 - 1.0 / horizon_steps(meta_config, total_steps)


def horizon_steps(meta_config, total_steps: int) -> float:
  """The relative EMA horizon in steps: meta.ema_horizon x T.

  Args:
    meta_config: `config.meta`; `ema_horizon` is a share of T (default the
      reference's, `REFERENCE_EMA_HORIZON`).
    total_steps: T, the run's optimizer steps.

  Returns:
    The horizon in optimizer steps (a float).
  """
  return float(meta_config.get('ema_horizon', REFERENCE_EMA_HORIZON)) * total_steps


def sync_windows(sync_fn, total_steps: int) -> list[tuple[int, int]]:
  """Every run of consecutive sync steps, host-side.

  Args:
    sync_fn: the sync schedule, 0-based step array -> bool array
      (`schedules.make_sync_schedule`); called once on all T steps.
    total_steps: T, the run's optimizer steps.

  Returns:
    [(first, last)] 0-based steps (both inclusive) of each window, in order.
  """
  steps = np.arange(total_steps)
  flags = np.asarray(sync_fn(steps), bool)
  edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
  return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def fidelity_problems(meta_config, total_steps: int, windows) -> tuple[list[str], list[str]]:
  """(errors, warnings) about a relative-timescale run too short to be a faithful
  miniature of the reference, each with the numbers.

  Args:
    meta_config: `config.meta`; with timescale other than 'relative' nothing is
      checked.
    total_steps: T, the run's optimizer steps.
    windows: the run's sync windows (`sync_windows`).

  Returns:
    (errors, warnings), lists of messages. Errors: an EMA horizon under
    `MIN_HORIZON_STEPS` steps; with sync kind 'reference', fewer steps than
    virtual epochs. Warnings: a horizon under `FAITHFUL_HORIZON_STEPS` steps;
    a sync window shorter than 5 steps.
  """
  errors, warnings = [], []
  if meta_config.get('timescale', 'epochs') != 'relative':
    return errors, warnings
  horizon = horizon_steps(meta_config, total_steps)
  where = (f'meta.ema_horizon={meta_config.get("ema_horizon", REFERENCE_EMA_HORIZON):.5g} of '
           f'T={total_steps} steps')
  if horizon < MIN_HORIZON_STEPS:
    errors.append(f'{where} is an EMA horizon of {horizon:.1f} steps (cap '
                  f'{1 - 1 / max(horizon, 1e-9):.3f}): under {MIN_HORIZON_STEPS} steps the EMAs '
                  f'are no average. Train >= {MIN_HORIZON_STEPS / (horizon / total_steps):.0f} '
                  "steps, raise meta.ema_horizon, or use meta.timescale='epochs'.")
  elif horizon < FAITHFUL_HORIZON_STEPS:
    warnings.append(f'{where} is an EMA horizon of only {horizon:.1f} steps.')
  virtual = int(meta_config.sync.get('virtual_epochs', 120))
  if meta_config.sync.kind == 'reference' and total_steps < virtual:
    errors.append(f'T={total_steps} steps is shorter than meta.sync.virtual_epochs={virtual}: '
                  'some sync windows would hold no step. Train longer or lower virtual_epochs.')
  elif windows and min(b - a + 1 for a, b in windows) < 5:
    warnings.append(f'sync windows of {min(b - a + 1 for a, b in windows)} steps '
                    f'(T={total_steps} / {virtual} virtual epochs).')
  return errors, warnings
